"""Fused execution decides every reduction exactly as the materialized (official) execution, for
any schedule: every block up to the last one that removes tokens runs the materialized arithmetic
in query blocks (bit-identical), SDPA only after it."""

import itertools

import pytest
import torch

from vidtldr.models import attention, vit
from vidtldr.models.config import VisionConfig, load_architecture
from vidtldr.reduce import build_reducer, parse_schedule
from vidtldr.reduce.base import Reducer

from _models import sharpened_vit

TINY = {"img_size": 32, "patch_size": 8, "width": 32, "depth": 4, "num_heads": 4, "num_frames": 4}  # 64 tokens


def _tiny_model(seed=0):
    return sharpened_vit(VisionConfig(**TINY), seed=seed)


def _run_both(model, videos, name, schedule):
    outs = {}
    for mode in ("fused", "materialized"):
        model.attention = mode
        reducer = build_reducer(name, parse_schedule(schedule, model.cfg.depth))
        with torch.no_grad():
            outs[mode] = model(videos, reducer=reducer, trace=True)
    return outs["fused"], outs["materialized"]


def _decisions(out):
    """Every index tensor the reducers recorded (merge partners / kept tokens), per reducing block."""
    return [{k: v for k, v in step.items() if k.endswith("_idx")} | {"layer": step["layer"]}
            for step in out.state.trace]


def _same_decisions(a, b):
    da, db = _decisions(a), _decisions(b)
    return len(da) == len(db) and all(
        set(x) == set(y) and all(torch.equal(x[k], y[k]) if torch.is_tensor(x[k]) else x[k] == y[k] for k in x)
        for x, y in zip(da, db, strict=True))


# --- which blocks must be exact ------------------------------------------------------------------

def test_reducing_blocks_follow_the_token_counts():
    assert build_reducer("vidtldr", [20, 0, 20, 20]).reducing_blocks(64) == [0, 2, 3]  # 64 -> 44 -> 24 -> 12
    assert build_reducer("tome", [1, 1, 1]).reducing_blocks(3) == [0, 1]  # at 1 token, 1 // 2 = 0 removed
    # fractions truncate like the official int(T * r): 0.01 of 64 tokens removes none
    assert build_reducer("vidtldr", [0, 0.01, 0, 0.3]).reducing_blocks(64) == [3]
    assert build_reducer("random", [0, 0, 0, 0]).reducing_blocks(64) == []
    assert Reducer([600, 200]).reducing_blocks(64) == []  # merge=none ignores any schedule


@pytest.mark.parametrize("schedule, last", [([0, 20, 0, 10], 3), ([0.3, 0.01], 0), ([0, 0.01, 0, 0.3], 3),
                                            ([0, 0, 0, 0], -1), ([0.01] * 4, -1)])
def test_exact_through_is_the_last_reducing_block(schedule, last):
    model = _tiny_model()
    videos = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        out = model(videos, reducer=build_reducer("vidtldr", schedule))
    assert out.exact_through == model.exact_through(build_reducer("vidtldr", schedule), 64) == last
    model.attention = "materialized"
    assert model.exact_through(build_reducer("vidtldr", schedule), 64) == -1
    assert vit.VisionTransformer(VisionConfig(**TINY)).exact_through(None, 64) == -1


def test_query_blocks_cover_every_row_and_are_never_tiny():
    for tokens in (1, 2, 7, 8, 9, 20, 64, 517, 2352):
        for rows in (0, 1, 3, 8, 10, 148, 5000):
            blocks = attention.query_blocks(tokens, rows)
            assert blocks[0][0] == 0 and blocks[-1][1] == tokens
            assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
            assert all(stop - start >= min(tokens, attention._MIN_BLOCK_ROWS) for start, stop in blocks)
    assert attention.query_blocks(20, 10) == [(0, 10), (10, 20)]
    assert attention.query_blocks(21, 10) == [(0, 10), (10, 21)]  # a 1-row tail joins the block before


def test_head_mean_is_the_same_bits_for_any_rows():
    torch.manual_seed(0)  # Tensor.mean(1) over these row blocks differs from the full map's in the last bit
    probs = torch.randn(2, 12, 50, 50).softmax(-1)
    full = attention._head_mean(probs)
    assert torch.allclose(full, probs.mean(1), rtol=0, atol=1e-7)
    rows = torch.cat([attention._head_mean(probs[:, :, s:s + 9].contiguous()) for s in range(0, 50, 9)], 1)
    assert torch.equal(rows, full)


# --- fused == materialized on the tiny model (fast) ----------------------------------------------

# token counts by hand from 64: fractions remove int(T * r) (int(64 * 0.3) = 19, int(45 * 0.2) = 9)
@pytest.mark.parametrize("name, schedule, counts", [
    ("vidtldr", [0, 20, 0, 10], [64, 64, 44, 44, 34]), ("vidtldr", [0, 0, 0, 16], [64, 64, 64, 64, 48]),
    ("vidtldr", [0, 0.3, 0, 0.2], [64, 64, 45, 45, 36]), ("tome", [0, 12, 0, 8], [64, 64, 52, 52, 44]),
    ("random", [0, 0, 16], [64, 64, 64, 48, 48]),
    # the reducer zoo: attention-map (fastv, visionzip), key (pitome, random_merge) and hidden-state
    # (divprune) decisions; the same token counts for every one of them (64 - 12 = 52, 52 - 8 = 44)
    *[(name, [0, 12, 0, 8], [64, 64, 52, 52, 44])
      for name in ("fastv", "visionzip", "pitome", "random_merge", "divprune")],
    # a composition: rlt removes int(64 * 0.3) = 19 before block 0, then vid-TLDR 12 and 8
    ("rlt+vidtldr", [0, 12, 0, 8], [45, 45, 33, 33, 25])])
def test_fused_is_bitwise_materialized_through_the_last_reducing_block(monkeypatch, name, schedule, counts):
    # 9 query rows per block at 64 tokens (batch 2, 4 heads): several blocks and a 1-row tail, which
    # must join the block before it (a 1-row matmul rounds differently from the full map's rows)
    monkeypatch.setattr(attention, "_BLOCK_ELEMENTS", 2 * 4 * 64 * 9)
    model = _tiny_model()
    videos = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    fused, mat = _run_both(model, videos, name, schedule)
    last = fused.exact_through
    assert last == max(i for i, r in enumerate(schedule) if r) and mat.exact_through == -1
    assert fused.token_counts == mat.token_counts == counts
    assert _same_decisions(fused, mat) and len(fused.state.trace) >= 1
    for a, b in zip(fused.block_outputs[:last + 1], mat.block_outputs[:last + 1], strict=True):
        assert torch.equal(a, b)
    assert torch.allclose(fused.tokens, mat.tokens, rtol=0, atol=1e-5)


def test_no_reducer_keeps_sdpa_everywhere(monkeypatch):
    calls = []
    monkeypatch.setattr(vit.Attention, "_blocked", lambda self, *a: calls.append(1))
    model = _tiny_model()
    with torch.no_grad():
        out = model(torch.randn(1, 4, 3, 32, 32), reducer=build_reducer("none", [20, 20]))
    assert out.exact_through == -1 and calls == [] and out.token_counts == [64] * 5


# --- full-size UMT-B: today's SDPA-before-merging diverges, the exact prefix does not -------------

@pytest.mark.slow
def test_umt_b_gapped_schedules_decide_exactly_as_materialized(monkeypatch):
    """Seeded random UMT-B weights and input, 4 frames (784 tokens). Schedules: the [0,600,0,200]
    kind scaled to 784 tokens, and merges after four and after eight idle blocks."""
    cfg = load_architecture("umt_b16", num_frames=4).vision
    torch.manual_seed(0)
    model = vit.VisionTransformer(cfg).eval()
    videos = torch.randn(1, 4, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    gapped = [[0, 0, 0, 0, 200, 67, 33], [0, 200, 0, 67], [0] * 8 + [200, 0, 67]]
    for schedule in gapped:
        fused, mat = _run_both(model, videos, "vidtldr", schedule)
        assert fused.token_counts == mat.token_counts
        assert _same_decisions(fused, mat), schedule
        assert torch.allclose(fused.tokens, mat.tokens, rtol=0, atol=1e-5), schedule
    # The model is big enough to show the problem: with SDPA in the idle blocks before a merge
    # (the previous fused execution), some gapped schedule takes other merge decisions.
    monkeypatch.setattr(vit.VisionTransformer, "exact_through", lambda self, reducer, n: -1)
    assert any(not _same_decisions(*_run_both(model, videos, "vidtldr", s)) for s in gapped)
