"""ToMe and random-drop baselines: behaviour on random tensors, schedule handling, presets."""

import pytest
import torch

from vidtldr.errors import ScheduleError
from vidtldr.reduce import REDUCERS, ReductionState, build_reducer
from vidtldr.reduce.random_drop import RandomDrop
from vidtldr.reduce.schedule import TOME_PRESETS, parse_schedule, token_counts
from vidtldr.reduce.tome import ToMe, tome_match, tome_merge_source, tome_merge_wavg


def _run(reducer, x, depth, state, key_dim=6, seed=0):
    """Drive a reducer through `depth` blocks like the ViT does (random keys when asked)."""
    g = torch.Generator().manual_seed(seed)
    counts = [x.shape[1]]
    for layer in range(depth):
        need = reducer.needs(layer, x.shape[1])
        aux = {"keys": torch.randn(x.shape[0], x.shape[1], key_dim, generator=g)} if need == "keys" else {}
        x = reducer.reduce(x, layer, state, aux)
        counts.append(x.shape[1])
    return x, counts


# ----------------------------------------------------------------------------- ToMe

def test_tome_hand_made_match():
    keys = torch.tensor([[[1.0, 0], [0, 1], [0, 1], [1, 0.05], [0.7, 0.7], [1, 0]]])
    # evens 0, 2, 4 ; odds 1, 3, 5. even 2 == odd 1 (cos 1), even 0 ~ odd 5 (cos 1), even 4 at 45 deg
    m = tome_match(keys, 2)
    assert sorted(m.src_idx.flatten().tolist()) == [0, 1]
    pairs = dict(zip(m.src_idx.flatten().tolist(), m.dst_idx.flatten().tolist(), strict=True))
    assert pairs[1] == 0 and pairs[0] == 2
    assert m.unm_idx.flatten().tolist() == [2]
    x = torch.arange(6.0).view(1, 6, 1)
    out, size = tome_merge_wavg(m, x)
    # [even 4] ++ [odd1 + even2 averaged, odd3, odd5 + even0 averaged]
    assert out.flatten().tolist() == [4.0, 1.5, 3.0, 2.5]
    assert size.flatten().tolist() == [1.0, 2.0, 1.0, 2.0]


def test_tome_conserves_size_and_is_weighted_average():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 30, 8, generator=g)
    keys = torch.randn(3, 30, 5, generator=g)
    size = 1 + 4 * torch.rand(3, 30, 1, generator=g)
    m = tome_match(keys, 12)
    new_x, new_size = tome_merge_wavg(m, x, size)
    assert new_x.shape == (3, 18, 8)
    torch.testing.assert_close(new_size.sum(1), size.sum(1))
    torch.testing.assert_close((new_x * new_size).sum(1), (x * size).sum(1), atol=1e-4, rtol=1e-5)
    # each output is a convex combination of its members' features, weights = sizes
    source = tome_merge_source(m, x)
    for bi in range(3):
        w = source[bi] * size[bi, :, 0][None]  # [18, 30]
        want = (w @ x[bi]) / w.sum(1, keepdim=True)
        torch.testing.assert_close(new_x[bi], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(w.sum(1, keepdim=True), new_size[bi])


def test_tome_reducer_schedule_sizes_and_source():
    reducer = ToMe([10, 0.25, 0, 40])
    assert REDUCERS["tome"] is ToMe and isinstance(build_reducer("tome", [1]), ToMe)
    assert reducer.needs(0, 50) == "keys" and reducer.needs(2, 30) is None and reducer.needs(7, 30) is None
    state = ReductionState(trace_source=True, record_trace=True)
    x = torch.randn(2, 50, 4, generator=torch.Generator().manual_seed(1))
    out, counts = _run(reducer, x, 4, state)
    assert counts == token_counts([10, 0.25, 0, 40], 50) == [50, 40, 30, 30, 15]
    assert state.size.shape == (2, 15, 1)
    assert torch.equal(state.size.sum(1), torch.full((2, 1), 50.0))  # ToMe drops nothing
    # provenance is a partition of the 50 original tokens, consistent with the sizes
    assert torch.equal(state.source.sum(1), torch.ones(2, 50))
    assert torch.equal(state.source.sum(2, keepdim=True), state.size)
    assert [t["r_merge"] for t in state.trace] == [10, 10, 15]
    # the overall feature mass is conserved across all merges
    torch.testing.assert_close((out * state.size).sum(1), x.sum(1), atol=1e-4, rtol=1e-5)


def test_tome_missing_keys_named():
    with pytest.raises(ValueError, match="keys"):
        ToMe([2]).reduce(torch.randn(1, 8, 3), 0, ReductionState(), {})


def test_tome_published_presets():
    assert parse_schedule("published", 12, dataset="msvd", backbone="umt_b", reducer="tome") == [100] * 12
    assert parse_schedule("published", 12, dataset="anet", reducer="tome") == [80] * 12
    assert TOME_PRESETS["ssv2_template"] == 75 and TOME_PRESETS["msvd_qa"] == 85
    for missing in ("msrvtt", "didemo"):
        with pytest.raises(ScheduleError, match="no constant r"):
            parse_schedule("published", 12, dataset=missing, backbone="umt_b", reducer="tome")
    with pytest.raises(ScheduleError, match="ToMe preset"):
        parse_schedule("published", 24, dataset="msvd", backbone="umt_l", reducer="tome")
    # the vid-TLDR lookup is unchanged
    assert parse_schedule("published", 12, dataset="msvd", backbone="umt_b")[:3] == [450, 250, 200]
    # 12 frames of B/16: 2352 tokens, r=100 on every block
    assert token_counts(parse_schedule("published", 12, dataset="msvd", reducer="tome"), 2352)[-1] == 1152


# ----------------------------------------------------------------------------- random drop

def _drop(seed, x, schedule=(6, 0.5), trace_source=False):
    reducer = RandomDrop(list(schedule), seed=seed)
    state = ReductionState(trace_source=trace_source, record_trace=True)
    out, counts = _run(reducer, x, len(schedule), state)
    return out, counts, state


def test_random_drop_deterministic_and_seed_dependent():
    x = torch.randn(2, 20, 3, generator=torch.Generator().manual_seed(0))
    a, counts, _ = _drop(0, x)
    b, _, _ = _drop(0, x)
    c, _, _ = _drop(1, x)
    assert counts == [20, 14, 7]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert isinstance(build_reducer("random", [2], seed=5), RandomDrop)
    assert REDUCERS["random"] is RandomDrop


def test_random_drop_keeps_order_no_sizes_and_traces_source():
    # token t carries the value t in channel 0, so survivors can be identified; channel 1 makes
    # the three samples different (identical samples draw identically: the draw is per content)
    x = torch.arange(20.0).view(1, 20, 1).repeat(3, 1, 2)
    x[:, :, 1] = torch.arange(3.0).view(3, 1) + 1
    out, counts, state = _drop(7, x, schedule=(5, 0, 0.4, 30), trace_source=True)
    assert counts == [20, 15, 15, 9, 5]
    assert state.size is None
    assert RandomDrop([5]).needs(0, 20) is None
    ids = out[..., 0]
    assert torch.all(ids[:, 1:] > ids[:, :-1])  # survivors keep their relative order
    assert ids.unique().numel() > 5  # samples in the batch draw independently
    # source rows are one-hot at the surviving original positions
    assert torch.equal(state.source.argmax(-1).float(), ids)
    assert torch.equal(state.source.sum(-1), torch.ones(3, 5))
    assert [t["r_merge"] for t in state.trace] == [5, 6, 4]


def test_random_drop_is_roughly_uniform():
    x = torch.zeros(1, 10, 1)
    x[0, :, 0] = torch.arange(10.0)
    hits = torch.zeros(10)
    for seed in range(400):
        out, _, _ = _drop(seed, x, schedule=(5,))
        hits[out[0, :, 0].long()] += 1
    # each token survives with probability 1/2: 200 expected, binomial sd 10
    assert hits.min() > 150 and hits.max() < 250


def test_random_drop_draw_does_not_depend_on_batch_composition():
    g = torch.Generator().manual_seed(3)
    samples = [torch.randn(1, 24, 4, generator=g) for _ in range(4)]
    schedule = (5, 0.25, 4)

    def ids_of(batch):
        # channel 0 of every token is replaced by its original index, kept distinct per sample by
        # the other channels (random), so survivors can be read off the output
        x = torch.cat(batch, 0).clone()
        x[..., 0] = torch.arange(24.0)
        out, counts, state = _drop(11, x, schedule=schedule, trace_source=True)
        return out[..., 0], state.source

    alone = [ids_of([s]) for s in samples]
    together = ids_of(samples)
    reordered = ids_of([samples[2], samples[0], samples[3], samples[1]])
    for i, (ids, source) in enumerate(alone):
        assert torch.equal(together[0][i], ids[0])
        assert torch.equal(together[1][i], source[0])
    for pos, i in enumerate((2, 0, 3, 1)):
        assert torch.equal(reordered[0][pos], alone[i][0][0])
    # different samples still draw differently (the draw is not just a function of the position)
    assert len({tuple(ids[0].tolist()) for ids, _ in alone}) == 4
    # and a sample with itself as batch mate draws the same tokens twice
    twin = ids_of([samples[1], samples[1]])[0]
    assert torch.equal(twin[0], twin[1]) and torch.equal(twin[0], alone[1][0][0])


def test_random_drop_fingerprint_ignores_last_bit_noise_but_not_content():
    from vidtldr.reduce.random_drop import sample_fingerprint

    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(5))
    noisy = x * (1 + 1e-7 * torch.randn(30, 8, generator=torch.Generator().manual_seed(6)))
    assert not torch.equal(x, noisy)
    assert sample_fingerprint(noisy) == sample_fingerprint(x)
    assert sample_fingerprint(x * 1.1) != sample_fingerprint(x)
    assert sample_fingerprint(x[:29]) != sample_fingerprint(x)


# ----------------------------------------------------------------------------- ToMe, worked by hand

# Tokens 0..3 (evens 0, 2; odds 1, 3). Token 0 is (nearly) token 1; token 2 is far from both odds.
_HAND_KEYS = torch.tensor([[[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [-1.0, 0.0]]])
_HAND_X = torch.tensor([[[2.0], [4.0], [10.0], [20.0]]])


def test_tome_hand_merge_values_sizes_and_provenance():
    # r = 1: even token 0 merges into odd token 1; output = [unmerged evens] ++ [odds]
    m = tome_match(_HAND_KEYS, 1)
    assert m.src_idx.flatten().tolist() == [0] and m.dst_idx.flatten().tolist() == [0]
    assert m.unm_idx.flatten().tolist() == [1]
    x, size = tome_merge_wavg(m, _HAND_X)
    assert x.flatten().tolist() == [10.0, 3.0, 20.0] and size.flatten().tolist() == [1.0, 2.0, 1.0]
    # sizes already there weight the average: token 0 worth 3, token 1 worth 1 -> (3*2 + 1*4) / 4
    x, size = tome_merge_wavg(m, _HAND_X, torch.tensor([[[3.0], [1.0], [1.0], [1.0]]]))
    assert x.flatten().tolist() == [10.0, 2.5, 20.0] and size.flatten().tolist() == [1.0, 4.0, 1.0]
    source = tome_merge_source(m, _HAND_X)
    assert source[0].tolist() == [[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]]


def test_tome_reducer_traces_what_it_merged():
    reducer = build_reducer("tome", [1])
    state = ReductionState(record_trace=True, trace_source=True)
    out = reducer.reduce(_HAND_X, 0, state, {"keys": _HAND_KEYS})
    assert out.flatten().tolist() == [10.0, 3.0, 20.0]
    assert state.size.flatten().tolist() == [1.0, 2.0, 1.0]
    assert state.source[0].tolist() == [[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]]
    (entry,) = state.trace
    assert entry["layer"] == 0 and entry["tokens_in"] == 4 and entry["r_merge"] == 1
    assert entry["unm_idx"].flatten().tolist() == [1] and entry["src_idx"].flatten().tolist() == [0]
    assert entry["dst_idx"].flatten().tolist() == [0]


def test_tome_refuses_bad_inputs_by_name():
    with pytest.raises(ValueError, match=r"\[B, T, D\].*\(4, 2\)"):
        tome_match(_HAND_KEYS[0], 1)
    with pytest.raises(ValueError, match=r"\[0, 2\], got 3"):
        tome_match(_HAND_KEYS, 3)
    with pytest.raises(ValueError, match=r"got -1"):
        tome_match(_HAND_KEYS, -1)
    with pytest.raises(ValueError, match=r"tome at block 0: aux has no 'keys'.*needs\(\) asks for"):
        build_reducer("tome", [1]).reduce(_HAND_X, 0, ReductionState(), {})


def test_tome_with_r_zero_is_the_identity():
    m = tome_match(_HAND_KEYS, 0)
    assert m.src_idx.shape == (1, 0, 1) and m.unm_idx.flatten().tolist() == [0, 1]
    x, size = tome_merge_wavg(m, _HAND_X)
    # even tokens first, then odd ones: a permutation, nothing averaged
    assert x.flatten().tolist() == [2.0, 10.0, 4.0, 20.0] and size.flatten().tolist() == [1.0] * 4


def test_tome_provenance_starts_on_the_tokens_device():
    m = tome_match(_HAND_KEYS, 1)
    meta = type(m)(*(t.to("meta") for t in (m.unm_idx, m.src_idx, m.dst_idx)))
    assert tome_merge_source(meta, _HAND_X.to("meta")).device.type == "meta"
