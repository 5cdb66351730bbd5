"""Full-size UMT-B/16 and UMT-L/16 models (built on the meta device: no memory, no weights) have
exactly the state_dict layout of the official models (tests/fixtures/umt_keys), and the published
vid-TLDR schedules give the published token counts."""

import json

import pytest
import torch

from vidtldr.models import build_model, load_architecture
from vidtldr.reduce import build_reducer, parse_schedule

CASES = [("umt_b16", "retrieval", "umt_b16_ret"), ("umt_b16", "qa", "umt_b16_qa"),
         ("umt_l16", "retrieval", "umt_l16_ret"), ("umt_l16", "qa", "umt_l16_qa")]


def _meta_model(arch, task, num_frames=12):
    with torch.device("meta"):
        return build_model(load_architecture(arch, task=task, num_frames=num_frames))


@pytest.mark.parametrize("arch,task,fixture", CASES)
def test_state_dict_matches_official_layout(umt_keys_dir, arch, task, fixture):
    official = json.loads((umt_keys_dir / f"{fixture}.json").read_text())
    model = _meta_model(arch, task)
    ours = model.state_dict(keep_vars=True)
    want = {e["key"]: e for e in official["keys"]}
    assert sorted(set(want) - set(ours)) == [], "missing keys"
    assert sorted(set(ours) - set(want)) == [], "unexpected keys"
    assert list(ours) == [e["key"] for e in official["keys"]], "same keys, different order"
    for key, entry in want.items():
        assert list(ours[key].shape) == entry["shape"], key
        assert str(ours[key].dtype) == f"torch.{entry['dtype']}", key
    assert len(ours) == official["num_state_dict_entries"]
    # Tied entries are one tensor in the model, and unique parameters add up to the official count.
    for first, second in official["tied_entries"]:
        assert ours[first] is ours[second]
    unique = {id(p): p.numel() for p in model.parameters()}
    assert sum(unique.values()) == official["num_parameters_unique"]


@pytest.mark.parametrize("attention", ["fused", "materialized"])
def test_published_umt_b_schedule_token_counts(attention):
    model = _meta_model("umt_b16", "retrieval")
    model.set_attention(attention)
    reducer = build_reducer("vidtldr", parse_schedule([600, 200, 100], 12))
    with torch.device("meta"), torch.no_grad():
        out = model.encode_vision(torch.empty(1, 12, 3, 224, 224), reducer=reducer)
    assert out.token_counts[:4] == [2352, 1752, 1552, 1452]
    assert out.token_counts[4:] == [1452] * 9  # blocks without a merge keep the count
    assert tuple(out.tokens.shape) == (1, 1452, 768)
    assert tuple(out.pooled.shape) == (1, 1, 768)


def test_published_umt_l_schedule_token_counts_and_zero_shot_frames():
    model = _meta_model("umt_l16", "retrieval")
    reducer = build_reducer("vidtldr", parse_schedule([550, 400], 24))
    with torch.device("meta"), torch.no_grad():
        out = model.encode_vision(torch.empty(2, 12, 3, 224, 224), reducer=reducer)
    assert out.token_counts[:3] == [2352, 1802, 1402] and out.token_counts[-1] == 1402
    # Zero-shot evaluation uses 4 frames: 784 tokens; a fraction is taken of the current count.
    model4 = _meta_model("umt_l16", "qa", num_frames=4)
    reducer = build_reducer("vidtldr", parse_schedule([0.25, 0.25], 24))
    with torch.device("meta"), torch.no_grad():
        out = model4.encode_vision(torch.empty(1, 4, 3, 224, 224), reducer=reducer)
    assert out.token_counts[:3] == [784, 588, 441] and out.pooled is None
