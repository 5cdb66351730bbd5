"""The benchmark times VideoMAE's encoder like UMT's (schema and output equality, never timings)."""

import pytest

from vidtldr.analysis import bench
from vidtldr.config_utils import compose_config
from vidtldr.errors import ConfigError

OVERRIDES = ["model=videomae_tiny", "dataset=kinetics400", "merge.r=published"]


def test_videomae_rows_and_outputs():
    cfg = compose_config(OVERRIDES, config_name="bench")
    result = bench.run_bench(cfg, reducers=["none", "vidtldr"], attentions=["fused", "materialized"], repeats=1,
                             warmup=1, device="cpu", breakdown=False, profile=False)
    rows = {(r["merge"], r["attention"]): r for r in result["rows"]}
    assert set(rows) == {(m, a) for m in ("none", "vidtldr") for a in ("fused", "materialized")}
    # 32 tokens; the tiny VideoMAE's schedule [8, 4] leaves 20
    assert rows[("none", "fused")]["final_tokens"] == 32 and rows[("vidtldr", "fused")]["final_tokens"] == 20
    assert all(check["agree"] for check in result["output_check"].values())
    assert result["targets"] == {}  # the targets are UMT-B's


def test_the_umt_attention_breakdown_is_refused_before_any_timing():
    cfg = compose_config(OVERRIDES, config_name="bench")
    with pytest.raises(ConfigError, match="breakdown=true times the attention modules of the UMT ViT; "
                                          "model=videomae_tiny .* pass breakdown=false"):
        bench.run_bench(cfg, reducers=["none"], attentions=["fused"], repeats=1, device="cpu", breakdown=True)
