"""UMT video ViT (docs/protocol.md, section 1) with the token-reducer hook of vid-TLDR.

Module names mirror the official state_dict (``encoder.patch_embed.proj``, ``encoder.blocks.N``,
``encoder.norm``, ``pool_norm``) so checkpoints load without renaming.

Attention execution modes (``VisionTransformer.attention``):

* ``"fused"`` (default): every block up to the last one that removes tokens in this forward
  (decided per forward from the reducer's schedule and the token counts) computes its attention
  with the materialized arithmetic, but in query blocks of bounded size: logits, softmax per head
  (head mean and ``sum p ln p`` or the head-mean map where the reducer asks for them), the
  log-size-biased softmax once sizes exist, and the output of the same rows. Each query row goes
  through exactly the operations of the materialized map, so everything a reducer decides from
  (hidden states, keys, attention) is bit-identical to the official execution and every merge
  decision is the official one, for any schedule. Later blocks (and every block without a
  reducer) use ``scaled_dot_product_attention`` (``log(size)`` as an additive key bias), which
  differs from the materialized result only in the last bits.
* ``"materialized"``: the official execution: the full softmax map in every block and, once sizes
  exist, a second softmax with the log-size bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidtldr.models.attention import (ATTENTION_MODES, AttentionMode, AttentionModeSetting, ReducibleAttention,
                                      exact_through, input_reduction, reducing_block)
from vidtldr.models.config import VisionConfig
from vidtldr.reduce.base import Need, ReductionState, Reducer

# ---------------------------------------------------------------------------------------------
# Fixed positional table


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """The official 1-D sinusoid table [1, num_positions, dim]: angle p / 10000^(2*(j//2)/dim),
    sin on even columns and cos on odd ones (interleaved). Computed in float64 numpy exactly like the
    original, then cast to float32, so the table is bit-identical."""
    positions = np.arange(num_positions, dtype=np.float64)[:, None]
    exponents = np.array([2 * (j // 2) / dim for j in range(dim)], dtype=np.float64)
    angles = positions / np.power(10000.0, exponents)[None, :]
    angles[:, 0::2] = np.sin(angles[:, 0::2])
    angles[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.tensor(angles[None].astype(np.float32))


def video_position_table(cfg: VisionConfig) -> torch.Tensor:
    """Positions for ``cfg.num_frames``: one flattened (t, h, w) sequence. When the checkpoint was
    trained for another frame count (``ckpt_num_frames`` set and different), the official code builds
    the table for that count and linearly interpolates it along time."""
    frames = cfg.num_frames // cfg.tubelet_size
    per_frame = cfg.grid * cfg.grid
    ckpt_frames = cfg.ckpt_num_frames
    if ckpt_frames == -1 or ckpt_frames // cfg.tubelet_size == frames:
        return sinusoid_table(frames * per_frame, cfg.width)
    ckpt_frames //= cfg.tubelet_size
    table = sinusoid_table(ckpt_frames * per_frame, cfg.width)  # [1, Tc*P*P, C]
    table = table.reshape(ckpt_frames, per_frame, cfg.width).permute(1, 2, 0)  # [P*P, C, Tc]
    table = F.interpolate(table, size=frames, mode="linear", align_corners=False)  # [P*P, C, T]
    return table.permute(2, 0, 1).reshape(1, frames * per_frame, cfg.width)


# ---------------------------------------------------------------------------------------------
# Modules


class PatchEmbed(nn.Module):
    """Conv3d tubelet embedding; tokens come out t-major, then row, then column."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = nn.Conv3d(3, cfg.width, kernel_size=kernel, stride=kernel)

    def forward(self, video_bcthw: torch.Tensor) -> torch.Tensor:
        return self.proj(video_bcthw).flatten(2).transpose(1, 2)


class Attention(ReducibleAttention, nn.Module):
    """Multi-head self-attention with learned q/v biases and a fixed zero k bias, plus the
    proportional-attention bias log(size) once tokens have been merged (arithmetic shared by every
    family: :class:`vidtldr.models.attention.ReducibleAttention`)."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def _qkv(self, x: torch.Tensor):
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        batch, tokens, _ = x.shape
        qkv = F.linear(x, self.qkv.weight, bias)
        qkv = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return qkv.unbind(0)  # each [B, heads, T, head_dim]

    def forward(self, x: torch.Tensor, size: Optional[torch.Tensor], need: Need,
                mode: AttentionMode = "fused", exact: bool = False) -> tuple[torch.Tensor, dict]:
        """``exact`` (fused mode): the query-blocked materialized arithmetic even where the reducer
        needs nothing, so this block's output is bit-identical to the materialized execution."""
        out, aux = self.attend(*self._qkv(x), size, need, mode, exact)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.proj(out), aux


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg.width, cfg.num_heads)
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.width, int(cfg.width * cfg.mlp_ratio))

    def forward(self, x: torch.Tensor, layer: int, state: ReductionState, reducer: Optional[Reducer],
                mode: AttentionMode, exact: bool = False) -> torch.Tensor:
        return reducing_block(x, layer, state, reducer,
                              lambda h, size, need: self.attn(self.norm1(h), size, need, mode, exact),
                              lambda h: self.mlp(self.norm2(h)))


class VisionEncoder(nn.Module):
    """Patch embedding + fixed positions + blocks + final norm (official
    ``PretrainVisionTransformerEncoder``)."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        # Fixed table, not part of any checkpoint (the original keeps it as a plain attribute).
        self.register_buffer("pos_embed", video_position_table(cfg), persistent=False)


@dataclass
class VisionOutput:
    """Result of one encoder forward.

    tokens: [B, N_final, C] after the final norm (what ITM / QA cross-attend to).
    pooled: [B, 1, C] = pool_norm(mean of tokens) (retrieval), else None.
    state:  the forward's ReductionState (sizes, token counts, reducer trace).
    exact_through: fused mode: the last block computed with the materialized arithmetic (the last
    block that removes tokens); -1 when there is none, and always in materialized mode.
    block_outputs / block_sizes: per block (after reduce and MLP, before the final norm) and
    ``state.size`` after that block; only filled when ``trace=True``.
    """

    tokens: torch.Tensor
    pooled: Optional[torch.Tensor]
    state: ReductionState
    exact_through: int = -1
    block_outputs: list = field(default_factory=list)
    block_sizes: list = field(default_factory=list)

    @property
    def token_counts(self) -> list[int]:
        return self.state.token_counts


class VisionTransformer(AttentionModeSetting, nn.Module):
    """The official ``PretrainVisionTransformer`` at evaluation (``keep_temporal=False``)."""

    def __init__(self, cfg: VisionConfig, attention: AttentionMode = "fused"):
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionEncoder(cfg)
        self.pool_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps) if cfg.add_pool_norm else None
        self.attention = attention

    def _check_input(self, videos: torch.Tensor) -> None:
        cfg = self.cfg
        if videos.dim() != 5 or videos.shape[2] != 3:
            raise ValueError(f"videos must be [B, T, 3, H, W], got {tuple(videos.shape)}")
        if videos.shape[-1] != cfg.img_size or videos.shape[-2] != cfg.img_size:
            raise ValueError(f"frames must be {cfg.img_size}x{cfg.img_size}, got "
                             f"{videos.shape[-2]}x{videos.shape[-1]}")
        if videos.shape[1] != cfg.num_frames:
            raise ValueError(f"the model is configured for {cfg.num_frames} frames (positional table), "
                             f"got {videos.shape[1]}; build it with num_frames={videos.shape[1]}")

    def exact_through(self, reducer: Optional[Reducer], num_tokens: int) -> int:
        """Fused mode: the last block that must run the materialized arithmetic (-1: none; see
        :func:`vidtldr.models.attention.exact_through`)."""
        return exact_through(reducer, num_tokens, self.cfg.depth, self._attention)

    def forward(self, videos: torch.Tensor, reducer: Optional[Reducer] = None, trace: bool = False,
                trace_source: bool = False) -> VisionOutput:
        """videos: [B, T, 3, H, W] normalised frames."""
        self._check_input(videos)
        state = ReductionState(record_trace=trace, trace_source=trace_source)
        encoder = self.encoder
        video = videos.permute(0, 2, 1, 3, 4)
        x = encoder.patch_embed(video)
        x = x + encoder.pos_embed.to(dtype=x.dtype)
        cfg = self.cfg  # input-level reducers (run-length tokenization) act here, once
        x = input_reduction(x, video, (cfg.num_frames // cfg.tubelet_size, cfg.grid, cfg.grid), state, reducer)
        state.token_counts.append(x.shape[1])
        out = VisionOutput(tokens=x, pooled=None, state=state)
        out.exact_through = self.exact_through(reducer, x.shape[1])
        for layer, block in enumerate(encoder.blocks):
            x = block(x, layer, state, reducer, self._attention, exact=layer <= out.exact_through)
            state.token_counts.append(x.shape[1])
            if trace:
                out.block_outputs.append(x)
                out.block_sizes.append(state.size)
        x = encoder.norm(x)
        out.tokens = x
        if self.pool_norm is not None:
            # Unweighted mean over the surviving tokens: merge sizes are ignored here (official).
            out.pooled = self.pool_norm(x.mean(dim=1, keepdim=True))
        return out


__all__ = ["VisionTransformer", "VisionOutput", "VisionEncoder", "Block", "Attention", "PatchEmbed",
           "sinusoid_table", "video_position_table", "ATTENTION_MODES", "AttentionMode"]

