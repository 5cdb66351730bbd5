"""The reduction-aware attention arithmetic and per-block hook, shared by every backbone family.

A family (the UMT ViT in :mod:`vidtldr.models.vit`, transformers' VideoMAE in
:mod:`vidtldr.models.hf.videomae`) projects its own queries, keys and values and owns its norms and
MLP; what the reducer contract needs from a block is the same everywhere and lives here once:

* :func:`attend`: multi-head attention that also returns what the reducer ``need``s, with the
  proportional-attention bias ``log(size)`` once tokens carry sizes, in the two execution modes
  (``materialized``: the full softmax map; ``fused``: SDPA, or query blocks with the materialized
  arithmetic where a map statistic is needed or the block must be ``exact``);
* :func:`reducing_block`: attention residual, the reducer hook, MLP residual;
* :func:`exact_through`: the last block that must run the materialized arithmetic in fused mode;
* :class:`AttentionModeSetting`: the encoder's checked ``attention`` mode.

See docs/architecture.md, "Reducer hook", for why the fused prefix is bit-identical to the
materialized execution.
"""

from __future__ import annotations

from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F

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


class ReducibleAttention:
    """Mixin of a family's attention: subclasses project ``q, k, v`` ([B, heads, T, head_dim])
    and call :meth:`attend`; ``scale`` is the logit scale (head_dim ** -0.5). Not a module itself,
    so a family can wrap modules it does not own (transformers' layers) without registering their
    parameters twice."""

    scale: float

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: Optional[torch.Tensor],
               need: Need, mode: AttentionMode = "fused", exact: bool = False) -> tuple[torch.Tensor, dict]:
        """``(out [B, heads, T, head_dim], aux)``. ``exact`` (fused mode): the query-blocked
        materialized arithmetic even where the reducer needs nothing, so the output is bit-identical
        to the materialized execution."""
        # [B, 1, 1, T]: added along the key axis (proportional attention)
        log_size = None if size is None else size.log().transpose(1, 2).unsqueeze(1)
        aux: dict = {}
        if need == "keys":
            aux["keys"] = k.mean(1)
        if mode == "materialized":
            return self._materialized(q, k, v, log_size, need, aux), aux
        if exact or need in ("neg_entropy", "attn"):
            return self._blocked(q, k, v, log_size, need, aux), aux
        mask = None if log_size is None else log_size.to(q.dtype)
        # SDPA's default scale is head_dim ** -0.5, the scale every family here uses.
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), aux

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


def input_reduction(x: torch.Tensor, video: torch.Tensor, grid: tuple[int, int, int], state: ReductionState,
                    reducer: Optional[Reducer]) -> torch.Tensor:
    """The input-level hook, once after the patch + position embedding and before block 0.

    ``x`` ``[B, N, C]`` embedded tokens in (t, h, w) order, ``video`` ``[B, 3, T, H, W]`` the
    normalised frames they come from, ``grid`` ``(t, h, w)`` tokens along time, height and width.
    Records the embedded count in ``state.embedded_tokens``; a duck-typed hook without
    ``reduce_input`` is skipped."""
    state.embedded_tokens = x.shape[1]
    reduce_input = getattr(reducer, "reduce_input", None)
    if reduce_input is None:
        return x
    return reduce_input(x, state, {"video": video, "grid": tuple(int(g) for g in grid)})


def reducing_block(x: torch.Tensor, layer: int, state: ReductionState, reducer: Optional[Reducer],
                   attention: Callable[[torch.Tensor, Optional[torch.Tensor], Need], tuple[torch.Tensor, dict]],
                   mlp: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """One pre-norm transformer block with the reducer hook between its two residuals.

    ``attention(x, size, need) -> (update, aux)`` includes the block's first norm and output
    projection; ``mlp(x) -> update`` its second norm and MLP. The hook sits between the attention
    residual and the MLP, so this block's MLP already runs on the reduced token set."""
    need = reducer.needs(layer, x.shape[1]) if reducer is not None else None
    attn_out, aux = attention(x, state.size, need)
    if need == "update":  # the attention's residual update itself (free: computed anyway)
        aux["update"] = attn_out
    x = x + attn_out
    if reducer is not None:
        x = reducer.reduce(x, layer, state, aux)
    return x + mlp(x)


def exact_through(reducer: Optional[Reducer], num_tokens: int, depth: int, mode: AttentionMode) -> int:
    """Fused mode: the last block that must run the materialized arithmetic (-1: none).

    That is the last block that removes tokens in a forward entering with ``num_tokens``. Every
    reducer decides from its block's input (vid-TLDR: hidden states and attention; ToMe: keys;
    random drop: a fingerprint of the hidden states seeds its draw), so every block up to the
    last decision must match the official execution bit for bit; nothing is decided after it."""
    # A duck-typed hook without ``reducing_blocks`` (no schedule to read) gets no exact blocks.
    reducing_blocks = getattr(reducer, "reducing_blocks", None)
    if reducing_blocks is None or mode == "materialized" or not getattr(reducer, "exact_decisions", True):
        return -1
    blocks = [layer for layer in reducing_blocks(num_tokens) if layer < depth]
    return blocks[-1] if blocks else -1


class AttentionModeSetting:
    """Mixin of every family's encoder: its ``attention`` execution mode (``fused`` |
    ``materialized``), checked on every assignment (a typo is a ConfigError, not a silent default)."""

    _attention: AttentionMode

    @property
    def attention(self) -> AttentionMode:
        return self._attention

    @attention.setter
    def attention(self, mode: str) -> None:
        self._attention = check_attention_mode(mode)


def check_attention_mode(mode: str) -> AttentionMode:
    from vidtldr.errors import ConfigError

    if mode not in ATTENTION_MODES:
        raise ConfigError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
    return mode  # type: ignore[return-value]


__all__ = ["AttentionModeSetting", "ReducibleAttention", "reducing_block", "exact_through", "query_blocks", "check_attention_mode",
           "ATTENTION_MODES", "AttentionMode"]
