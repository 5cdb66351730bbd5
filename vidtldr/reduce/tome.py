"""ToMe (Bolya et al., ICLR 2023) baseline: bipartite soft matching on head-mean keys.

Follows the published algorithm: cosine similarity of the head-averaged attention keys between
alternating token halves, the ``r`` even-position tokens with the most similar odd partner are
merged into it by a size-weighted average, and token sizes feed proportional attention
(``log(size)`` key bias) in later blocks. Nothing is protected: UMT has no CLS token. As in the
published code, the unmerged tokens stay in similarity order (they are not re-sorted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from vidtldr.reduce.base import ReductionState, Reducer, apply_merge, register_reducer


@dataclass
class ToMeMatch:
    """Indices into the even half (``unm_idx``, ``src_idx``) and odd half (``dst_idx``), ``[B, *, 1]``."""

    unm_idx: torch.Tensor
    src_idx: torch.Tensor
    dst_idx: torch.Tensor

    @property
    def r(self) -> int:
        return self.src_idx.shape[1]

    def merge(self, t: torch.Tensor, mode: str) -> torch.Tensor:
        """``[B, T, D] -> [B, T - r, D]``: [unmerged even tokens] ++ [odd tokens, src reduced in with
        ``mode``, "sum" or "amax"]."""
        even, odd = t[:, 0::2, :], t[:, 1::2, :]
        b, n_even, d = even.shape
        unm = even.gather(1, self.unm_idx.expand(b, n_even - self.r, d))
        src = even.gather(1, self.src_idx.expand(b, self.r, d))
        odd = odd.scatter_reduce(1, self.dst_idx.expand(b, self.r, d), src, reduce=mode, include_self=True)
        return torch.cat([unm, odd], dim=1)


def tome_match(metric: torch.Tensor, r: int) -> ToMeMatch:
    """Bipartite soft matching on ``metric`` ``[B, T, D]`` (ToMe uses head-mean keys)."""
    if metric.dim() != 3:
        raise ValueError(f"metric must be [B, T, D], got shape {tuple(metric.shape)}")
    if not 0 <= r <= metric.shape[1] // 2:
        raise ValueError(f"r must be in [0, T//2] = [0, {metric.shape[1] // 2}], got {r}")
    with torch.no_grad():
        m = metric / metric.norm(dim=-1, keepdim=True)
        sim = m[:, 0::2, :] @ m[:, 1::2, :].transpose(-1, -2)
        node_max, node_idx = sim.max(dim=-1)
        order = node_max.argsort(dim=-1, descending=True)[..., None]
        src_idx = order[:, :r, :]
        return ToMeMatch(unm_idx=order[:, r:, :], src_idx=src_idx, dst_idx=node_idx[..., None].gather(1, src_idx))


def tome_merge_wavg(match: ToMeMatch, x: torch.Tensor, size: Optional[torch.Tensor] = None):
    """Size-weighted average merge; returns ``(x, size)``. Total size is conserved."""
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    x = match.merge(x * size, "sum")
    size = match.merge(size, "sum")
    return x / size, size


def tome_merge_source(match: ToMeMatch, x: torch.Tensor, source: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Provenance ``[B, T', T0]`` (0/1), starting from the identity over the current tokens."""
    if source is None:
        b, n_tok = x.shape[:2]
        source = torch.eye(n_tok, device=x.device, dtype=x.dtype)[None].expand(b, n_tok, n_tok)
    return match.merge(source, "amax")


@register_reducer("tome")
class ToMe(Reducer):
    """ToMe as a ViT hook: asks for head-mean keys at blocks that remove tokens."""

    need = "keys"
    match_on = "keys"
    tracks_sizes = True

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        keys = self.needed(aux, "keys", layer)
        n_tok = x.shape[1]
        match = tome_match(keys, r)
        x = apply_merge(match, x, state, tome_merge_wavg, tome_merge_source)
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": n_tok, "r_merge": r, "unm_idx": match.unm_idx,
                                "src_idx": match.src_idx, "dst_idx": match.dst_idx})
        return x
