"""Representation-shift reducer: score from the residual update, vid-TLDR's merge, fused attention."""

import pytest
import torch
import torch.nn.functional as F

from vidtldr.models.config import load_architecture
from vidtldr.models.umt import build_model
from vidtldr.reduce import ReductionState, build_reducer
from vidtldr.reduce.repshift import RepShift, shift_norm, shift_score


def test_shift_score_by_hand():
    # norms 1, 2, 3, 10 -> min-max 0, 1/9, 2/9, 1; mean 1/3: the first three are background (0),
    # the largest shift scores 1.
    update = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [6.0, 8.0]]])
    torch.testing.assert_close(shift_norm(update), torch.tensor([[[1.0], [2.0], [3.0], [10.0]]]))
    assert shift_score(update).flatten().tolist() == [0.0, 0.0, 0.0, 1.0]
    # two above the mean: sharpened so the largest is 1, the other (s - mean) / max(s - mean)
    update = torch.tensor([[[0.0], [0.0], [8.0], [10.0]]])
    score = shift_score(update).flatten()
    assert score[:2].tolist() == [0.0, 0.0] and score[3] == 1.0
    torch.testing.assert_close(score[2], torch.tensor((0.8 - 0.45) / (1.0 - 0.45)))


def _merge_one(update):
    # Tokens 0 and 1 are near-duplicates (the best pair); 2 and 3 are orthogonal to them.
    x = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    state = ReductionState(trace_source=True)
    out = RepShift([1]).reduce(x, 0, state, {"update": update})
    return x, out, state


def test_low_shift_source_adds_nothing_high_shift_source_is_averaged():
    # even token 0 merges into odd token 1. Its shift decides its weight.
    low = torch.tensor([[[0.1, 0, 0], [5.0, 0, 0], [5.0, 0, 0], [5.0, 0, 0]]])   # token 0 background
    x, out, state = _merge_one(low)
    assert out.shape == (1, 3, 3)
    torch.testing.assert_close(out[0, 1], x[0, 1])  # merged token == its destination alone
    high = torch.tensor([[[9.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0]]])   # token 0 most shifted
    x, out, state = _merge_one(high)
    torch.testing.assert_close(out[0, 1], (x[0, 0] + x[0, 1]) / 2)
    assert state.size.flatten().tolist() == [1.0, 2.0, 1.0]
    assert state.source[0, 1, :2].tolist() == [1.0, 1.0]


def test_missing_update_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'update'"):
        RepShift([1]).reduce(torch.randn(1, 4, 3), 0, ReductionState(), {})


def test_registered_and_asks_only_for_the_update():
    reducer = build_reducer("repshift", [10, 5])
    assert isinstance(reducer, RepShift)
    assert reducer.needs(0, 196) == "update" and reducer.needs(1, 186) == "update"
    assert reducer.needs(2, 181) is None  # past the schedule: nothing asked
    assert reducer.match_on == "hidden" and reducer.tracks_sizes


def test_tiny_model_runs_fused_attention_in_every_block(monkeypatch):
    torch.manual_seed(0)
    cfg = load_architecture("tiny", task="retrieval", num_frames=4)
    model = build_model(cfg).eval()
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    videos = torch.randn(2, 4, 3, 224, 224)
    with torch.no_grad():
        out = model.encode_vision(videos, reducer=build_reducer("repshift", [48, 24]))
    assert out.token_counts == [196, 148, 124, 124, 124]
    assert calls == [196, 148, 124, 124]  # SDPA in all 4 blocks, on the reduced token counts
    with torch.no_grad():
        alone = model.encode_vision(videos[1:], reducer=build_reducer("repshift", [48, 24]))
    torch.testing.assert_close(alone.tokens, out.tokens[1:], atol=1e-5, rtol=1e-5)


def test_score_follows_the_update_not_the_tokens():
    # Same tokens, two different updates: the merged token differs only through the score.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 20, 8, generator=g)
    u1, u2 = torch.randn(1, 20, 8, generator=g), torch.randn(1, 20, 8, generator=g)
    a = RepShift([5]).reduce(x.clone(), 0, ReductionState(), {"update": u1})
    b = RepShift([5]).reduce(x.clone(), 0, ReductionState(), {"update": u1 * 3})  # same ranking of norms
    c = RepShift([5]).reduce(x.clone(), 0, ReductionState(), {"update": u2})
    torch.testing.assert_close(a, b)  # min-max normalisation: only relative shifts matter
    assert not torch.allclose(a, c)
