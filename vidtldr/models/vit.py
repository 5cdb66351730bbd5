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
from typing import Literal, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidtldr.errors import ConfigError
from vidtldr.models.config import VisionConfig
from vidtldr.reduce.base import Need, ReductionState, Reducer

AttentionMode = Literal["fused", "materialized"]
ATTENTION_MODES = ("fused", "materialized")

# Elements of one query block's logits [B, heads, block, T] in the bounded-memory path (16 MiB fp32).
# glibc serves blocks below its largest dynamic mmap threshold (32 MiB) from recycled heap memory;
# bigger ones are freshly mapped and page-faulted (kernel-zeroed) at every block. At 64 MiB the
# scoring attention of UMT-B (T = 2352) therefore ran as slowly as the fully materialised map on a
# 2-core CPU; at 16 MiB about 1.6x faster, and the block still fits the last-level cache.
_BLOCK_ELEMENTS = 1 << 22
# Fewest query rows in a block. The CPU matmul takes another kernel for 1- and 2-row operands, whose
# sums round differently from the full map's; from 3 rows on every block gives the full map's bits.
_MIN_BLOCK_ROWS = 8


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


class Attention(nn.Module):
    """Multi-head self-attention with learned q/v biases and a fixed zero k bias, plus the
    proportional-attention bias log(size) once tokens have been merged."""

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
        q, k, v = self._qkv(x)
        # [B, 1, 1, T]: added along the key axis (proportional attention)
        log_size = None if size is None else size.log().transpose(1, 2).unsqueeze(1)
        aux: dict = {}
        if need == "keys":
            aux["keys"] = k.mean(1)
        if mode == "materialized":
            out = self._materialized(q, k, v, log_size, need, aux)
        elif exact or need in ("neg_entropy", "attn"):
            out = self._blocked(q, k, v, log_size, need, aux)
        else:
            mask = None if log_size is None else log_size.to(q.dtype)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.proj(out), aux

    def _materialized(self, q, k, v, log_size, need, aux):
        logits = (q * self.scale) @ k.transpose(-2, -1)
        probs = logits.float().softmax(dim=-1)  # the pre-size-bias map the reducer scores with
        _collect(probs, need, aux)
        if log_size is not None:
            probs = (logits.float() + log_size.float()).softmax(dim=-1)
        return probs.to(v.dtype) @ v

    def _blocked(self, q, k, v, log_size, need, aux):
        batch, heads, tokens, _ = q.shape
        keys_t = k.transpose(-2, -1)
        out = torch.empty_like(v)
        if need == "attn":
            aux["attn"] = torch.empty(batch, tokens, tokens, dtype=torch.float32, device=q.device)
        elif need == "neg_entropy":
            aux["neg_entropy"] = torch.empty(batch, tokens, 1, dtype=torch.float32, device=q.device)
        bias = None if log_size is None else log_size.float()
        for start, stop in query_blocks(tokens, _BLOCK_ELEMENTS // max(1, batch * heads * tokens)):
            logits = ((q[:, :, start:stop] * self.scale) @ keys_t).float()
            if need in ("attn", "neg_entropy") or bias is None:
                probs = logits.softmax(dim=-1)  # the pre-size-bias map (skipped when unused)
            if need == "attn":
                aux["attn"][:, start:stop] = _head_mean(probs)
            elif need == "neg_entropy":
                aux["neg_entropy"][:, start:stop, 0] = _sum_p_log_p(_head_mean(probs))
            if bias is not None:
                # Same operations as the materialised path (bias added to the logits, then softmax),
                # so both executions agree to the last bits: vid-TLDR's min-max-normalised saliency
                # amplifies even 1e-7 differences in the residual stream. In place: no new buffer.
                probs = logits.add_(bias).softmax(dim=-1)
            del logits
            out[:, :, start:stop] = probs.to(v.dtype) @ v
        return out


def _sum_p_log_p(p: torch.Tensor) -> torch.Tensor:
    """``sum_j p_j ln p_j`` over the last axis, with ``0 ln 0 = 0`` (the original code would produce
    NaN there, docs/protocol.md section 9). Clamping to the smallest normal float before the log gives exactly
    ``p ln p`` for every normal ``p`` and 0 for ``p = 0``; it is about 4x faster on CPU than
    ``torch.xlogy``, which matters at vid-TLDR's scoring blocks (T x T probabilities per block)."""
    return (p * p.clamp_min(torch.finfo(p.dtype).tiny).log()).sum(-1)


def query_blocks(tokens: int, rows: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive query blocks covering ``tokens`` rows, about ``rows`` each,
    none shorter than ``_MIN_BLOCK_ROWS`` (a short tail joins the block before it) unless the
    whole map is shorter."""
    rows = max(rows, _MIN_BLOCK_ROWS)
    starts = list(range(0, tokens, rows))
    if len(starts) > 1 and tokens - starts[-1] < _MIN_BLOCK_ROWS:
        starts.pop()
    return list(zip(starts, starts[1:] + [tokens], strict=True))


def _head_mean(probs: torch.Tensor) -> torch.Tensor:
    """Mean over the heads of ``[B, heads, N, T]`` -> ``[B, N, T]``, added head by head in a fixed
    order. ``Tensor.mean(1)`` picks its summation order from the tensor's shape on CPU, so a block
    of query rows and the full map could round differently in the last bit; elementwise adds give
    the same bits for any set of rows (the official ``mean(1)`` is matched to ~1e-10)."""
    total = probs[:, 0].clone()
    for head in range(1, probs.shape[1]):
        total += probs[:, head]
    return total / probs.shape[1]


def _collect(probs: torch.Tensor, need: Need, aux: dict) -> None:
    """Fill ``aux`` from a full softmax map [B, heads, T, T] (pre-size-bias)."""
    if need == "attn":
        aux["attn"] = _head_mean(probs)
    elif need == "neg_entropy":
        mean_probs = _head_mean(probs)
        aux["neg_entropy"] = _sum_p_log_p(mean_probs).unsqueeze(-1)


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
        need = reducer.needs(layer, x.shape[1]) if reducer is not None else None
        attn_out, aux = self.attn(self.norm1(x), state.size, need, mode, exact)
        if need == "update":  # the attention's residual update itself (free: computed anyway)
            aux["update"] = attn_out
        x = x + attn_out
        if reducer is not None:
            # The hook sits between the attention residual and the MLP, so this block's MLP
            # already runs on the reduced token set.
            x = reducer.reduce(x, layer, state, aux)
        return x + self.mlp(self.norm2(x))


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


class VisionTransformer(nn.Module):
    """The official ``PretrainVisionTransformer`` at evaluation (``keep_temporal=False``)."""

    def __init__(self, cfg: VisionConfig, attention: AttentionMode = "fused"):
        super().__init__()
        self.cfg = cfg
        self.encoder = VisionEncoder(cfg)
        self.pool_norm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps) if cfg.add_pool_norm else None
        self.attention = attention

    @property
    def attention(self) -> AttentionMode:
        return self._attention

    @attention.setter
    def attention(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise ConfigError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
        self._attention = mode

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
        """Fused mode: the last block that must run the materialized arithmetic (-1: none).

        That is the last block that removes tokens in a forward entering with ``num_tokens``. Every
        reducer decides from its block's input (vid-TLDR: hidden states and attention; ToMe: keys;
        random drop: a fingerprint of the hidden states seeds its draw), so every block up to the
        last decision must match the official execution bit for bit; nothing is decided after it."""
        # A duck-typed hook without ``reducing_blocks`` (no schedule to read) gets no exact blocks.
        reducing_blocks = getattr(reducer, "reducing_blocks", None)
        if reducing_blocks is None or self._attention == "materialized" or \
                not getattr(reducer, "exact_decisions", True):
            return -1
        blocks = [layer for layer in reducing_blocks(num_tokens) if layer < self.cfg.depth]
        return blocks[-1] if blocks else -1

    def forward(self, videos: torch.Tensor, reducer: Optional[Reducer] = None, trace: bool = False,
                trace_source: bool = False) -> VisionOutput:
        """videos: [B, T, 3, H, W] normalised frames."""
        self._check_input(videos)
        state = ReductionState(record_trace=trace, trace_source=trace_source)
        encoder = self.encoder
        x = encoder.patch_embed(videos.permute(0, 2, 1, 3, 4))
        x = x + encoder.pos_embed.to(dtype=x.dtype)
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

