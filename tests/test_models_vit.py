"""UMT video ViT: positional tables, the reducer hook position, and the two attention execution
modes (fused SDPA / query-blocked statistics vs the official materialized map)."""

import math

import pytest
import torch
import torch.nn.functional as F

from vidtldr.errors import ConfigError
from vidtldr.models import attention, vit
from vidtldr.models.config import VisionConfig
from vidtldr.reduce.base import Reducer

from _models import sharpened_vit


def _cfg(**kw):
    base = dict(img_size=32, patch_size=8, width=32, depth=3, num_heads=4, num_frames=2)
    base.update(kw)
    return VisionConfig(**base)


_model = sharpened_vit


def test_sinusoid_table_matches_the_formula():
    table = vit.sinusoid_table(50, 12)
    assert table.shape == (1, 50, 12) and table.dtype == torch.float32
    for pos in (0, 1, 17, 49):
        for j in range(12):
            angle = pos / 10000 ** (2 * (j // 2) / 12)
            want = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            assert abs(table[0, pos, j].item() - want) < 1e-6


def test_frame_interpolation_path():
    same = vit.video_position_table(_cfg(num_frames=4, ckpt_num_frames=4))
    assert torch.equal(same, vit.sinusoid_table(4 * 16, 32))
    ckpt = vit.sinusoid_table(4 * 16, 32).reshape(4, 16, 32)  # 4 trained frames of 16 patches
    table = vit.video_position_table(_cfg(num_frames=8, ckpt_num_frames=4)).reshape(8, 16, 32)
    # Linear, align_corners=False, 4 -> 8 frames: frame t samples source time t/2 - 1/4 (clamped).
    assert torch.allclose(table[0], ckpt[0], atol=1e-6)
    assert torch.allclose(table[1], 0.75 * ckpt[0] + 0.25 * ckpt[1], atol=1e-6)
    assert torch.allclose(table[4], 0.25 * ckpt[1] + 0.75 * ckpt[2], atol=1e-6)
    assert torch.allclose(table[7], ckpt[3], atol=1e-6)


class Probe(Reducer):
    """Asks for one statistic at every block, records what it got, and at block 0 merges tokens
    by dropping the last `drop` of them with non-uniform sizes (so later blocks use log(size))."""

    def __init__(self, need, drop=0):
        super().__init__([])
        self.need, self.drop, self.seen = need, drop, []

    def needs(self, layer, num_tokens):
        return self.need

    def reduce(self, x, layer, state, aux):
        self.seen.append((layer, x.clone(), {k: v.clone() for k, v in aux.items()}))
        if layer == 0 and self.drop:
            x = x[:, : x.shape[1] - self.drop]
            state.size = torch.linspace(1.0, 3.0, x.shape[1]).repeat(x.shape[0], 1)[..., None]
        return x


def _reference_attention(attn_module, x, size):
    """The official attention written out: q/k/v with zero k bias, explicit softmax maps."""
    b, n, c = x.shape
    h, d = attn_module.num_heads, attn_module.head_dim
    bias = torch.cat([attn_module.q_bias, torch.zeros(c), attn_module.v_bias])
    q, k, v = F.linear(x, attn_module.qkv.weight, bias).reshape(b, n, 3, h, d).permute(2, 0, 3, 1, 4)
    logits = (q * d ** -0.5) @ k.transpose(-2, -1)
    plain = logits.softmax(-1)
    probs = plain if size is None else (logits + size.log().reshape(b, 1, 1, n)).softmax(-1)
    out = (probs @ v).transpose(1, 2).reshape(b, n, c)
    return attn_module.proj(out), plain.mean(1)


@pytest.mark.parametrize("need", [None, "neg_entropy", "attn", "keys"])
def test_fused_and_materialized_agree_and_match_the_reference(need):
    cfg = _cfg()
    videos = torch.randn(2, 2, 3, 32, 32)
    outs = {}
    for mode in ("fused", "materialized"):
        model = _model(cfg, mode)
        probe = Probe(need, drop=5)
        with torch.no_grad():
            outs[mode] = (model(videos, reducer=probe), probe)
    (fused, fp), (mat, mp) = outs["fused"], outs["materialized"]
    assert fused.token_counts == mat.token_counts == [32, 27, 27, 27]
    assert torch.allclose(fused.tokens, mat.tokens, atol=1e-5)
    for (_, _, fa), (_, _, ma) in zip(fp.seen, mp.seen, strict=True):
        assert set(fa) == set(ma) == ({need} if need else set())
        for key in fa:
            assert torch.allclose(fa[key], ma[key], atol=1e-5)
    # Block 1 (sizes present) against a hand-written official attention.
    model = _model(cfg, "materialized")
    block = model.encoder.blocks[1]
    x_in = (mp.seen[0][1][:, :27] + model.encoder.blocks[0].mlp(model.encoder.blocks[0].norm2(mp.seen[0][1][:, :27])))
    size = torch.linspace(1.0, 3.0, 27).repeat(2, 1)[..., None]
    with torch.no_grad():
        ref_out, ref_map = _reference_attention(block.attn, block.norm1(x_in), size)
    assert torch.allclose(mp.seen[1][1], x_in + ref_out, atol=1e-5)
    if need == "attn":
        assert torch.allclose(mp.seen[1][2]["attn"], ref_map, atol=1e-6)
    if need == "neg_entropy":
        assert torch.allclose(mp.seen[1][2]["neg_entropy"], (ref_map * ref_map.log()).sum(-1, keepdim=True), atol=1e-5)


def test_query_blocks_give_the_same_statistics_as_one_block(monkeypatch):
    cfg = _cfg(num_frames=4)
    videos = torch.randn(1, 4, 3, 32, 32)
    results = []
    for elements in (1 << 24, 4 * 64 * 5):  # one block vs blocks of 5 queries (64 tokens, 4 heads)
        monkeypatch.setattr(attention, "_BLOCK_ELEMENTS", elements)
        probe = Probe("neg_entropy", drop=10)
        with torch.no_grad():
            out = _model(cfg)(videos, reducer=probe)
        results.append((out.tokens, [s[2]["neg_entropy"] for s in probe.seen]))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_reducer_runs_between_attention_residual_and_mlp():
    cfg = _cfg(depth=1)
    model = _model(cfg)
    videos = torch.randn(1, 2, 3, 32, 32)
    probe = Probe(None, drop=7)
    with torch.no_grad():
        out = model(videos, reducer=probe, trace=True)
        enc = model.encoder
        x0 = enc.patch_embed(videos.permute(0, 2, 1, 3, 4)) + enc.pos_embed
        block = enc.blocks[0]
        after_attn = x0 + block.attn(block.norm1(x0), None, None)[0]
        reduced = after_attn[:, :25]
        want = reduced + block.mlp(block.norm2(reduced))  # the block's MLP sees the reduced set
    assert torch.allclose(probe.seen[0][1], after_attn, atol=1e-5)
    assert torch.allclose(out.block_outputs[0], want, atol=1e-5)
    assert torch.allclose(out.tokens, enc.norm(want), atol=1e-5)
    assert torch.allclose(out.pooled, model.pool_norm(out.tokens.mean(1, keepdim=True)), atol=1e-6)
    assert out.token_counts == [32, 25]


def test_entropy_is_finite_when_probabilities_underflow():
    attn = vit.Attention(16, 2)
    with torch.no_grad():
        attn.qkv.weight.normal_().mul_(60.0)  # logit gaps far beyond float32's exp range
    x = torch.randn(1, 12, 16)
    for mode in ("fused", "materialized"):
        _, aux = attn(x, None, "neg_entropy", mode)
        assert torch.isfinite(aux["neg_entropy"]).all()
        assert (aux["neg_entropy"] <= 1e-6).all() and (aux["neg_entropy"] >= -math.log(12) - 1e-5).all()


def test_bad_inputs_and_modes_are_rejected():
    model = _model(_cfg())
    with pytest.raises(ValueError, match="configured for 2 frames"):
        model(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="32x32"):
        model(torch.randn(1, 2, 3, 64, 64))
    with pytest.raises(ConfigError, match="attention mode"):
        model.attention = "flash"
    with pytest.raises(ConfigError, match="divisible"):
        _cfg(width=30).validate()
