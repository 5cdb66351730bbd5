"""FLOPs in the paper's convention: the analytic counter against the published recounts, and
(when the model package is present) against fvcore's trace of the real module."""

from __future__ import annotations

import pytest

from vidtldr.analysis.flops import engine as flops_count, trace as flops_trace
from vidtldr.analysis.flops.reference import paper_gflops
from vidtldr.config_utils import compose_config
from vidtldr.cost.ledger import round1
from vidtldr.cost.text import itm_rerank_cost, qa_cost, text_dims, text_query_cost
from vidtldr.cost.vision import ReducerTraits, VisionDims, backbone_vision_dims, reducer_cost, vision_cost, vision_dims
from vidtldr.models.config import load_architecture
from vidtldr.reduce.schedule import VIDTLDR_PRESETS
from vidtldr.reduce.vidtldr import VidTLDR
from vidtldr.run.assemble import build_model
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


# The tiny encoder counted term by term (C = 64, 4 heads, MLP 256, 4 blocks; 4 frames of 7 x 7
# patches of 32 px = 196 tokens), in both conventions, without and with vid-TLDR r = [48, 24]
# (tokens 196 -> 148 -> 124 -> 124 -> 124). These are the numbers a tiny run's record reports.
# Paper (MACs, 5 per layer-norm element), one block from T to U tokens:
#   norm1 5TC + qkv 3TC^2 + proj TC^2 + q.k^T and A.v 2 T^2 C + norm2 5UC + fc1, fc2 8UC^2
#   (+ the merge similarity ceil(T/2) floor(T/2) C where the block removes tokens)
# True FLOPs (multiply-add 2, bias/add/scale 1, layer norm 7, softmax 4, GELU 5 per element):
#   on T: norm1 7TC + q,v bias 2TC + scale TC + proj bias TC + residual TC = 12TC,
#         qkv + proj 8TC^2, q.k^T and A.v 4T^2 C, softmax 4 * 4 heads T^2 = 16T^2,
#         after the first merge the log(size) bias 4 heads * T^2;
#   on U: norm2 7UC + fc1 bias 4UC + GELU 20UC + fc2 bias UC + residual UC = 33UC, fc1 + fc2 16UC^2.
TINY_PAPER_BASE = (
    196 * 3072 * 64                                  # patch embedding: 196 x (3*32*32) x 64  = 38_535_168
    + 4 * (62_720 + 3_211_264 + 4_917_248 + 62_720 + 6_422_528)  # per block, T = U = 196: 5TC, 4TC^2, 2T^2C, 5UC, 8UC^2
    + 5 * 196 * 64 + 5 * 64)                         # final norm + pool norm
TINY_PAPER_VIDTLDR = (
    38_535_168
    + (62_720 + 3_211_264 + 4_917_248 + 98 * 98 * 64 + 47_360 + 4_849_664)  # block 0: 196 -> 148, similarity 98 x 98 x 64
    + (47_360 + 2_424_832 + 2_803_712 + 74 * 74 * 64 + 39_680 + 4_063_232)  # block 1: 148 -> 124, similarity 74 x 74 x 64
    + 2 * (39_680 + 2_031_616 + 1_968_128 + 39_680 + 4_063_232)           # blocks 2, 3 at 124
    + 5 * 124 * 64 + 5 * 64)
TINY_TRUE_BASE = (
    2 * 38_535_168 + 196 * 64 + 196 * 64             # patch embedding MACs, its bias, + position embedding
    + 4 * (12 * 196 * 64 + 8 * 196 * 4096 + 4 * 196 ** 2 * 64 + 16 * 196 ** 2 + 33 * 196 * 64 + 16 * 196 * 4096)
    + 7 * 196 * 64 + 196 * 64 + 7 * 64)               # final norm, mean pool (one add per element), pool norm
TINY_TRUE_VIDTLDR = (
    2 * 38_535_168 + 2 * 196 * 64
    # block 0, attention on 196 (no size bias yet), then the reduction 196 -> 148 (r = 48):
    #   head mean 4 T^2 + p ln p 3 T^2 + 10 T normalisation, L2 normalisation 3TC,
    #   similarity 2 x 98 x 98 x 64 + (s + 1) / 2 on 98 x 98, size-weighted average (T + 2r + U)(C + 1)
    + 12 * 196 * 64 + 8 * 196 * 4096 + 4 * 196 ** 2 * 64 + 16 * 196 ** 2
    + 7 * 196 ** 2 + 10 * 196 + 3 * 196 * 64 + 2 * 98 * 98 * 64 + 2 * 98 * 98 + (196 + 96 + 148) * 65
    + 33 * 148 * 64 + 16 * 148 * 4096
    # block 1: attention on 148 with the size bias, reduction 148 -> 124 (r = 24)
    + 12 * 148 * 64 + 8 * 148 * 4096 + 4 * 148 ** 2 * 64 + 20 * 148 ** 2
    + 7 * 148 ** 2 + 10 * 148 + 3 * 148 * 64 + 2 * 74 * 74 * 64 + 2 * 74 * 74 + (148 + 48 + 124) * 65
    + 33 * 124 * 64 + 16 * 124 * 4096
    # blocks 2, 3 at 124 with the size bias
    + 2 * (12 * 124 * 64 + 8 * 124 * 4096 + 4 * 124 ** 2 * 64 + 20 * 124 ** 2 + 33 * 124 * 64 + 16 * 124 * 4096)
    + 7 * 124 * 64 + 124 * 64 + 7 * 64)


def test_tiny_encoder_counted_by_hand():
    vision = backbone_vision_dims("tiny")
    base = vision_cost(vision, 4, None)
    vid = vision_cost(vision, 4, [48, 24], reducer=VidTLDR)
    assert vid.tokens_per_layer == [196, 148, 124, 124, 124]
    assert (base.paper, vid.paper) == (TINY_PAPER_BASE, TINY_PAPER_VIDTLDR) == (97_304_128, 78_292_032)
    assert (base.true, vid.true) == (TINY_TRUE_BASE, TINY_TRUE_VIDTLDR) == (198_321_088, 159_673_368)
    # the QA model has no pool norm: 5 x 64 fewer in the paper count, 7 x 64 + the 196 x 64 mean pool in true
    qa = backbone_vision_dims("tiny", task="qa")
    assert vision_cost(qa, 4, None).paper == TINY_PAPER_BASE - 5 * 64
    assert vision_cost(qa, 4, None).true == TINY_TRUE_BASE - 7 * 64 - 196 * 64


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
    # k_test = 128 pairs, each with 3 fusion layers whose cross-attention, per vision token, projects
    # K and V (768 x 1536 MACs) and multiplies with the 32 queries twice (q.k^T, A.v: 2 x 32 x 768)
    per_token = 3 * (768 * 1536 + 2 * 32 * 768)
    assert per_token == 3_686_400
    assert full - merged == 128 * (2352 - 1452) * per_token
    assert full > 128 * 3 * 2352 * 768 * 2 * 768  # the K/V projections alone
    assert text_query_cost(text, 32).paper_total < full / 100
    # QA: only the question encoder's 3 fusion layers read the vision tokens (25 question tokens);
    # the answer decoder attends to the question, so it costs the same at any token count
    per_token_qa = 3 * (768 * 1536 + 2 * 25 * 768)
    assert qa_cost(text, 2352).paper_total - qa_cost(text, 1552).paper_total == (2352 - 1552) * per_token_qa


# ---------------------------------------------------------------------------------------------
# Analytic == traced (fvcore on the real module), small inputs only


def _reducer(name, schedule, depth):
    from vidtldr.reduce import build_reducer
    from vidtldr.reduce.schedule import parse_schedule

    return None if name == "none" else build_reducer(name, parse_schedule(schedule, depth))


@pytest.mark.parametrize("attention", ["fused", "materialized"])
@pytest.mark.parametrize("merge", ["none", "vidtldr", "tome", "random"])
def test_traced_equals_analytic_tiny(merge, attention):
    from vidtldr.run.assemble import build_vision

    spec = _spec("model=tiny")
    cfg = spec.arch_config()
    vision = vision_dims(cfg)
    reducer = _reducer(merge, [48, 0.2, 5], vision.depth)
    analytic = reducer_cost(vision, 4, reducer)
    encoder = build_vision(spec, seed=0, attention=attention)  # the assembler's, as every tool builds it
    traced = flops_trace.traced_vision_cost(encoder, cfg.vision, _reducer(merge, [48, 0.2, 5], vision.depth))
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
    from vidtldr.run.assemble import build_vision

    spec = _spec("model=umt_b", "eval.num_frames=1")
    cfg = spec.arch_config()
    vision = vision_dims(cfg)
    analytic = reducer_cost(vision, 1, _reducer("vidtldr", [50, 30, 20], 12))
    traced = flops_trace.traced_vision_cost(build_vision(spec, seed=0), cfg.vision,
                                            _reducer("vidtldr", [50, 30, 20], 12))
    assert flops_trace.compare(analytic, traced)["exact"]
    assert analytic.paper_by_op["match"] == 98 * 98 * 768 + 73 * 73 * 768 + 58 * 58 * 768


@pytest.mark.parametrize("dataset", ["msrvtt", "msrvtt_qa"])
def test_extra_costs_equal_traced_text_modules(dataset):
    spec = _spec("model=tiny", f"dataset={dataset}")
    cfg = spec.umt_config()
    text = text_dims(cfg)
    analytic = flops_count.extra_costs(text, spec, 124)
    traced = flops_trace.traced_extra_costs(build_model(spec, cfg, seed=0)[0], spec, 124)
    assert set(analytic) == set(traced)
    for name, total in traced.items():
        assert total == round(analytic[name]["gflops_paper"] * 1e9), name


def test_extra_costs_are_what_the_task_declares():
    # flops dispatches through the task registry, never on a task's name: a new text task's own
    # per-query entries are reported, analytically and traced, with nothing else to edit
    from vidtldr.tasks.base import TASKS, register_task
    from vidtldr.tasks.retrieval import RetrievalTask

    @register_task("test_captioning")
    class Captioning(RetrievalTask):
        def query_costs(self, text, spec, vision_tokens):
            return {"caption_per_video": {"gflops_paper": 2 * vision_tokens / 1e9}}

        def query_calls(self, model, spec, vision_tokens):
            import torch

            return {"caption_per_video": (2, [(model.itc_vision, (torch.randn(1, 1, model.cfg.vision.width),))])}

    try:
        spec = _spec("model=tiny", "dataset=msrvtt", "dataset.task=test_captioning")
        cfg = spec.umt_config()
        assert flops_count.extra_costs(text_dims(cfg), spec, 124) == {"caption_per_video": {"gflops_paper": 248e-9}}
        # itc_vision: one projection of a width-64 vector to embed_dim 32 (+ its L2 norm, not counted), twice
        model, _ = build_model(spec, cfg, seed=0)
        assert flops_trace.traced_extra_costs(model, spec, 124) == {"caption_per_video": 2 * 64 * 32}
    finally:
        TASKS.pop("test_captioning")


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

    with pytest.raises(ConfigError, match=r"^merge=random has no default schedule: give one, e\.g\. merge\.r=100 "):
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
    proc, rep = _run_cli("model=tiny", "merge.r=[40,20]", "trace=true")
    assert proc.returncode == 0, proc.stderr
    assert rep["tokens_per_layer"] == [196, 156, 136, 136, 136]
    assert rep["traced"]["exact"] is True
    assert all(e["traced_exact"] for e in rep["extra"].values())


def test_cli_answers_from_the_analytic_count_by_default():
    """No model is built unless trace=true: the report has no traced part."""
    proc, rep = _run_cli("model=tiny", "merge.r=[40,20]")
    assert proc.returncode == 0, proc.stderr
    assert rep["tokens_per_layer"] == [196, 156, 136, 136, 136] and "traced" not in rep


def test_renamed_keys_name_the_new_key_in_one_line():
    for old, new in (("attention=materialized", "eval.attention"), ("batch=2", "data.batch_size"),
                     ("table_out=x.md", "out")):
        proc, _ = _run_cli("model=tiny", old)
        assert proc.returncode == 2
        assert proc.stderr.strip() .splitlines() == [
            f"vidtldr.flops: error: {old.split('=')[0]}= was renamed: use {new}="
            + (" (the folder written into; the file names inside are fixed)" if new == "out" else "")]


def test_cli_error_is_one_line():
    proc, _ = _run_cli("model=umt_b", "merge=tome", "trace=false")  # no ToMe preset for MSRVTT
    assert proc.returncode == 2
    assert proc.stderr.startswith("vidtldr.flops: error:") and "Traceback" not in proc.stderr
