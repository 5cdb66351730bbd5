"""VideoMAE through transformers' own modules with the reducer hook (vidtldr/models/hf/videomae.py):
with no reduction the probabilities are the stock model's; the hook is inert with r=0; fused
execution decides every reduction as the materialized one; proportional attention is exact for
merged duplicates; checkpoint folders are loaded strictly and offline."""

import json

import pytest
import torch

from vidtldr.errors import ConfigError
from vidtldr.models.checkpoint import CheckpointError
from vidtldr.models.hf import videomae as hfv
from vidtldr.reduce import build_reducer
from vidtldr.reduce.base import ReductionState


def _tiny(seed=0, **overrides):
    return hfv.build_videomae(hfv.videomae_architecture("videomae_tiny", **overrides), seed=seed)


def _clip(batch, frames, size, seed=1):
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_transformers_version_is_in_the_supported_range():
    import transformers

    assert hfv.check_transformers_version() == transformers.__version__
    with pytest.raises(ConfigError, match="transformers >=5.25,<6"):
        hfv.check_transformers_version("4.46.0")
    with pytest.raises(ConfigError, match="installed: 6.0.0"):
        hfv.check_transformers_version("6.0.0")


def test_tiny_probabilities_equal_the_stock_transformers_model():
    model = _tiny()
    videos = _clip(3, 4, 64)
    with torch.no_grad():
        stock = model.hf(pixel_values=videos).logits.softmax(-1)
        for mode in ("fused", "materialized"):
            model.attention = mode
            ours = model(videos, reducer=build_reducer("none", [])).softmax(-1)
            assert ours.shape == (3, 8)
            assert torch.allclose(ours, stock, rtol=0, atol=1e-5), mode


@pytest.fixture(scope="module")
def videomae_b_two_frames():
    # Full-size VideoMAE-B (width 768, 12 blocks, 12 heads, 224x224 frames) with seeded weights; one
    # tubelet of 2 frames (196 tokens) keeps it to seconds. The 16-frame clip is the slow test below.
    return hfv.build_videomae(hfv.videomae_architecture("videomae_b16", num_frames=2), seed=0)


def test_videomae_b_probabilities_equal_the_stock_model(videomae_b_two_frames):
    model = videomae_b_two_frames
    videos = _clip(1, 2, 224)
    with torch.no_grad():
        stock = model.hf(pixel_values=videos).logits.softmax(-1)
        ours = model(videos).softmax(-1)
    assert ours.shape == (1, 400)
    assert torch.allclose(ours, stock, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_videomae_b_sixteen_frames_equal_the_stock_model():
    model = hfv.build_videomae(hfv.videomae_architecture("videomae_b16"), seed=0)
    videos = _clip(1, 16, 224)
    with torch.no_grad():
        stock = model.hf(pixel_values=videos).logits.softmax(-1)
        out = model.encode_vision(videos)
    assert out.token_counts == [8 * 14 * 14] * 13  # 16 frames / tubelet 2 x (224 / 16)^2, 12 blocks
    assert torch.allclose(model.classify(out.pooled).softmax(-1), stock, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["vidtldr", "tome", "random"])
def test_hook_is_inert_with_zero_removal(name):
    model = _tiny()
    videos = _clip(2, 4, 64)
    with torch.no_grad():
        plain = model.encode_vision(videos)
        hooked = model.encode_vision(videos, reducer=build_reducer(name, [0, 0, 0, 0]))
    assert hooked.token_counts == [32] * 5  # 2 tubelets x 4 x 4 patches, nothing removed
    assert hooked.exact_through == -1 and hooked.state.size is None
    assert torch.equal(hooked.tokens, plain.tokens) and torch.equal(hooked.pooled, plain.pooled)


def _in_both_modes(videos, make_reducer, **kwargs):
    """The tiny model's encode_vision of ``videos`` in the fused and the materialized execution, a
    fresh reducer each."""
    model = _tiny()
    outs = {}
    for mode in ("fused", "materialized"):
        model.attention = mode
        with torch.no_grad():
            outs[mode] = model.encode_vision(videos, reducer=make_reducer(), **kwargs)
    return outs


# token counts by hand from 32: vid-TLDR/ToMe remove r per block; fractions remove int(T * r)
@pytest.mark.parametrize("name, schedule, counts", [
    ("vidtldr", [0, 8, 0, 4], [32, 32, 24, 24, 20]), ("tome", [4, 4, 4, 4], [32, 28, 24, 20, 16]),
    ("vidtldr", [0.25, 0, 0.5], [32, 24, 24, 12, 12]), ("random", [0, 8], [32, 32, 24, 24, 24])])
def test_fused_decides_as_materialized(name, schedule, counts):
    outs = _in_both_modes(_clip(2, 4, 64, seed=3), lambda: build_reducer(name, schedule), trace=True)
    fused, mat = outs["fused"], outs["materialized"]
    last = max(i for i, r in enumerate(schedule) if r)
    assert fused.exact_through == last and mat.exact_through == -1
    assert fused.token_counts == mat.token_counts == counts
    for a, b in zip(fused.block_outputs[:last + 1], mat.block_outputs[:last + 1], strict=True):
        assert torch.equal(a, b)
    assert torch.allclose(fused.pooled, mat.pooled, rtol=0, atol=1e-5)


def test_materialized_map_is_used_where_vidtldr_scores(monkeypatch):
    # vid-TLDR asks for the attention entropy: its scoring block (and only up to the last reducing
    # block) runs the query-blocked map in fused mode; no reducer keeps SDPA everywhere.
    calls = []
    original = hfv._LayerAttention._blocked
    monkeypatch.setattr(hfv._LayerAttention, "_blocked", lambda self, *a: calls.append(1) or original(self, *a))
    model = _tiny()
    with torch.no_grad():
        model.encode_vision(_clip(1, 4, 64))
        assert calls == []
        model.encode_vision(_clip(1, 4, 64), reducer=build_reducer("vidtldr", [0, 8]))
    assert calls == [1, 1]  # blocks 0 and 1 (exact prefix through the reducing block 1)


def test_proportional_attention_makes_a_merged_duplicate_count_twice():
    # Tokens 0 and 1 identical: attention over [a, a, b, ...] equals attention over [a(size 2), b, ...]
    # with log(2) added to the merged key's logit (hand-derived: exp(l + ln 2) = 2 exp(l)).
    model = _tiny()
    layer = model._layers[0]
    x = torch.randn(1, 6, 64, generator=torch.Generator().manual_seed(0))
    x[:, 1] = x[:, 0]
    merged = x[:, 1:]
    size = torch.tensor([2.0, 1, 1, 1, 1]).view(1, 5, 1)
    for mode in ("fused", "materialized"):
        with torch.no_grad():
            full, _ = layer(x, None, None, mode, False)
            small, _ = layer(merged, size, None, mode, False)
        assert torch.allclose(small, full[:, 1:], rtol=0, atol=1e-6), mode


def test_input_shape_errors_name_the_expected_shape():
    model = _tiny()
    with pytest.raises(ValueError, match="configured for 4 frames"):
        model(_clip(1, 6, 64))
    with pytest.raises(ValueError, match="64x64"):
        model(_clip(1, 4, 32))


def test_attention_mode_is_checked_and_decides_the_exact_blocks():
    # the same checked property as the UMT ViT (models/attention.AttentionModeSetting)
    model, reducer = _tiny(), build_reducer("vidtldr", [8, 4])
    assert model.attention == "fused" and model.exact_through(reducer, 32) == 1  # blocks 0 and 1 merge
    model.attention = "materialized"
    assert model.exact_through(reducer, 32) == -1  # every block materialized anyway
    with pytest.raises(ConfigError, match="attention mode must be one of"):
        model.attention = "flash"
    assert model.attention == "materialized"  # the refused value changed nothing


def test_architecture_names_are_listed_when_unknown():
    assert {"videomae_b16", "videomae_l16", "videomae_tiny"} <= set(hfv.available_videomae_architectures())
    with pytest.raises(ConfigError, match="videomae_b16"):
        hfv.videomae_architecture("videomae_x")


def test_checkpoint_folder_round_trip_and_strictness(tmp_path):
    model = _tiny(num_labels=7)
    model.hf.save_pretrained(tmp_path / "ok")
    loaded = hfv.load_videomae(tmp_path / "ok")
    videos = _clip(2, 4, 64)
    with torch.no_grad():
        assert torch.equal(loaded(videos), model(videos))
    assert loaded.num_classes == 7 and loaded.num_frames == 4 and loaded.img_size == 64
    # a checkpoint without the classification head (e.g. pre-training weights) is refused
    from safetensors.torch import load_file, save_file

    weights = load_file(tmp_path / "ok" / "model.safetensors")
    headless = {k: v for k, v in weights.items() if not k.startswith("classifier")}
    (tmp_path / "headless").mkdir()
    save_file(headless, tmp_path / "headless" / "model.safetensors", metadata={"format": "pt"})
    (tmp_path / "headless" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    with pytest.raises(CheckpointError, match="classifier"):
        hfv.load_videomae(tmp_path / "headless")


def test_checkpoint_folder_problems_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="folder not found"):
        hfv.check_checkpoint_folder(tmp_path / "absent")
    with pytest.raises(CheckpointError, match="no config.json"):
        hfv.check_checkpoint_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="model_type is 'bert'"):
        hfv.check_checkpoint_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    with pytest.raises(CheckpointError, match="no weights file"):
        hfv.check_checkpoint_folder(tmp_path)


def test_reduction_state_is_fresh_per_forward():
    model = _tiny()
    reducer = build_reducer("tome", [4, 4])
    with torch.no_grad():
        first = model.encode_vision(_clip(1, 4, 64), reducer=reducer)
        second = model.encode_vision(_clip(1, 4, 64), reducer=reducer)
    assert isinstance(first.state, ReductionState) and first.state is not second.state
    assert first.token_counts == second.token_counts == [32, 28, 24, 24, 24]


def _registered_reducers():
    from vidtldr.reduce.base import discover_reducers

    return sorted(name for name, cls in discover_reducers().items()
                  if name != "none" and not getattr(cls, "input_level", False))


@pytest.mark.parametrize("name", _registered_reducers())
def test_every_registered_reducer_runs_on_videomae(name):
    outs = _in_both_modes(_clip(2, 4, 64, seed=5), lambda: build_reducer(name, [4, 4, 0, 4]))
    assert outs["fused"].token_counts == outs["materialized"].token_counts == [32, 28, 24, 24, 20]
    assert torch.allclose(outs["fused"].pooled, outs["materialized"].pooled, rtol=0, atol=1e-4)


def test_an_input_level_reducer_acts_once_before_block_0():
    class DropLastEight:  # duck-typed: reduce_input only, no per-block schedule
        seen = {}

        def reduce_input(self, x, state, aux):
            DropLastEight.seen = {"video": tuple(aux["video"].shape), "grid": aux["grid"]}
            return x[:, :-8]

        def needs(self, layer, num_tokens):
            return None

        def reduce(self, x, layer, state, aux):
            return x

    model = _tiny()
    with torch.no_grad():
        out = model.encode_vision(_clip(1, 4, 64), reducer=DropLastEight())
    assert out.state.embedded_tokens == 32 and out.token_counts == [24] * 5
    assert DropLastEight.seen == {"video": (1, 3, 4, 64, 64), "grid": (2, 4, 4)}  # [B, 3, T, H, W]; 2 x 4 x 4 tubelets


@pytest.mark.cuda
def test_videomae_on_cuda_matches_the_stock_model():
    model = _tiny().cuda()
    videos = _clip(2, 4, 64).cuda()
    with torch.no_grad():
        stock = model.hf(pixel_values=videos).logits.softmax(-1)
        assert torch.allclose(model(videos).softmax(-1), stock, rtol=0, atol=1e-5)
        outs = {}
        for mode in ("fused", "materialized"):
            model.attention = mode
            outs[mode] = model.encode_vision(videos, reducer=build_reducer("vidtldr", [0, 8, 0, 4]))
    assert outs["fused"].token_counts == outs["materialized"].token_counts == [32, 32, 24, 24, 20]
    assert torch.allclose(outs["fused"].pooled, outs["materialized"].pooled, rtol=0, atol=1e-4)
