"""GFLOPs of VideoMAE per view in its paper's convention (multiply-adds of the convolution, linear
layers and matmuls; VideoMAE-B 180, L 597 per 16x224x224 view), counted by hand here, and the
flops command's per-view / views / total report, which needs no weights."""

import json
import subprocess
import sys

import pytest

from vidtldr.cost.vision import vision_cost, vision_dims
from vidtldr.models.family import get_family


def _hand_count(width, depth, heads, tokens=1568, patch_in=3 * 2 * 16 * 16):
    linear = tokens * (width * 3 * width + width * width + 2 * width * 4 * width)   # qkv, proj, fc1 + fc2
    attention = 2 * heads * tokens * tokens * (width // heads)                        # q.k^T and A.v
    return depth * (linear + attention) + tokens * patch_in * width                   # + tubelet embedding


def test_hand_counts_give_the_paper_numbers():
    # worked out: B = 12 x (11,098,128,384 + 3,776,446,464) + 1,849,688,064 = 180,344,586,240
    assert _hand_count(768, 12, 12) == 180_344_586_240
    assert _hand_count(1024, 24, 16) == 596_832_681_984
    assert round(180_344_586_240 / 1e9, 1) == 180.3 and round(596_832_681_984 / 1e9, 1) == 596.8


@pytest.mark.parametrize("arch, width, depth, heads", [("videomae_b16", 768, 12, 12), ("videomae_l16", 1024, 24, 16)])
def test_analytic_count_equals_the_hand_count(arch, width, depth, heads):
    dims = vision_dims(get_family("videomae").architecture(arch, "classification"))
    cost = vision_cost(dims, 16)
    assert cost.tokens_per_layer == [1568] * (depth + 1)
    assert cost.paper == _hand_count(width, depth, heads)
    assert "layer_norm" not in cost.paper_by_op and cost.true > 2 * cost.paper  # true FLOPs still count the norms


def test_flops_command_reports_per_view_and_total_without_weights():
    res = subprocess.run([sys.executable, "-m", "vidtldr.flops", "model=videomae_b", "dataset=kinetics400", "merge=none",
                          "trace=false"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    assert rep["gflops_paper_1dp"] == 180.3 and rep["per"] == "view" and rep["views"] == 15
    assert rep["gflops_paper_per_video"] == pytest.approx(15 * 180.3446, abs=1e-3)
    assert "x 15 views (5 clips x 3 crops)" in res.stdout


def _hand_count_reduced(tokens, width=768, heads=12, embedded=1568, patch_in=3 * 2 * 16 * 16):
    """Per view, blocks entering with tokens[i] and leaving with tokens[i + 1]: attention on the
    tokens entering, vid-TLDR's bipartite similarity (ceil(T/2) x floor(T/2) x width) where the block
    merges, the MLP on the tokens leaving."""
    total = embedded * patch_in * width
    for t_in, t_out in zip(tokens[:-1], tokens[1:], strict=True):
        total += t_in * 4 * width * width + 2 * heads * t_in * t_in * (width // heads)   # qkv, proj; q.k^T, A.v
        total += ((t_in + 1) // 2) * (t_in // 2) * width if t_out < t_in else 0          # similarity
        total += t_out * 8 * width * width                                               # fc1 + fc2
    return total


def test_flops_default_schedule_is_umt_fractions_per_view_and_total():
    res = subprocess.run([sys.executable, "-m", "vidtldr", "flops", "model=videomae_b", "dataset=kinetics400"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout.strip().splitlines()[-1])
    # UMT-B MSRVTT's 600/2352, 200/1752, 100/1552 (0.2552, 0.1142, 0.0645) of VideoMAE's tokens:
    # int(1568 x 0.2552) = 400, int(1168 x 0.1142) = 133, int(1035 x 0.0645) = 66
    tokens = [1568, 1168, 1035] + [969] * 10
    assert rep["tokens_per_layer"] == tokens
    # worked out: 1,849,688,064 (embedding) + 13,459,193,856 + 9,996,779,520 + 8,865,263,616
    # + 9 x 8,300,717,568 (blocks) = 108,877,383,168 per view, x 15 views = 1,633,160,747,520;
    # block 0: 1568 x 4 x 768^2 + 2 x 1568^2 x 768 + 784 x 784 x 768 + 1168 x 8 x 768^2
    assert _hand_count_reduced(tokens) == 108_877_383_168
    assert rep["gflops_paper"] == pytest.approx(108.8774, abs=1e-4) and rep["gflops_paper_1dp"] == 108.9
    assert rep["per"] == "view" and rep["views"] == 15
    assert rep["gflops_paper_per_video"] == pytest.approx(1633.1607, abs=1e-3)
    assert "x 15 views (5 clips x 3 crops) = 1633.2 GFLOPs per video" in res.stdout
    # never called published: the name and where the fractions come from
    assert rep["schedule_spec"] == "umt_fractions" and "published" not in rep
    assert rep["schedule_note"].startswith("umt_fractions: no vid-TLDR schedule was published for model=videomae_b")
    assert "umt_b schedule for msrvtt ([600, 200, 100] of 2352 tokens)" in rep["schedule_note"]
    assert f"schedule: {rep['schedule_note']}" in res.stdout


def test_tiny_trace_matches_the_analytic_count():
    from vidtldr.analysis.flops.engine import count
    from vidtldr.config_utils import compose_config
    from vidtldr.run.runspec import resolve_model

    spec = resolve_model(compose_config(["model=videomae_tiny", "dataset=ssv2", "merge=vidtldr", "merge.r=published"],
                                        config_name="flops"))
    rep = count(spec, trace=True)
    assert rep["traced"]["exact"] and rep["views"] == 6 and rep["tokens_per_layer"] == [32, 24, 20, 20, 20]
