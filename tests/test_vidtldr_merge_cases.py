"""vid-TLDR parity with the official code (merge_cases.pt) and behaviour on random tensors."""

import copy
import math
import re

import pytest
import torch

from vidtldr.reduce import REDUCERS, ReductionState, build_reducer
from vidtldr.reduce.schedule import tokens_to_remove
from vidtldr.reduce.vidtldr import (Match, VidTLDR, bipartite_match, head_mean_neg_entropy, merge_source,
                                    merge_wavg, objective_score, official_vidtldr_call,
                                    saliency_from_neg_entropy)

ATOL = 1e-5
INTERNALS = ("unm_idx", "src_idx", "dst_idx", "src_so")


@pytest.fixture(scope="module")
def merge_cases(umt_tiny_dir):
    return torch.load(umt_tiny_dir / "merge_cases.pt", weights_only=True)


def _close(got, want, what):
    if want is None:
        assert got is None, f"{what}: expected None"
        return
    assert got is not None, f"{what}: got None"
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    if want.dtype.is_floating_point:
        assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0, msg=what)
    else:
        assert torch.equal(got.to(want.dtype), want), f"{what}: indices differ"


# ----------------------------------------------------------------------------- fixture parity

def test_every_merge_case_matches_official(merge_cases):
    assert merge_cases["cases"], "fixture holds no cases"
    for case in merge_cases["cases"]:
        name, inp, out = case["name"], case["inputs"], case["outputs"]
        info = copy.deepcopy(inp["info"])
        x, score, r_merge, match = official_vidtldr_call(inp["x"], inp["attn"], info, inp["layer"])
        assert r_merge == out["r_merge"], name
        _close(x, out["x"], f"{name}: x")
        _close(info["size"], out["size"], f"{name}: size")
        _close(info["source"], out["source"], f"{name}: source")
        _close(score, out["score_obj"], f"{name}: score_obj")
        if out["merge_internals"] is None:
            assert match is None, f"{name}: merged although the official code did not"
        else:
            for key in INTERNALS:
                _close(getattr(match, key), out["merge_internals"][key], f"{name}: {key}")


@pytest.mark.parametrize("aux_kind", ["neg_entropy", "attn"])
def test_reducer_hook_matches_official_cases(merge_cases, aux_kind):
    """The VidTLDR reducer, fed what the attention computes, gives the official outputs."""
    for case in merge_cases["cases"]:
        name, inp, out = case["name"], case["inputs"], case["outputs"]
        info = inp["info"]
        if not info["use"]:
            continue
        layer = inp["layer"]
        reducer = VidTLDR(list(info["r"]))
        n_tok = inp["x"].shape[1]
        expect_need = "neg_entropy" if out["r_merge"] > 0 else None
        assert reducer.needs(layer, n_tok) == expect_need, name
        state = ReductionState(size=info["size"], source=info["source"],
                               trace_source=info["source_trace"], record_trace=True)
        aux = ({"neg_entropy": head_mean_neg_entropy(inp["attn"])} if aux_kind == "neg_entropy"
               else {"attn": inp["attn"].mean(1)})
        x = reducer.reduce(inp["x"], layer, state, aux if expect_need else {})
        _close(x, out["x"], f"{name}: x")
        _close(state.size, out["size"], f"{name}: size")
        _close(state.source, out["source"], f"{name}: source")
        if out["merge_internals"] is None:
            assert state.trace == []
            continue
        (entry,) = state.trace
        assert entry["layer"] == layer and entry["tokens_in"] == n_tok and entry["r_merge"] == out["r_merge"]
        _close(entry["score_obj"], out["score_obj"], f"{name}: trace score_obj")
        for key in INTERNALS:
            _close(entry[key], out["merge_internals"][key], f"{name}: trace {key}")


def test_objective_score_cases(merge_cases):
    assert merge_cases["objective_score_cases"]
    for i, case in enumerate(merge_cases["objective_score_cases"]):
        _close(objective_score(case["attn"]), case["score"], f"objective_score_cases[{i}]")


def test_chained_cases_share_state(merge_cases):
    """Where one case's outputs are the next case's inputs (same info dict), replaying the chain
    from the first case's inputs alone reproduces the last case's outputs."""
    cases = merge_cases["cases"]
    chained = []
    for prev, nxt in zip(cases, cases[1:], strict=False):
        size_in = nxt["inputs"]["info"]["size"]
        size_out = prev["outputs"]["size"]
        if size_in is None or size_out is None or size_in.shape != size_out.shape \
                or not torch.equal(size_in, size_out):
            continue
        chained.append((prev["name"], nxt["name"]))
        info = copy.deepcopy(prev["inputs"]["info"])
        official_vidtldr_call(prev["inputs"]["x"], prev["inputs"]["attn"], info, prev["inputs"]["layer"])
        official_vidtldr_call(nxt["inputs"]["x"], nxt["inputs"]["attn"], info, nxt["inputs"]["layer"])
        _close(info["size"], nxt["outputs"]["size"], f"{nxt['name']}: chained size")
        _close(info["source"], nxt["outputs"]["source"], f"{nxt['name']}: chained source")
    # the fixture records one two-step chain (its README); finding none would test nothing
    assert chained == [("chained_step1", "chained_step2")]


# ----------------------------------------------------------------------------- saliency

def test_saliency_known_values():
    e = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]).view(1, 5, 1)
    # normalised [0, .25, .5, .75, 1], mean .5; below-mean -> 0; (s - .5) / .5 elsewhere
    want = torch.tensor([0.0, 0.0, 0.0, 0.5, 1.0]).view(1, 5, 1)
    torch.testing.assert_close(saliency_from_neg_entropy(e), want)
    # affine invariance in e (per sample) and independence between samples
    both = torch.cat([e, -7 + 3 * e.flip(1)], 0)
    torch.testing.assert_close(saliency_from_neg_entropy(both)[1], want[0].flip(0))


def test_saliency_strict_mask_at_mean():
    # values [0, 1, 2]: mean 0.5 after normalisation -> exactly-at-mean token scores 0 (not masked, but 0)
    e = torch.tensor([0.0, 1.0, 2.0]).view(1, 3, 1)
    torch.testing.assert_close(saliency_from_neg_entropy(e).flatten(), torch.tensor([0.0, 0.0, 1.0]))


def test_neg_entropy_matches_definition_and_sharp_rows_score_high():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 9, 9)
    logits[:, :, 4] *= 20  # query 4 attends sharply in every head
    attn = logits.softmax(-1)
    p = attn.double().mean(1)
    want = (p * p.log()).sum(-1, keepdim=True).float()
    got = head_mean_neg_entropy(attn)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert (got <= 0).all() and (got >= -math.log(9) - 1e-6).all()
    score = objective_score(attn)
    assert score.shape == (2, 9, 1)
    assert torch.all(score[:, 4] == 1.0)  # sharpest query
    assert (score >= 0).all() and (score <= 1).all()


def test_nan_guard_zero_probabilities():
    torch.manual_seed(1)
    attn = torch.rand(1, 2, 6, 6)
    attn[:, :, 0, 3:] = 0.0  # query 0 puts exactly zero mass on keys 3..5 in every head
    attn = attn / attn.sum(-1, keepdim=True)
    p = attn.mean(1)
    naive = (p * p.log()).sum(-1, keepdim=True)
    assert torch.isnan(naive[0, 0]).item()  # what the official formula yields
    e = head_mean_neg_entropy(attn)
    assert torch.isfinite(e).all()
    p0 = p[0, 0, :3].double()
    assert e[0, 0, 0].item() == pytest.approx((p0 * p0.log()).sum().item(), abs=1e-6)
    torch.testing.assert_close(e[0, 1:], naive[0, 1:])  # other rows unchanged
    assert torch.isfinite(objective_score(attn)).all()


def test_constant_entropy_scores_zero_not_nan():
    attn = torch.full((2, 2, 8, 8), 1 / 8)
    score = objective_score(attn)
    assert torch.equal(score, torch.zeros(2, 8, 1))


# ----------------------------------------------------------------------------- matching / merging

def test_bipartite_match_hand_made():
    # even tokens 0,2,4 ; odd tokens 1,3,5. Token 2 equals token 5, token 4 is close to token 1,
    # token 0 is orthogonal to every odd token.
    x = torch.tensor([[[0.0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0.1, 0], [0, 1, 0]]])
    score = torch.tensor([0.1, 0, 0.2, 0, 0.3, 0]).view(1, 6, 1)
    m = bipartite_match(x, 2, score)
    assert m.src_idx.flatten().tolist() == [1, 2]  # even positions 2 then 4 (by similarity)
    assert m.dst_idx.flatten().tolist() == [2, 0]  # -> odd positions 5 and 1
    assert m.unm_idx.flatten().tolist() == [0]
    torch.testing.assert_close(m.src_so.flatten(), torch.tensor([0.2, 0.3]))


def _random_inputs(b=2, n=20, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, c, generator=g)
    attn = (3 * torch.randn(b, 2, n, n, generator=g)).softmax(-1)
    return x, attn


def test_order_after_merge_and_counts():
    x, attn = _random_inputs(n=21)
    for r in (0, 1, 5, 10):
        m = bipartite_match(x, r, objective_score(attn))
        out = m.merge(x)
        assert out.shape == (2, 21 - r, 8)
        n_unm = 11 - r
        for bi in range(2):
            unm = m.unm_idx[bi, :, 0]
            assert torch.all(unm[1:] > unm[:-1])
            assert torch.equal(out[bi, :n_unm], x[bi, 0::2][unm])
            untouched = torch.ones(10, dtype=torch.bool)
            untouched[m.dst_idx[bi, :, 0]] = False
            assert torch.equal(out[bi, n_unm:][untouched], x[bi, 1::2][untouched])


def test_zero_saliency_tokens_are_dropped():
    x, _ = _random_inputs(n=16)
    size = 1 + torch.rand(2, 16, 1)
    m = bipartite_match(x, 5, torch.zeros(2, 16, 1))
    new_x, new_size = merge_wavg(m, x, size)
    kept = m.unm_idx
    for bi in range(2):
        want_x = torch.cat([x[bi, 0::2][kept[bi, :, 0]], x[bi, 1::2]])
        want_s = torch.cat([size[bi, 0::2][kept[bi, :, 0]], size[bi, 1::2]])
        torch.testing.assert_close(new_x[bi], want_x, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(new_size[bi], want_s)


def test_full_saliency_is_size_weighted_average_and_conserves_size():
    x, _ = _random_inputs(n=16, seed=3)
    size = 1 + 3 * torch.rand(2, 16, 1)
    m = bipartite_match(x, 6, torch.ones(2, 16, 1))
    new_x, new_size = merge_wavg(m, x, size)
    torch.testing.assert_close(new_size.sum(1), size.sum(1))
    torch.testing.assert_close((new_x * new_size).sum(1), (x * size).sum(1), atol=1e-4, rtol=1e-5)
    # one dst, written out by hand
    bi, k = 0, 0
    d = m.dst_idx[bi, k, 0].item()
    srcs = [m.src_idx[bi, j, 0].item() for j in range(6) if m.dst_idx[bi, j, 0].item() == d]
    w = [size[bi, 2 * s + 0] for s in srcs] + [size[bi, 2 * d + 1]]
    v = [x[bi, 2 * s] for s in srcs] + [x[bi, 2 * d + 1]]
    want = sum(wi * vi for wi, vi in zip(w, v, strict=True)) / sum(w)
    torch.testing.assert_close(new_x[bi, 8 - 6 + d], want, atol=1e-5, rtol=1e-5)


def test_partial_saliency_sizes_at_least_one_and_shrink_by_dropped_mass():
    x, attn = _random_inputs(n=24, seed=5)
    score = objective_score(attn)
    m = bipartite_match(x, 10, score)
    size = torch.ones(2, 24, 1)
    _, new_size = merge_wavg(m, x, size)
    assert (new_size >= 1).all()
    lost = ((1 - m.src_so) * size[:, 0::2].gather(1, m.src_idx)).sum(1)
    torch.testing.assert_close(new_size.sum(1), size.sum(1) - lost)


def test_source_trace_identity_then_amax():
    x, attn = _random_inputs(n=12, seed=7)
    score = objective_score(attn)
    m = bipartite_match(x, 4, score)
    assert (m.src_so > 0).any() and (m.src_so == 0).any()  # both kinds of src occur
    src = merge_source(m, x)
    assert src.shape == (2, 8, 12) and src.dtype == torch.float32
    for bi in range(2):
        # unmerged even tokens keep a one-hot row at their original position
        for row, e in enumerate(m.unm_idx[bi, :, 0].tolist()):
            assert src[bi, row].nonzero().flatten().tolist() == [2 * e]
        # a src appears in its dst's row with weight = its saliency (0 -> vanishes)
        for j in range(4):
            s, d, so = m.src_idx[bi, j, 0].item(), m.dst_idx[bi, j, 0].item(), m.src_so[bi, j, 0].item()
            assert src[bi, 2 + d, 2 * s].item() == pytest.approx(so)
            assert src[bi, 2 + d, 2 * d + 1].item() == 1.0  # 6 evens - 4 src = 2 unm rows first


def test_merge_keeps_dtype():
    x, attn = _random_inputs(n=10)
    m = bipartite_match(x, 3, objective_score(attn))
    assert m.merge(x.double()).dtype == torch.float64
    assert m.merge(x.half()).dtype == torch.float16


def test_bad_r_rejected():
    x, attn = _random_inputs(n=10)
    with pytest.raises(ValueError, match="r must be"):
        bipartite_match(x, 6, objective_score(attn))


# ----------------------------------------------------------------------------- reducer

def test_registered_and_built():
    assert REDUCERS["vidtldr"] is VidTLDR
    assert isinstance(build_reducer("vidtldr", [4, 0]), VidTLDR)


@pytest.mark.parametrize("entry,n,removed", [(0.3, 21, 6), (15, 20, 10), (0.05, 10, 0), (0, 10, 0), (4, 9, 4),
                                             (0.5, 9, 4)])
def test_reducer_fraction_rounding_and_clamp(entry, n, removed):
    x, attn = _random_inputs(n=n)
    reducer = VidTLDR([entry])
    assert tokens_to_remove(entry, n) == removed
    assert reducer.needs(0, n) == ("neg_entropy" if removed else None)
    assert reducer.needs(1, n) is None  # beyond the schedule
    state = ReductionState()
    aux = {"neg_entropy": head_mean_neg_entropy(attn)} if removed else {}
    out = reducer.reduce(x, 0, state, aux)
    assert out.shape == (2, n - removed, 8)
    if removed:
        assert state.size is not None and state.size.shape == (2, n - removed, 1)
    else:
        assert out is x and state.size is None


def test_reducer_token_counts_follow_schedule_and_trace():
    x, _ = _random_inputs(n=40, seed=11)
    reducer = VidTLDR([8, 0.25, 0, 30])
    state = ReductionState(trace_source=True, record_trace=True)
    counts = [40]
    g = torch.Generator().manual_seed(0)
    for layer in range(4):
        n = x.shape[1]
        need = reducer.needs(layer, n)
        aux = {}
        if need:
            aux["neg_entropy"] = head_mean_neg_entropy((2 * torch.randn(2, 2, n, n, generator=g)).softmax(-1))
        x = reducer.reduce(x, layer, state, aux)
        counts.append(x.shape[1])
    assert counts == [40, 32, 24, 24, 12]
    assert [t["layer"] for t in state.trace] == [0, 1, 3]
    assert [t["r_merge"] for t in state.trace] == [8, 8, 12]
    assert state.source.shape == (2, 12, 40)
    assert state.size.shape == (2, 12, 1) and (state.size >= 1).all()
    # tokens are never duplicated: each original token has at most one non-zero provenance row
    assert ((state.source > 0).sum(1) <= 1).all()


def test_reducer_missing_aux_is_named():
    x, _ = _random_inputs(n=10)
    with pytest.raises(ValueError, match="neg_entropy"):
        VidTLDR([3]).reduce(x, 0, ReductionState(), {})


# ----------------------------------------------------------------------------- worked by hand

def test_bad_inputs_are_refused_by_name():
    x, attn = _random_inputs(n=10)
    score = objective_score(attn)
    with pytest.raises(ValueError, match=r"^r must be in \[0, T//2\] = \[0, 5\], got 6$"):
        bipartite_match(x, 6, score)
    with pytest.raises(ValueError, match=r"= \[0, 5\], got -1$"):
        bipartite_match(x, -1, score)
    with pytest.raises(ValueError, match=re.escape("x must be [B, T, C], got shape (10, 8)")):
        bipartite_match(x[0], 1, score)
    with pytest.raises(ValueError, match=re.escape("score must be [B, T, 1] = [2, 10, 1], got [2, 10]")):
        bipartite_match(x, 1, score[..., 0])
    with pytest.raises(ValueError, match=re.escape("attn must be [B,H,T,T] or [B,T,T], got shape (10, 10)")):
        head_mean_neg_entropy(attn[0, 0])
    for shape in ((2, 10, 2), (2, 10)):
        with pytest.raises(ValueError, match=re.escape(f"neg_entropy must be [B, T, 1], got shape {shape}")):
            saliency_from_neg_entropy(torch.zeros(shape))


def test_saliency_worked_by_hand_per_sample():
    e = torch.tensor([[[-10.0], [-9.0], [-7.0], [-6.0], [0.0]]])
    # min-max normalised: 0, .1, .3, .4, 1 (mean .36); below the mean -> 0, the rest (s - .36) / (1 - .36)
    torch.testing.assert_close(saliency_from_neg_entropy(e).flatten(), torch.tensor([0, 0, 0, 0.04 / 0.64, 1]))
    # each sample is normalised by its own range, so a batch gives what each sample gives alone
    other = torch.tensor([[[3.0], [-1.0], [2.0], [2.5], [0.5]]])
    batch = saliency_from_neg_entropy(torch.cat([e, other]))
    assert torch.equal(batch[:1], saliency_from_neg_entropy(e)) and torch.equal(batch[1:], saliency_from_neg_entropy(other))


# Tokens 0..3: even tokens 0, 2; odd tokens 1, 3. Even token 0 (saliency 0.5) merges into odd token 1.
_HAND = Match(unm_idx=torch.tensor([[[1]]]), src_idx=torch.tensor([[[0]]]), dst_idx=torch.tensor([[[0]]]),
              src_so=torch.tensor([[[0.5]]]))
_HAND_X = torch.tensor([[[2.0], [4.0], [10.0], [20.0]]])


def test_merge_worked_by_hand():
    # a src counts with its size times its saliency: (1 * 4 + 0.5 * 1 * 2) / (1 + 0.5)
    x, size = merge_wavg(_HAND, _HAND_X)
    torch.testing.assert_close(x.flatten(), torch.tensor([10.0, 5 / 1.5, 20.0]))
    assert size.flatten().tolist() == [1.0, 1.5, 1.0]
    # sizes already there: token 0 holds 3 patches -> (1 * 4 + 0.5 * 3 * 2) / (1 + 0.5 * 3)
    x, size = merge_wavg(_HAND, _HAND_X, torch.tensor([[[3.0], [1.0], [1.0], [1.0]]]))
    torch.testing.assert_close(x.flatten(), torch.tensor([10.0, 7 / 2.5, 20.0]))
    assert size.flatten().tolist() == [1.0, 2.5, 1.0]
    assert merge_source(_HAND, _HAND_X)[0].tolist() == [[0, 0, 1, 0], [0.5, 1, 0, 0], [0, 0, 0, 1]]


def test_merge_of_a_batch_is_each_sample_alone():
    x, attn = _random_inputs(b=3, n=16, seed=9)
    size = 1 + torch.rand(3, 16, 1, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 7.0, 30.0]).view(3, 1, 1)
    m = bipartite_match(x, 6, objective_score(attn))
    batch_x, batch_size = merge_wavg(m, x, size)
    for bi in range(3):
        one = Match(*(getattr(m, f)[bi:bi + 1] for f in INTERNALS))
        alone_x, alone_size = merge_wavg(one, x[bi:bi + 1], size[bi:bi + 1])
        assert torch.equal(batch_x[bi:bi + 1], alone_x) and torch.equal(batch_size[bi:bi + 1], alone_size)


def test_provenance_starts_on_the_tokens_device():
    meta = Match(*(getattr(_HAND, f).to("meta") for f in INTERNALS))
    assert merge_source(meta, _HAND_X.to("meta")).device.type == "meta"
