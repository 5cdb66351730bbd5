"""Source tracing through the model: which original patches each final token holds.

`model.encode_vision(..., trace_source=True)` leaves the provenance map in `out.state.source`
([B, N_final, N0]; a patch is *held* by a final token where the entry is > 0). Checked on the tiny
architecture with seeded random weights, for each reducer."""

import pytest
import torch

from vidtldr.models.config import load_architecture
from vidtldr.models.umt import build_model
from vidtldr.reduce import build_reducer
from vidtldr.reduce.vidtldr import Match, merge_source

SCHEDULE = [48, 24, 12, 0]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(load_architecture("tiny", task="retrieval", num_frames=4))


@pytest.fixture(scope="module")
def videos():
    return torch.randn(2, 4, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def _encode(model, videos, name, schedule=SCHEDULE):
    reducer = build_reducer(name, list(schedule))
    with torch.no_grad():
        return model.encode_vision(videos, reducer=reducer, trace=True, trace_source=True)


@pytest.mark.parametrize("name", ["vidtldr", "tome", "random"])
def test_final_source_shape_and_at_most_one_holder(model, videos, name):
    out = _encode(model, videos, name)
    n0 = out.state.token_counts[0]
    assert n0 == 4 * 49
    source = out.state.source
    assert source is not None
    assert source.shape == (2, out.tokens.shape[1], n0) == (2, out.state.token_counts[-1], n0)
    assert out.state.token_counts == [196, 148, 124, 112, 112]
    assert torch.all(source >= 0)
    holders = (source > 0).sum(dim=1)  # [B, N0]: how many final tokens hold each patch
    assert holders.max() <= 1


def test_tome_covers_every_patch_exactly_once_and_sizes_agree(model, videos):
    out = _encode(model, videos, "tome")
    source = out.state.source
    assert torch.equal((source > 0).sum(dim=1), torch.ones(2, 196, dtype=torch.long))
    assert torch.equal(source.unique(), torch.tensor([0.0, 1.0]))
    # a token's size is the number of patches it holds
    assert torch.equal(source.sum(-1, keepdim=True), out.state.size)


def test_random_drop_holds_exactly_the_surviving_patches(model, videos):
    out = _encode(model, videos, "random")
    held = (out.state.source > 0).sum(dim=1)
    assert torch.equal(held.sum(dim=1), torch.tensor([112, 112]))
    assert torch.equal(out.state.source.sum(-1), torch.ones(2, 112))  # one patch each, weight 1


def test_vidtldr_zero_saliency_patches_are_held_by_none(model, videos):
    out = _encode(model, videos, "vidtldr")
    trace = out.state.trace
    assert [t["layer"] for t in trace] == [0, 1, 2]
    # Replay the recorded matches: the provenance before each merge, and which original patches
    # the zero-saliency src tokens carried into that merge (they add nothing to their dst).
    source = None
    dropped = torch.zeros(2, 196, dtype=torch.bool)
    for t in trace:
        before = torch.eye(t["tokens_in"])[None].expand(2, -1, -1) if source is None else source
        for b in range(2):
            zero_src = t["src_idx"][b, :, 0][t["src_so"][b, :, 0] == 0]
            rows = before[b, 0::2][zero_src]  # src indices are into the even-position half
            dropped[b] |= (rows > 0).any(dim=0)
        match = Match(t["unm_idx"], t["src_idx"], t["dst_idx"], t["src_so"])
        source = merge_source(match, torch.zeros(2, t["tokens_in"], 1), source)
    assert torch.equal(source, out.state.source)  # the model exposes exactly the traced provenance
    final = out.state.source
    held = (final > 0).any(dim=1)
    assert dropped.any(dim=1).all(), "the check needs zero-saliency merges to happen"
    assert not (held & dropped).any()  # dropped patches are held by no final token
    assert torch.equal(held | dropped, torch.ones_like(held))  # every other patch is still held
    assert ((final > 0).sum(dim=1) <= 1).all()
    assert final.max() <= 1


def test_no_reduction_leaves_source_untraced(model, videos):
    out = _encode(model, videos, "vidtldr", schedule=[0, 0, 0, 0])
    assert out.state.source is None and out.tokens.shape[1] == 196
