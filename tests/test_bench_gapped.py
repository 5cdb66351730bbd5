"""The benchmark's gapped-schedule rows on the tiny architecture: schema and outputs, never timings."""

from __future__ import annotations

import pytest

from vidtldr.analysis import bench
from vidtldr.analysis.bench.gapped import GAPPED, GAPPED_SDPA, gapped_executions, gapped_lines
from vidtldr.config_utils import compose_config


@pytest.fixture(scope="module")
def tiny_cfg():
    return compose_config(["model=tiny"], config_name="bench")


@pytest.fixture(scope="module")
def gapped_result(tiny_cfg):
    return bench.run_bench(tiny_cfg, reducers=["none"], attentions=["fused", "materialized"], gapped_r=[0, 48, 0, 24],
                           repeats=1, warmup=1, device="cpu", breakdown=False, profile=False)


def test_gapped_rows_beside_the_others(gapped_result):
    by = {(r["merge"], r["attention"]): r for r in gapped_result["rows"]}
    assert set(by) == {("none", "fused"), ("none", "materialized"), (GAPPED, "fused"), (GAPPED, "materialized"),
                       (GAPPED_SDPA, "fused")}
    for key in ((GAPPED, "fused"), (GAPPED, "materialized"), (GAPPED_SDPA, "fused")):
        assert by[key]["r"] == [0, 48, 0, 24]
        assert by[key]["final_tokens"] == 196 - 48 - 24
        # tokens 196, 196, 148, 148, 124: 86_856_768 MACs by hand (tests/test_flops.py's per-block
        # terms: 14_676_480 + 13_702_912 + 10_172_928 + 9_729_280 + 38_535_168 + 39_680 + 320)
        assert by[key]["gflops_paper"] == 0.09 and by[("none", "fused")]["gflops_paper"] == 0.1


def test_gapped_summary_and_markdown(gapped_result):
    g = gapped_result["gapped"]
    assert g["r"] == [0, 48, 0, 24] and g["exact_through"] == 3
    assert g["fused_s"] > 0 and g["sdpa_s"] > 0 and g["exact_cost_x"] > 0 and g["materialized_s"] > 0
    # exact prefix: the merges are the official ones, so only the SDPA blocks after them differ
    assert g["fused_max_abs_diff_vs_materialized"] < 1e-4
    assert gapped_result["output_check"][GAPPED]["agree"]
    line = gapped_lines(gapped_result)[0]
    assert "r=[0, 48, 0, 24]" in line and "through block 3" in line and "with / without the exact prefix" in line
    md = bench.render_md({"runs": [gapped_result]})
    assert line in md and f"| {GAPPED_SDPA} | fused |" in md


def test_no_gapped_schedule_no_rows(tiny_cfg):
    assert gapped_executions(tiny_cfg, None, ["fused"]) == []
    assert [e["merge"] for e in gapped_executions(tiny_cfg, [0, 2], ["materialized"])] == [GAPPED]
    assert gapped_lines({}) == []
