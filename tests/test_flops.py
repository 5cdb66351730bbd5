"""FLOPs in the paper's convention: the analytic counter against the published recounts, and
(when the model package is present) against fvcore's trace of the real module."""

from __future__ import annotations

import pytest

from vidtldr.analysis import flops_count, flops_trace
from vidtldr.analysis.flops_reference import paper_gflops
from vidtldr.config_utils import compose_config
from vidtldr.cost.ledger import round1
from vidtldr.cost.text import itm_rerank_cost, qa_cost, text_dims, text_query_cost
from vidtldr.cost.vision import ReducerTraits, VisionDims, backbone_vision_dims, reducer_cost, vision_cost, vision_dims
from vidtldr.models.config import load_architecture
from vidtldr.reduce.schedule import VIDTLDR_PRESETS
from vidtldr.reduce.vidtldr import VidTLDR
from vidtldr.run.runspec import resolve_model

ARCH = {"umt_b": "umt_b16", "umt_l": "umt_l16"}
PUBLISHED_GFLOPS = paper_gflops().schedules      # from vidtldr/report/paper_reference.csv
PUBLISHED_BASELINES = paper_gflops().baselines


def _spec(*overrides):
    return resolve_model(compose_config(overrides, config_name="flops"))


def _vision(backbone):
    return backbone_vision_dims(ARCH[backbone])

# Token counts after the merging layers of each published schedule (12 frames, N0 = 2352).
SPEC_FINAL_TOKENS = {
    ("msrvtt", "umt_b"): 1452, ("msrvtt", "umt_l"): 1402, ("msvd", "umt_b"): 1452,
    ("msvd", "umt_l"): 1352, ("anet", "umt_b"): 1852, ("anet", "umt_l"): 1452,
    ("didemo", "umt_b"): 1652, ("didemo", "umt_l"): 1452, ("lsmdc", "umt_b"): 1652,
    ("lsmdc", "umt_l"): 1452, ("ssv2_label", "umt_b"): 1652, ("ssv2_label", "umt_l"): 1552,
    ("ssv2_template", "umt_b"): 1652, ("ssv2_template", "umt_l"): 1552,
    ("msrvtt_qa", "umt_b"): 1552, ("msrvtt_qa", "umt_l"): 1452,
    ("msvd_qa", "umt_b"): 1552, ("msvd_qa", "umt_l"): 1452,
}


def test_all_published_schedules_have_a_reference():
    assert set(PUBLISHED_GFLOPS) == set(VIDTLDR_PRESETS) and len(PUBLISHED_GFLOPS) == 18


@pytest.mark.parametrize("key", sorted(PUBLISHED_GFLOPS))
def test_published_schedule_gflops(key):
    dataset, backbone = key
    vision = _vision(backbone)
    cost = vision_cost(vision, 12, VIDTLDR_PRESETS[key], reducer=VidTLDR)
    assert round1(cost.gflops_paper) == PUBLISHED_GFLOPS[key]
    assert cost.tokens_per_layer[-1] == SPEC_FINAL_TOKENS[key]
    assert len(cost.tokens_per_layer) == vision.depth + 1 and cost.tokens_per_layer[0] == 2352


@pytest.mark.parametrize("key", sorted(PUBLISHED_BASELINES))
def test_baselines(key):
    backbone, frames = key
    vision = _vision(backbone)
    cost = vision_cost(vision, frames, None)
    assert round1(cost.gflops_paper) == PUBLISHED_BASELINES[key]
    assert cost.tokens_per_layer == [frames * 196] * (vision.depth + 1)
    assert cost.removed == [0] * vision.depth


def test_baseline_breakdown_matches_fvcore_operator_split():
    # fvcore by_operator() of the official UMT-B/16 encoder, 12 frames: conv 1.39, linear 199.77, matmul 101.96, layer_norm 0.23 G
    cost = vision_cost(_vision("umt_b"), 12, None)
    got = {k: round(v / 1e9, 2) for k, v in cost.paper_by_op.items()}
    assert got == {"conv": 1.39, "linear": 199.77, "matmul": 101.96, "layer_norm": 0.23}


def test_msrvtt_b_token_walk_and_similarity_term():
    vision = _vision("umt_b")
    cost = vision_cost(vision, 12, [600, 200, 100], reducer=VidTLDR)
    assert cost.tokens_per_layer[:4] == [2352, 1752, 1552, 1452]
    assert cost.removed[:4] == [600, 200, 100, 0]
    # the merging similarity m_A . m_B^T is part of the published count (178.0, not 175.9)
    sim = 1176 * 1176 * 768 + 876 * 876 * 768 + 776 * 776 * 768
    assert cost.paper_by_op["match"] == sim
    no_similarity = ReducerTraits(need="neg_entropy", match_on=None, tracks_sizes=True)
    without = vision_cost(vision, 12, [600, 200, 100], reducer=no_similarity)
    assert round1(without.gflops_paper) == 175.9


def test_true_flops_are_about_twice_the_paper_count():
    for backbone in ("umt_b", "umt_l"):
        cost = vision_cost(_vision(backbone), 12, None)
        assert 2.0 < cost.true / cost.paper < 2.05
        # matmul-like work is exactly doubled
        for op in ("conv", "linear", "matmul"):
            assert cost.true_by_op[op] == 2 * cost.paper_by_op[op]


def test_fraction_schedule_and_explicit_token_counts_agree():
    vision = _vision("umt_b")
    by_fraction = vision_cost(vision, 12, [0.25, 0.1], reducer=VidTLDR)
    assert by_fraction.tokens_per_layer[:3] == [2352, 1764, 1588]
    explicit = vision_cost(vision, 12, token_counts=by_fraction.tokens_per_layer, reducer=VidTLDR)
    assert explicit.paper_by_op == by_fraction.paper_by_op


def test_qa_model_has_no_pool_norm():
    b = _vision("umt_b")
    qa = VisionDims(**{**b.__dict__, "pool_norm": False})
    assert vision_cost(b, 12, None).paper - vision_cost(qa, 12, None).paper == 5 * 768


def test_figure1_mismatches_are_msvd_and_didemo():
    mismatched = {d for d, g in paper_gflops().figure1.items() if g != PUBLISHED_GFLOPS[(d, "umt_b")]}
    assert mismatched == {"msvd", "didemo"}


def test_extra_costs_scale_with_merged_tokens():
    text = text_dims(load_architecture("umt_b16"))
    full = itm_rerank_cost(text, 32, 2352, 128).paper_total
    merged = itm_rerank_cost(text, 32, 1452, 128).paper_total
    assert merged < full
    # k_test pairs, each with 3 fusion layers whose cross-attention K/V read every vision token
    kv = 128 * 3 * 2352 * 768 * 2 * 768
    assert full > kv
    assert text_query_cost(text, 32).paper_total < full / 100
    assert qa_cost(text, 1552).paper_total < qa_cost(text, 2352).paper_total


# ---------------------------------------------------------------------------------------------
# Analytic == traced (fvcore on the real module), small inputs only


def _reducer(name, schedule, depth):
    from vidtldr.reduce import build_reducer
    from vidtldr.reduce.schedule import parse_schedule

    return None if name == "none" else build_reducer(name, parse_schedule(schedule, depth))


@pytest.mark.parametrize("attention", ["fused", "materialized"])
@pytest.mark.parametrize("merge", ["none", "vidtldr", "tome", "random"])
def test_traced_equals_analytic_tiny(merge, attention):
    from vidtldr.models.config import load_architecture

    cfg = load_architecture("tiny", num_frames=4)
    vision = vision_dims(cfg)
    reducer = _reducer(merge, [48, 0.2, 5], vision.depth)
    analytic = reducer_cost(vision, 4, reducer)
    traced = flops_trace.traced_vision_cost(cfg.vision, _reducer(merge, [48, 0.2, 5], vision.depth), attention)
    check = flops_trace.compare(analytic, traced)
    assert check["exact"], check
    assert traced.token_counts == analytic.tokens_per_layer
    if merge != "none":
        assert analytic.tokens_per_layer[:4] == [196, 148, 119, 114]
    if attention == "fused":
        # without the added handle fvcore would count fused attention as 0
        assert traced.by_operator.get("attention", 0) > 0


def test_traced_equals_analytic_full_width_umt_b_one_frame():
    # the real UMT-B widths (768, 12 heads, 12 blocks) on 1 frame (196 tokens): cheap on CPU
    from vidtldr.models.config import load_architecture

    cfg = load_architecture("umt_b16", num_frames=1)
    vision = vision_dims(cfg)
    analytic = reducer_cost(vision, 1, _reducer("vidtldr", [50, 30, 20], 12))
    traced = flops_trace.traced_vision_cost(cfg.vision, _reducer("vidtldr", [50, 30, 20], 12), "fused")
    assert flops_trace.compare(analytic, traced)["exact"]
    assert analytic.paper_by_op["match"] == 98 * 98 * 768 + 73 * 73 * 768 + 58 * 58 * 768


@pytest.mark.parametrize("dataset", ["msrvtt", "msrvtt_qa"])
def test_extra_costs_equal_traced_text_modules(dataset):
    spec = _spec("model=tiny", f"dataset={dataset}")
    cfg = spec.umt_config()
    text = text_dims(cfg)
    analytic = flops_count.extra_costs(text, spec, 124)
    traced = flops_trace.traced_extra_costs(cfg, spec, 124)
    assert set(analytic) == set(traced)
    for name, total in traced.items():
        assert total == round(analytic[name]["gflops_paper"] * 1e9), name


# ---------------------------------------------------------------------------------------------
# Configuration grammar and command line


def test_resolve_published_schedule_from_config_groups():
    spec = _spec("model=umt_b", "dataset=msrvtt", "merge=vidtldr")
    assert spec.arch == "umt_b16" and spec.num_frames == 12 and spec.k_test == 128 and spec.max_txt_l == 32
    assert spec.schedule == [600, 200, 100] + [0] * 9
    spec = _spec("model=umt_l", "dataset=didemo", "merge.r=[800,100]")
    assert spec.schedule == [800, 100] + [0] * 22
    spec = _spec("model=umt_b", "merge=none")
    assert spec.schedule == [0] * 12 and spec.reducer() is None
    spec = _spec("model=umt_b", "dataset=msrvtt_zs", "merge=none")
    assert spec.num_frames == 4


def test_resolve_rejects_missing_baseline_schedule():
    from vidtldr.errors import ConfigError

    with pytest.raises(ConfigError, match="merge.r"):
        _spec("model=umt_b", "merge=random")


def _run_cli(*args):
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vidtldr.flops", *args], capture_output=True, text=True,
                          timeout=300)
    return proc, (json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None)


def test_cli_published_schedule_without_trace():
    proc, rep = _run_cli("model=umt_b", "dataset=msrvtt", "merge=vidtldr", "trace=false")
    assert proc.returncode == 0, proc.stderr
    assert rep["gflops_paper_1dp"] == 178.0 and abs(rep["gflops_paper"] - 177.98) < 0.01
    assert 2 * rep["gflops_paper"] < rep["gflops_true"] < 2.05 * rep["gflops_paper"]
    assert rep["tokens_per_layer"] == [2352, 1752, 1552] + [1452] * 10
    assert rep["published"]["gflops"] == 178.0
    assert "published recount 178.0: matches" in proc.stdout
    assert set(rep["extra"]) == {"text_per_query", "itm_rerank_per_query"}


def test_cli_figure1_mismatch_is_reported():
    proc, rep = _run_cli("model=umt_b", "dataset=didemo", "trace=false")
    assert rep["gflops_paper_1dp"] == 212.8 and rep["published"]["figure1"] == 183.6
    assert "Figure 1 prints 183.6" in proc.stdout


def test_cli_tiny_traced_and_explicit_schedule():
    proc, rep = _run_cli("model=tiny", "merge.r=[40,20]")
    assert proc.returncode == 0, proc.stderr
    assert rep["tokens_per_layer"] == [196, 156, 136, 136, 136]
    assert rep["traced"]["exact"] is True
    assert all(e["traced_exact"] for e in rep["extra"].values())


def test_cli_error_is_one_line():
    proc, _ = _run_cli("model=umt_b", "merge=tome", "trace=false")  # no ToMe preset for MSRVTT
    assert proc.returncode == 2
    assert proc.stderr.startswith("vidtldr.flops: error:") and "Traceback" not in proc.stderr
