"""The benchmark on the tiny architecture: schema and output equality, never timings."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vidtldr.analysis import bench
from vidtldr.config_utils import compose_config


@pytest.fixture(scope="module")
def tiny_result():
    cfg = compose_config(["model=tiny"], config_name="bench")
    return bench.run_bench(cfg, reducers=["none", "vidtldr", "tome", "random"],
                           attentions=["fused", "materialized"], repeats=1, warmup=1, device="cpu")


def test_one_row_per_execution(tiny_result):
    rows = tiny_result["rows"]
    got = {(r["merge"], r["attention"]) for r in rows}
    assert got == {(m, a) for m in ("none", "vidtldr", "tome", "random") for a in ("fused", "materialized")}
    assert len(rows) == 8
    for r in rows:
        for key in ("merge", "attention", "clips_per_s", "gflops_paper", "peak_mem_mb", "s_per_clip",
                    "final_tokens", "times_s"):
            assert key in r, key
        assert r["clips_per_s"] > 0 and len(r["times_s"]) == 1
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] >= 0


def test_rows_carry_the_flop_counts_of_their_schedule(tiny_result):
    by = {(r["merge"], r["attention"]): r for r in tiny_result["rows"]}
    assert by[("none", "fused")]["final_tokens"] == 196
    # the tiny model's published schedule [48, 24]; baselines copy it (baseline_r=vidtldr)
    for merge in ("vidtldr", "tome", "random"):
        assert by[(merge, "fused")]["final_tokens"] == 124
        assert by[(merge, "fused")]["r"] == [48, 24]
    # counted by hand in tests/test_flops.py (TINY_*), per clip, rounded to 2 places: paper
    # 97_304_128 -> 0.10 and 78_292_032 -> 0.08; true 198_321_088 -> 0.20 and 159_673_368 -> 0.16.
    # ToMe matches on 16-wide keys (98^2 + 74^2) x (64 - 16) = 723_840 MACs fewer than vid-TLDR's 64-wide
    # hidden states, random drop pays no similarity at all: both 0.08 too.
    for attention in ("fused", "materialized"):
        assert (by[("none", attention)]["gflops_paper"], by[("none", attention)]["gflops_true"]) == (0.1, 0.2)
        assert (by[("vidtldr", attention)]["gflops_paper"], by[("vidtldr", attention)]["gflops_true"]) == (0.08, 0.16)
        assert by[("tome", attention)]["gflops_paper"] == by[("random", attention)]["gflops_paper"] == 0.08


def test_fused_and_materialized_outputs_agree(tiny_result):
    check = tiny_result["output_check"]
    assert set(check) == {"none", "vidtldr", "tome", "random"}
    for merge, c in check.items():
        assert c["same_token_counts"], merge
        assert c["agree"], (merge, c)
        assert c["max_abs_diff"] < 1e-4


def test_overhead_breakdown_is_present(tiny_result):
    ov = tiny_result["overhead"]
    assert ov["encoder_s"] > 0 and ov["match_merge_s"] >= 0
    assert [x["block"] for x in ov["scoring_layers"]] == [0, 1]


def test_markdown_renders_from_json(tiny_result, tmp_path):
    path = tmp_path / "bench.json"
    db = bench.merge_results(path, tiny_result)
    path.write_text(json.dumps(db))
    db = bench.merge_results(path, tiny_result)  # same model/dataset/device: replaced, not appended
    assert len(db["runs"]) == 1
    md = bench.render_md(db)
    assert "| vidtldr | fused |" in md and "| none | materialized |" in md
    assert "Fused vs materialized outputs" in md


def test_a_run_on_another_machine_is_kept_beside_the_first(tiny_result, tmp_path):
    import copy

    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench.merge_results(path, tiny_result)))
    other = copy.deepcopy(tiny_result)
    other["environment"]["processor"] = "another CPU"
    db = bench.merge_results(path, other)
    assert sorted(run["environment"]["processor"] for run in db["runs"]) == sorted(
        [tiny_result["environment"]["processor"], "another CPU"])
    assert "another CPU" in bench.render_md(db)


def test_cli_last_line_is_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vidtldr.bench", "model=tiny", "repeats=1", "reducers=[none,vidtldr]",
         f"out={tmp_path}", "breakdown=false"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {(r["merge"], r["attention"]) for r in res["rows"]} == {
        ("none", "fused"), ("none", "materialized"), ("vidtldr", "fused"), ("vidtldr", "materialized")}
    assert all(c["agree"] for c in res["output_check"].values())
    written = json.loads((tmp_path / "bench.json").read_text())
    assert len(written["runs"]) == 1
    assert (tmp_path / "bench.md").read_text().startswith("# Encoder benchmark")


def test_cli_rejects_unknown_attention_mode():
    proc = subprocess.run([sys.executable, "-m", "vidtldr.bench", "model=tiny", "repeats=1", "write=false",
                           "attentions=[fused,flash]"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("vidtldr.bench: error:")


def test_render_only_regenerates_markdown(tiny_result, tmp_path):
    (tmp_path / "bench.json").write_text(json.dumps(bench.merge_results(tmp_path / "none.json", tiny_result)))
    proc = subprocess.run([sys.executable, "-m", "vidtldr.bench", "render_only=true", f"out={tmp_path}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "## tiny / msrvtt" in (tmp_path / "bench.md").read_text()
    assert len(json.loads(proc.stdout.strip().splitlines()[-1])["rows"]) == 8


def test_the_zoo_is_benched_at_vid_tldrs_schedule():
    from vidtldr.analysis.bench import plan_executions

    cfg = compose_config(["model=umt_b", "dataset=msrvtt"], config_name="bench")
    execs, skipped = plan_executions(cfg, ["vidtldr", "fastv", "pitome", "rlt", "rlt+vidtldr"], ["fused"], "vidtldr")
    plans = {ex.merge: (ex.schedule[:4], ex.schedule_source) for ex in execs}
    assert skipped == []
    # the published UMT-B MSRVTT schedule for every in-block reducer (equal token counts) ...
    assert plans["fastv"] == plans["pitome"] == ([600, 200, 100, 0], "same as vid-TLDR")
    assert plans["rlt+vidtldr"][0] == [600, 200, 100, 0]
    # ... and rlt alone removes the first block's count before block 0
    assert plans["rlt"] == ([600, 0, 0, 0], "vid-TLDR's first block, before block 0")


@pytest.mark.parametrize("overrides, source", [
    (["model=videomae_b", "dataset=kinetics400"], "umt_fractions"),     # VideoMAE's published -> umt_fractions
    (["model=videomae_b", "dataset=kinetics400", "merge=none"], "umt_fractions"),
    (["model=umt_b", "dataset=msrvtt"], "published"),
    (["model=umt_b", "dataset=msrvtt", "merge.r=[600,200]"], "merge.r"),
])
def test_vidtldrs_row_names_the_schedule_it_ran(overrides, source):
    from vidtldr.analysis.bench import plan_executions

    execs, skipped = plan_executions(compose_config(overrides, config_name="bench"), ["vidtldr"], ["fused"], "vidtldr")
    assert skipped == [] and [ex.schedule_source for ex in execs] == [source]
