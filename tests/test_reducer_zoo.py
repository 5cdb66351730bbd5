"""The reducer zoo (random_merge, fastv, divprune, visionzip, pitome): hand-worked examples on tiny
tensors (expected values worked out in the comments), the budget each takes from the schedule, and
their FLOPs counted by hand from what each declares."""

from __future__ import annotations

import math

import pytest
import torch

from vidtldr.cost.vision import backbone_vision_dims, reducer_cost
from vidtldr.reduce import ReductionState, build_reducer
from vidtldr.reduce.divprune import cosine_distance, max_min_keep
from vidtldr.reduce.fastv import attention_received, least_attended_keep
from vidtldr.reduce.pitome import energy_score, pitome_margin, pitome_match
from vidtldr.reduce.random_merge import random_match, random_sources
from vidtldr.reduce.visionzip import contextual_count, zip_match

ZOO = ("random_merge", "fastv", "divprune", "visionzip", "pitome")


def _run(reducer, x, depth, state, seed=0):
    """Drive a reducer through ``depth`` blocks as the ViT does (random keys / maps when asked)."""
    g = torch.Generator().manual_seed(seed)
    counts = [x.shape[1]]
    for layer in range(depth):
        need, n = reducer.needs(layer, x.shape[1]), x.shape[1]
        aux = {"keys": torch.randn(x.shape[0], n, 4, generator=g)} if need == "keys" else \
            {"attn": torch.rand(x.shape[0], n, n, generator=g).softmax(-1)} if need == "attn" else {}
        x = reducer.reduce(x, layer, state, aux)
        counts.append(x.shape[1])
    return x, counts


# ----------------------------------------------------------------------------- fastv

def test_fastv_drops_the_least_attended_tokens():
    # rows are queries, columns keys; column sums 0.75, 0.95, 0.85, 1.45 (means /4): token 0 gets the
    # least attention, then token 2
    attn = torch.tensor([[[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25],
                          [0.0, 0.2, 0.1, 0.7]]])
    torch.testing.assert_close(attention_received(attn), torch.tensor([[0.1875, 0.2375, 0.2125, 0.3625]]))
    x = torch.tensor([[[10.0], [11.0], [12.0], [13.0]]])
    out = build_reducer("fastv", [2]).reduce(x, 0, ReductionState(), {"attn": attn})
    assert out.flatten().tolist() == [11.0, 13.0]  # survivors keep their order
    # ties (uniform attention) drop the earlier tokens first
    assert least_attended_keep(torch.full((1, 4), 0.25), 1).tolist() == [[1, 2, 3]]


# ----------------------------------------------------------------------------- divprune

def test_divprune_keeps_the_most_diverse_tokens_greedily():
    # x1 is x0 turned by ~5.7 degrees; x2 is orthogonal to x0, x3 opposite to it. Distances 1 - cos:
    # d01 = 1 - 1/sqrt(1.01) = 0.005, d02 = 1, d03 = 2, d12 = 1 - 0.1/sqrt(1.01) = 0.9005,
    # d13 = 1 + 1/sqrt(1.01) = 1.995, d23 = 1.
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64)
    d = cosine_distance(x)[0]
    assert d[0, 1].item() == pytest.approx(1 - 1 / math.sqrt(1.01)) and d[1, 3].item() == pytest.approx(1.995037, abs=1e-6)
    # nearest other token: 0.005, 0.005, 0.9005, 1.0 -> the first kept is token 3 (most isolated);
    # distances to {3}: 2, 1.995, 1 -> token 0; then to {0, 3}: min -> 0.005, 1 -> token 2
    assert max_min_keep(cosine_distance(x), 2).tolist() == [[0, 3]]
    assert max_min_keep(cosine_distance(x), 3).tolist() == [[0, 2, 3]]
    out = build_reducer("divprune", [1]).reduce(x, 0, ReductionState(), {})
    assert out[0].tolist() == [[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]  # the near-duplicate x1 is dropped


def test_divprune_never_keeps_a_token_twice():
    x = torch.ones(1, 5, 3)  # all identical: every distance is 0
    assert max_min_keep(cosine_distance(x), 5).tolist() == [[0, 1, 2, 3, 4]]


# ----------------------------------------------------------------------------- visionzip

def test_visionzip_split_follows_the_published_operating_points():
    # VisionZip keeps 54 + 10 of 64, 108 + 20 of 128, 162 + 30 of 192 tokens
    assert [contextual_count(k) for k in (64, 128, 192, 1, 9, 10)] == [10, 20, 30, 1, 1, 2]


def test_visionzip_keeps_dominant_tokens_and_merges_the_rest_into_contextual_ones():
    # received attention: tokens 0 and 3 dominate (0.9, 0.8). The rest, in order, is [1, 2, 4, 5];
    # two contextual targets every 4 // 2 = 2nd: tokens 1 and 4. x2 = (0.9, 0.1) is closest to
    # x1 = (1, 0); x5 = (0.1, 1) to x4 = (0, 1). Sizes 1: each contextual token is the plain mean.
    x = torch.tensor([[[5.0, 5.0], [1.0, 0.0], [0.9, 0.1], [-5.0, 5.0], [0.0, 1.0], [0.1, 1.0]]])
    received = torch.tensor([[0.9, 0.1, 0.2, 0.8, 0.3, 0.05]])
    match = zip_match(x, received, 2, 2)
    assert match.dominant.tolist() == [[0, 3]] and match.targets.tolist() == [[1, 4]]
    assert match.others.tolist() == [[2, 5]] and match.assign.tolist() == [[0, 1]]
    from vidtldr.reduce.base import apply_merge
    from vidtldr.reduce.tome import tome_merge_source, tome_merge_wavg

    state = ReductionState(trace_source=True)
    out = apply_merge(match, x, state, tome_merge_wavg, tome_merge_source)
    torch.testing.assert_close(out[0], torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.95, 0.05], [0.05, 1.0]]))
    assert state.size.flatten().tolist() == [1.0, 1.0, 2.0, 2.0]
    assert state.source[0].tolist() == [[1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1]]


def test_visionzip_removes_exactly_r():
    # T = 40, r = 10: 30 kept = 5 contextual (round(5 * 30 / 32) = round(4.69)) + 25 dominant
    state = ReductionState(record_trace=True)
    out, counts = _run(build_reducer("visionzip", [10]), torch.randn(2, 40, 8), 1, state)
    assert counts == [40, 30] and state.trace[0]["target_idx"].shape == (2, 5)
    assert state.size.sum(1).flatten().tolist() == [40.0, 40.0]  # merging keeps every patch's weight


# ----------------------------------------------------------------------------- pitome

def test_pitome_energy_protects_the_informative_tokens():
    # keys k0 = k1 = (1, 0), k2 = (0, 1), k3 = (-1, 0); margin at block 0 of 2 = 0.75.
    # ELU(s - 0.75): s = 1 -> 0.25, s = 0 -> e^-0.75 - 1 = -0.5276334, s = -1 -> e^-1.75 - 1 = -0.8262261.
    # E0 = E1 = (0.25 + 0.25 - 0.5276334 - 0.8262261) / 4 = -0.2134649;
    # E2 = (0.25 - 3 * 0.5276334) / 4 = -0.3332250; E3 = (0.25 - 0.5276334 - 2 * 0.8262261) / 4 = -0.4825214
    keys = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], dtype=torch.float64)
    assert pitome_margin(0, 2) == 0.75 and pitome_margin(1, 2) == 0.375
    sim = keys @ keys.transpose(-1, -2)
    torch.testing.assert_close(energy_score(sim, 0.75), torch.tensor([[-0.2134649, -0.2134649, -0.3332250, -0.4825214]],
                                                                      dtype=torch.float64), atol=1e-6, rtol=0)
    # r = 1: the two highest energies (0, 1) may merge: source 0 into destination 1; 2 and 3 protected
    match, _ = pitome_match(keys, 1, 0.75)
    assert (match.protected.tolist(), match.src.tolist(), match.dst.tolist()) == ([[2, 3]], [[0]], [[1]])
    x = torch.tensor([[[2.0], [4.0], [7.0], [9.0]]])
    out = build_reducer("pitome", [1, 0]).reduce(x, 0, ReductionState(), {"keys": keys.float()})
    assert out.flatten().tolist() == [7.0, 9.0, 3.0]  # protected, then (2 + 4) / 2
    # r = 2: sources 0, 2 and destinations 1, 3 (energy order); s(0,1) = 1 -> 1; s(2,1) = s(2,3) = 0 -> the
    # first destination, 1. Token 1 absorbs both: (2 + 4 + 7) / 3 with size 3; token 3 alone.
    state = ReductionState()
    out = build_reducer("pitome", [2, 0]).reduce(x, 0, state, {"keys": keys.float()})
    torch.testing.assert_close(out.flatten(), torch.tensor([13 / 3, 9.0]))
    assert state.size.flatten().tolist() == [3.0, 1.0]


# ----------------------------------------------------------------------------- random_merge

def test_random_merge_sends_each_drawn_token_to_its_most_similar_odd_token():
    # r = 2 of 2 even tokens: every even token is drawn, so the result does not depend on the draw.
    # k0 = (1, 0) is closest to k3 = (1, 0.1); k2 = (0.1, 1) to k1 = (0, 1).
    keys = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [1.0, 0.1]]])
    x = torch.tensor([[[1.0], [3.0], [5.0], [7.0]]])
    state = ReductionState()
    out = build_reducer("random_merge", [2]).reduce(x, 0, state, {"keys": keys})
    assert out.flatten().tolist() == [4.0, 4.0]  # odd order: (3 + 5) / 2, (7 + 1) / 2
    assert state.size.flatten().tolist() == [2.0, 2.0]
    match = random_match(keys, torch.tensor([[1]]), torch.tensor([[0]]))  # draw even token 1 (= token 2)
    assert match.dst_idx.flatten().tolist() == [0]


def test_random_merge_draws_per_sample_whatever_the_batch_and_by_seed():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 6, generator=g)
    alone = [random_sources(x[i:i + 1], 4, seed=0, layer=2)[0] for i in range(3)]
    drawn, rest = random_sources(x, 4, seed=0, layer=2)
    assert all(torch.equal(drawn[i:i + 1], alone[i]) for i in range(3))
    assert sorted(drawn[0].tolist() + rest[0].tolist()) == list(range(10))  # a split of the even half
    assert any(not torch.equal(random_sources(x, 4, seed=s, layer=2)[0], drawn) for s in (1, 2, 3))


# ----------------------------------------------------------------------------- all of them

@pytest.mark.parametrize("name", ZOO)
def test_each_reducer_follows_the_schedule_and_traces_every_patch(name):
    state = ReductionState(trace_source=True)
    x = torch.randn(2, 30, 8, generator=torch.Generator().manual_seed(1))
    reducer = build_reducer(name, [10, 0.25, 0, 40])
    out, counts = _run(reducer, x, 4, state)
    assert counts == [30, 20, 15, 15, 8]  # 10; int(20 * 0.25) = 5; 0; 40 clamped to 15 // 2 = 7
    assert out.shape == (2, 8, 8) and state.source.shape == (2, 8, 30)
    if reducer.tracks_sizes:  # merging: every patch is in exactly one token, sizes count them
        assert torch.equal(state.source.sum(1), torch.ones(2, 30))
        assert torch.equal(state.source.sum(2, keepdim=True), state.size)
    else:  # pruning: 8 patches survive, each once
        assert state.source.sum().item() == 16 and state.size is None


def test_flops_by_hand_at_the_published_umt_b_schedule():
    vision = backbone_vision_dims("umt_b16")
    sched = [600, 200, 100] + [0] * 9
    t_in, r = (2352, 1752, 1552), (600, 200, 100)
    cost = {n: reducer_cost(vision, 12, build_reducer(n, sched)) for n in ZOO + ("random", "vidtldr")}
    # the similarity each computes (multiply-adds, paper convention): ToMe's halves would be
    # ceil(T/2) x floor(T/2); random_merge only the r drawn tokens x floor(T/2) keys (64 wide)
    assert cost["random_merge"].paper_by_op["match"] == 64 * (600 * 1176 + 200 * 876 + 100 * 776)
    assert cost["divprune"].paper_by_op["match"] == 768 * (2352 ** 2 + 1752 ** 2 + 1552 ** 2)  # all pairs
    assert cost["pitome"].paper_by_op["match"] == 64 * (2352 ** 2 + 1752 ** 2 + 1552 ** 2)
    # visionzip: r merged tokens x M targets, M = round(5 (T - r) / 32): 274 (1752 kept), 243, 227
    assert cost["visionzip"].paper_by_op["match"] == 768 * (600 * 274 + 200 * 243 + 100 * 227)
    assert "match" not in cost["fastv"].paper_by_op
    # fastv counts like random drop in the paper convention (no matmul of its own)
    assert cost["fastv"].paper == cost["random"].paper
    # true FLOPs of the selection: attention received = T^2 column sums; divprune's running minimum
    # (T - r - 1) x T; pitome's energy 3 T^2
    assert cost["fastv"].true_by_op["select"] == sum(t * t for t in t_in)
    assert cost["visionzip"].true_by_op["select"] == sum(t * t for t in t_in)
    assert cost["divprune"].true_by_op["select"] == sum((t - k - 1) * t for t, k in zip(t_in, r, strict=True))
    assert cost["pitome"].true_by_op["select"] == 3 * sum(t * t for t in t_in)
    # fastv asks for the head-mean map: 12 heads x T^2 adds
    assert cost["fastv"].true_by_op["saliency"] == 12 * sum(t * t for t in t_in)
    assert cost["vidtldr"].tokens_per_layer == cost["pitome"].tokens_per_layer == cost["fastv"].tokens_per_layer
