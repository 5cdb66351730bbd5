"""vid-TLDR (CVPR 2024): saliency-weighted bipartite token merging, as the official code computes it.

Every step is a small pure function on tensors, so each can be checked against the golden fixture
(``tests/fixtures/umt_tiny/merge_cases.pt``) and against hand-made inputs:

* :func:`head_mean_neg_entropy` -> :func:`saliency_from_neg_entropy` (= :func:`objective_score`)
* :func:`bipartite_match` -> :class:`Match` (with ``Match.merge``)
* :func:`merge_wavg`, :func:`merge_source`
* :class:`VidTLDR`, the reducer the ViT blocks call (registered as ``"vidtldr"``)
* :func:`official_vidtldr_call`, an adapter with the official ``vidTLDR(x, attn, info, layer)``
  calling convention, used by the parity tests and scripts.

Two deliberate departures from the official code, both limited to inputs where it returns NaN
(its finite results are reproduced exactly):

1. ``0 * log 0`` in the entropy is taken as 0 (its limit) instead of NaN. A head-mean probability
   underflows to exactly 0 when one query's logit gaps exceed about 103 in float32; the official
   code then turns the whole sample's scores into NaN.
2. A sample whose per-token entropies are all equal (e.g. perfectly uniform attention) has a 0/0
   in the min-max normalisation. Every token then sits exactly at the mean, and a token at the
   mean scores 0 in the official formula, so all its scores are set to 0 (instead of NaN).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from vidtldr.reduce.base import ReductionState, Reducer, apply_merge, register_reducer
from vidtldr.reduce.schedule import tokens_to_remove


# --------------------------------------------------------------------------------------------
# Saliency (official `get_objective_score`)
# --------------------------------------------------------------------------------------------

def head_mean_neg_entropy(attn: torch.Tensor) -> torch.Tensor:
    """Per-query negative entropy ``sum_j P_ij ln P_ij`` of the head-mean attention.

    ``attn``: ``[B, H, T, T]`` softmax maps (or an already head-averaged ``[B, T, T]``).
    Returns ``[B, T, 1]``. Unlike the official code, a probability of exactly 0 contributes 0
    (the limit of ``p ln p``) rather than NaN; for strictly positive inputs the result is
    bit-identical to ``(P * P.log()).sum(-1)``.
    """
    if attn.dim() == 4:
        p = attn.mean(dim=1)
    elif attn.dim() == 3:
        p = attn
    else:
        raise ValueError(f"attn must be [B,H,T,T] or [B,T,T], got shape {tuple(attn.shape)}")
    plogp = p * torch.log(p)
    # Only exact zeros are replaced, so every finite official value is untouched.
    plogp = torch.where(p == 0, torch.zeros_like(plogp), plogp)
    return plogp.sum(dim=-1, keepdim=True)


def saliency_from_neg_entropy(e: torch.Tensor) -> torch.Tensor:
    """Official background removal + foreground sharpening of per-token negative entropies.

    ``e``: ``[B, T, 1]``. Per sample: min-max normalise to [0, 1]; tokens strictly below the mean
    are background (score 0); the rest are ``(s - mean) / max(s - mean)``, so the sharpest token
    scores 1. A sample with constant ``e`` (0/0 in the official code) scores 0 everywhere.
    """
    if e.dim() != 3 or e.shape[-1] != 1:
        raise ValueError(f"neg_entropy must be [B, T, 1], got shape {tuple(e.shape)}")
    s = e - e.amin(dim=1, keepdim=True)
    span = s.amax(dim=1, keepdim=True)
    degenerate = span == 0
    s = s / torch.where(degenerate, torch.ones_like(span), span)
    mean = s.mean(dim=1, keepdim=True)
    background = s < mean
    s = s - mean
    top = s.amax(dim=1, keepdim=True)
    s = s / torch.where(top == 0, torch.ones_like(top), top)
    s = s.masked_fill(background | degenerate, 0.0)
    return s


def objective_score(attn: torch.Tensor) -> torch.Tensor:
    """vid-TLDR saliency ``[B, T, 1]`` from attention maps ``[B, H, T, T]`` (official
    ``get_objective_score``, with the NaN guards described in the module docstring)."""
    return saliency_from_neg_entropy(head_mean_neg_entropy(attn))


# --------------------------------------------------------------------------------------------
# Matching and merging (official `merging`, `merge_wavg`)
# --------------------------------------------------------------------------------------------

@dataclass
class Match:
    """The result of bipartite matching on the current token order.

    Indices are into the even-position half (``unm_idx``, ``src_idx``: ``[B, *, 1]``) or the
    odd-position half (``dst_idx``: ``[B, r, 1]``); ``src_so`` ``[B, r, 1]`` is the saliency of
    each src token, which scales its contribution to whatever is merged.
    """

    unm_idx: torch.Tensor
    src_idx: torch.Tensor
    dst_idx: torch.Tensor
    src_so: torch.Tensor

    @property
    def r(self) -> int:
        return self.src_idx.shape[1]

    def merge(self, t: torch.Tensor, mode: str = "sum") -> torch.Tensor:
        """Merge a per-token tensor ``t`` ``[B, T, D]`` into ``[B, T - r, D]``.

        Output order: the unmerged even-position tokens (ascending) then all odd-position tokens.
        src rows, multiplied by their saliency, are scatter-reduced (``mode``: "sum" or "amax",
        dst rows included) into their dst. Computed in float32 and cast back, as officially.
        """
        out_dtype = t.dtype
        t = t.to(torch.float32)
        even, odd = t[:, 0::2, :], t[:, 1::2, :]
        b, n_even, d = even.shape
        r = self.r
        unm = even.gather(1, self.unm_idx.expand(b, n_even - r, d))
        src = even.gather(1, self.src_idx.expand(b, r, d))
        odd = odd.scatter_reduce(1, self.dst_idx.expand(b, r, d), src * self.src_so, reduce=mode,
                                 include_self=True)
        return torch.cat([unm, odd], dim=1).to(out_dtype)


def bipartite_match(x: torch.Tensor, r: int, score: torch.Tensor) -> Match:
    """Official vid-TLDR matching: cosine similarity of the hidden states themselves.

    ``x`` ``[B, T, C]`` (the block's residual stream), ``r`` tokens to remove
    (``0 <= r <= T // 2``), ``score`` ``[B, T, 1]`` saliency. Even positions are candidates, odd
    positions destinations; the ``r`` even tokens with the highest best-match similarity
    ``(cos + 1) / 2`` are merged into their best odd token.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be [B, T, C], got shape {tuple(x.shape)}")
    n_tok = x.shape[1]
    if not 0 <= r <= n_tok // 2:
        raise ValueError(f"r must be in [0, T//2] = [0, {n_tok // 2}], got {r}")
    if score.shape != (x.shape[0], n_tok, 1):
        raise ValueError(f"score must be [B, T, 1] = {[x.shape[0], n_tok, 1]}, got {list(score.shape)}")
    with torch.no_grad():
        m = x / x.norm(dim=-1, keepdim=True)
        a, b = m[:, 0::2, :], m[:, 1::2, :]
        sim = (a @ b.transpose(-1, -2) + 1) / 2
        node_max, node_idx = sim.max(dim=-1)
        order = node_max.argsort(dim=-1, descending=True)[..., None]
        unm_idx = order[:, r:, :].sort(dim=1)[0]
        src_idx = order[:, :r, :]
        dst_idx = node_idx[..., None].gather(1, src_idx)
        src_so = score[:, 0::2, :].gather(1, src_idx)
    return Match(unm_idx=unm_idx, src_idx=src_idx, dst_idx=dst_idx, src_so=src_so)


def merge_wavg(match: Match, x: torch.Tensor, size: Optional[torch.Tensor] = None):
    """Size-weighted average merge; returns ``(x, size)``.

    ``size`` defaults to ones. Features are weighted by ``size / max(size)`` (the official
    normalisation, kept for identical float results) before the sum-merge and divided by the
    merged ``size / max(size)`` afterwards. A src with saliency 0 adds nothing to its dst.
    """
    if size is None:
        size = torch.ones_like(x[..., 0, None])
    size_max = size.amax(dim=-2, keepdim=True)
    x = match.merge(x * (size / size_max), "sum")
    size = match.merge(size, "sum")
    x = x / (size / size_max)
    return x, size


def merge_source(match: Match, x: torch.Tensor, source: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Provenance ``[B, T', T0]``: starts as the identity over the current tokens (float32, as
    the official ``torch.eye``) and is merged with ``amax`` (so src rows are scaled by saliency)."""
    if source is None:
        b, n_tok = x.shape[:2]
        source = torch.eye(n_tok, device=x.device)[None].expand(b, n_tok, n_tok)
    return match.merge(source, "amax")


# --------------------------------------------------------------------------------------------
# Official calling convention (for parity checks)
# --------------------------------------------------------------------------------------------

def official_vidtldr_call(x: torch.Tensor, attn: torch.Tensor, info: dict, layer: int):
    """Mirror of the official ``vidTLDR(x, attn, info, layer)``: mutates ``info`` (keys ``use``,
    ``r``, ``source_trace``, ``source``, ``size``) exactly as the official function does.

    Returns ``(x, score_obj, r_merge, match)``: the official return value ``x`` plus, for
    inspection, ``score_obj`` (``objective_score(attn)``; None when ``use`` is false),
    ``r_merge`` (what the schedule entry asks for at this token count, computed even when
    ``use`` is false) and the :class:`Match` (None when nothing merges).
    """
    r_merge = tokens_to_remove(info["r"][layer], x.shape[1])
    if not info["use"]:
        return x, None, r_merge, None
    score = objective_score(attn)
    if r_merge == 0:
        return x, score, r_merge, None
    match = bipartite_match(x, r_merge, score)
    if info["source_trace"]:
        info["source"] = merge_source(match, x, info["source"])
    x, info["size"] = merge_wavg(match, x, info["size"])
    return x, score, r_merge, match


# --------------------------------------------------------------------------------------------
# The reducer
# --------------------------------------------------------------------------------------------

def merge_scored(x: torch.Tensor, r: int, layer: int, score: torch.Tensor, state: ReductionState) -> torch.Tensor:
    """vid-TLDR's matching and size-weighted merging of ``x`` given each token's importance ``score``
    (tokens scored 0 are dropped by the merge); appends the trace entry when the state records one."""
    n_tok = x.shape[1]
    match = bipartite_match(x, r, score)
    x = apply_merge(match, x, state, merge_wavg, merge_source)
    if state.record_trace:
        state.trace.append({
            "layer": layer, "tokens_in": n_tok, "r_merge": r, "score_obj": score,
            "unm_idx": match.unm_idx, "src_idx": match.src_idx, "dst_idx": match.dst_idx,
            "src_so": match.src_so,
        })
    return x


@register_reducer("vidtldr")
class VidTLDR(Reducer):
    """vid-TLDR as a ViT hook: asks for the per-query negative entropy only at merging blocks."""

    need = "neg_entropy"
    match_on = "hidden"   # cosine similarity of the hidden states themselves
    tracks_sizes = True

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        if aux.get("neg_entropy") is not None:
            score = saliency_from_neg_entropy(aux["neg_entropy"])
        elif aux.get("attn") is not None:
            score = objective_score(aux["attn"])
        else:
            raise ValueError(f"vidtldr at block {layer}: aux has neither 'neg_entropy' nor 'attn' "
                             f"(got keys {sorted(aux)}); the attention must compute what needs() asks for")
        return merge_scored(x, r, layer, score, state)
