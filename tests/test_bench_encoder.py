"""The benchmark's encoder is built by the assembler (run/assemble.build_vision, through the backbone
family's build_vision): for the tiny UMT and the tiny VideoMAE it is the module the benchmark built by
hand before (same parameters, same outputs), and it is the vision side alone (no text model, which
would change the benchmark's memory peaks)."""

import pytest
import torch

from vidtldr.analysis.bench.measure import build_encoder
from vidtldr.config_utils import compose_config
from vidtldr.reduce import build_reducer
from vidtldr.run.runspec import resolve_model


def _spec(*overrides):
    return resolve_model(compose_config(list(overrides), config_name="bench"))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _outputs(model, videos, reducer_schedule):
    with torch.inference_mode():
        model.attention = "fused"
        return model(videos, reducer=build_reducer("vidtldr", reducer_schedule))


def _same(a, b) -> None:
    assert _count(a) == _count(b)
    theirs = b.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in a.state_dict().items()) and a.state_dict().keys() == theirs.keys()


def test_umt_bench_encoder_is_the_hand_built_vit_and_no_text_model():
    from vidtldr.models.config import load_architecture
    from vidtldr.models.umt import build_model
    from vidtldr.models.vit import VisionTransformer

    spec = _spec("model=tiny")
    assert spec.num_frames == 4  # msrvtt's 12 frames, capped by the tiny model
    enc = build_encoder(spec, "cpu", autocast=False, seed=3)
    arch = load_architecture("tiny", task="retrieval", num_frames=4)
    torch.manual_seed(3)  # what the benchmark built before the assembler did it
    before = VisionTransformer(arch.vision).eval()
    _same(enc.model, before)
    videos = torch.randn(2, 4, 3, arch.vision.img_size, arch.vision.img_size, generator=torch.Generator().manual_seed(1))
    ours, theirs = _outputs(enc.model, videos, [48, 24]), _outputs(before, videos, [48, 24])
    assert torch.equal(ours.tokens, theirs.tokens) and torch.equal(ours.pooled, theirs.pooled)
    assert ours.token_counts == theirs.token_counts == [196, 148, 124, 124, 124]
    full = build_model(arch)  # the whole retrieval model: its vision side alone is what is timed
    assert _count(enc.model) == _count(full.vision_encoder) < _count(full)


def test_videomae_bench_encoder_is_the_hand_built_encoder():
    from vidtldr.models.hf import videomae as hfv

    spec = _spec("model=videomae_tiny", "dataset=kinetics400", "merge.r=published")
    enc = build_encoder(spec, "cpu", autocast=False, seed=5)
    torch.manual_seed(5)
    arch = hfv.VideoMAEFamily().architecture("videomae_tiny", "classification")
    before = hfv.VideoMAEVision(hfv.VideoMAEFamily().build(arch)).eval()
    _same(enc.model, before)
    videos = torch.randn(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ours, theirs = _outputs(enc.model, videos, [8, 4]), _outputs(before, videos, [8, 4])
    assert torch.equal(ours.tokens, theirs.tokens)
    assert ours.token_counts == theirs.token_counts == [32, 24, 20, 20, 20]  # 32 tokens, minus 8, minus 4


def test_a_family_without_a_vision_builder_says_so():
    from vidtldr.models.family import BackboneFamily

    class NoVision(BackboneFamily):
        name = "no_vision"
        heads = ("retrieval",)

    with pytest.raises(NotImplementedError, match="'no_vision' cannot build its vision encoder alone"):
        NoVision().build_vision(None)
