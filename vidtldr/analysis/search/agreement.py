"""Label-free agreement between a reduced model and the same model unreduced (pure functions).

Every function compares a *reference* (unreduced) quantity with the *reduced* one and returns
values where 1 means identical: cosines of embeddings, agreement of final tokens with the
unreduced tokens they stand for (source tracing), and agreement of rankings (top-1 agreement,
top-k overlap, Spearman and Kendall correlation of the score rows).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch


def embedding_cosine(ref: torch.Tensor, red: torch.Tensor) -> torch.Tensor:
    """Per-row cosine ``[N]`` of two embedding sets ``[N, ...]`` (trailing axes flattened)."""
    if ref.shape != red.shape:
        raise ValueError(f"embeddings differ in shape: reference {tuple(ref.shape)} vs reduced {tuple(red.shape)}")
    a = ref.reshape(ref.shape[0], -1).double()
    b = red.reshape(red.shape[0], -1).double()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1, eps=1e-12)


def token_agreement(ref_tokens: torch.Tensor, red_tokens: torch.Tensor,
                    source: Optional[torch.Tensor]) -> float:
    """How well each final token of one video stands for the unreduced tokens it came from.

    ``ref_tokens`` ``[N0, C]`` (unreduced final tokens), ``red_tokens`` ``[N, C]``, ``source``
    ``[N, N0]`` provenance weights (None: no reduction, token i is token i). Each reduced token is
    compared (cosine) with the weighted mean of the unreduced tokens with a positive weight in its
    source row; the cosines are averaged with weights = the number of unreduced tokens each reduced
    token represents. A token that represents nothing (dropped provenance) is left out.
    """
    if source is None:
        if ref_tokens.shape != red_tokens.shape:
            raise ValueError(f"without provenance the token sets must match: {tuple(ref_tokens.shape)} "
                             f"vs {tuple(red_tokens.shape)}")
        source = torch.eye(ref_tokens.shape[0], dtype=torch.float64)
    if source.shape != (red_tokens.shape[0], ref_tokens.shape[0]):
        raise ValueError(f"source must be [N, N0] = [{red_tokens.shape[0]}, {ref_tokens.shape[0]}], "
                         f"got {list(source.shape)}")
    weights = source.double().clamp_min(0)
    total = weights.sum(dim=1, keepdim=True)
    alive = total.squeeze(1) > 0
    target = (weights @ ref_tokens.double()) / total.clamp_min(1e-300)
    cos = torch.nn.functional.cosine_similarity(red_tokens.double(), target, dim=-1, eps=1e-12)
    members = (weights > 0).sum(dim=1).double()
    members = members[alive]
    if members.sum() == 0:
        return float("nan")
    return float((cos[alive] * members).sum() / members.sum())


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks (1-based) along the last axis, ties sharing their average rank (Spearman's convention)."""
    values = values.double()
    order = values.argsort(dim=-1, stable=True)
    sorted_vals = values.gather(-1, order)
    n = values.shape[-1]
    ranks = torch.empty_like(values)
    positions = torch.arange(1, n + 1, dtype=torch.float64).expand_as(values)
    # Average the positions within each run of equal values.
    new_run = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_run[..., 1:] = sorted_vals[..., 1:] != sorted_vals[..., :-1]
    run_id = new_run.long().cumsum(-1) - 1
    sums = torch.zeros_like(values).scatter_add_(-1, run_id, positions)
    counts = torch.zeros_like(values).scatter_add_(-1, run_id, torch.ones_like(values))
    avg = sums.gather(-1, run_id) / counts.gather(-1, run_id)
    ranks.scatter_(-1, order, avg)
    return ranks


def spearman_rows(ref: torch.Tensor, red: torch.Tensor) -> torch.Tensor:
    """Spearman correlation of each row pair ``[Q, N] -> [Q]`` (Pearson of average ranks). A row
    that is constant on both sides scores 1 (identical orderings), on one side only 0."""
    a, b = average_ranks(ref), average_ranks(red)
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
    rho = (a * b).sum(-1) / den.clamp_min(1e-300)
    both_const = (a.abs().sum(-1) == 0) & (b.abs().sum(-1) == 0)
    rho = torch.where(den == 0, torch.zeros_like(rho), rho)
    return torch.where(both_const, torch.ones_like(rho), rho)


def kendall_rows(ref: torch.Tensor, red: torch.Tensor) -> torch.Tensor:
    """Kendall's tau-b of each row pair ``[Q, N] -> [Q]`` (all pairs, O(N^2) per row). A row with no
    untied pair on both sides scores 1 if both are constant, else 0."""
    da = torch.sign(ref.double()[..., :, None] - ref.double()[..., None, :])
    db = torch.sign(red.double()[..., :, None] - red.double()[..., None, :])
    concord = (da * db).sum((-1, -2)) / 2
    n_a = (da != 0).sum((-1, -2)).double() / 2
    n_b = (db != 0).sum((-1, -2)).double() / 2
    den = (n_a * n_b).sqrt()
    tau = concord / den.clamp_min(1e-300)
    tau = torch.where(den == 0, torch.zeros_like(tau), tau)
    return torch.where((n_a == 0) & (n_b == 0), torch.ones_like(tau), tau)


def topk_overlap(ref: torch.Tensor, red: torch.Tensor, k: int) -> torch.Tensor:
    """Per row ``[Q]``: fraction of the reference top-``k`` columns that are also in the reduced
    top-``k`` (``k`` capped at the number of columns; ties broken by column order on both sides)."""
    k = min(int(k), ref.shape[-1])
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    top_a = _topk_idx(ref, k)
    top_b = _topk_idx(red, k)
    hits = (top_a[..., :, None] == top_b[..., None, :]).any(-1).double().sum(-1)
    return hits / k


def _topk_idx(scores: torch.Tensor, k: int) -> torch.Tensor:
    # Stable descending order: equal scores keep column order, so ties cannot make two identical
    # score matrices disagree.
    return scores.double().neg().argsort(dim=-1, stable=True)[..., :k]


def mask_diagonal(scores: torch.Tensor) -> torch.Tensor:
    """A square ``[N, N]`` similarity with its diagonal removed: ``[N, N - 1]`` (a video is
    trivially most similar to itself, which would inflate every agreement)."""
    n = scores.shape[0]
    if scores.shape != (n, n):
        raise ValueError(f"expected a square similarity matrix, got {tuple(scores.shape)}")
    keep = ~torch.eye(n, dtype=torch.bool, device=scores.device)
    return scores[keep].reshape(n, n - 1)


def ranking_agreement(ref_scores: torch.Tensor, red_scores: torch.Tensor,
                      ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Agreement of two score matrices ``[Q, N]`` (queries x gallery), averaged over queries:
    ``itc_top1_agreement`` (same best item), ``itc_top{k}_overlap`` for each k (None when k is not
    below the gallery size), ``spearman_mean``, ``kendall_mean``."""
    if ref_scores.shape != red_scores.shape:
        raise ValueError(f"score matrices differ in shape: {tuple(ref_scores.shape)} vs {tuple(red_scores.shape)}")
    if ref_scores.dim() != 2 or ref_scores.shape[0] < 1 or ref_scores.shape[1] < 2:
        raise ValueError(f"need a [queries, gallery >= 2] score matrix, got {tuple(ref_scores.shape)}")
    out = {"itc_top1_agreement": _mean(topk_overlap(ref_scores, red_scores, 1))}
    for k in ks:
        # k >= gallery: every item is in both top-k lists, an overlap that says nothing
        informative = k < ref_scores.shape[1]
        out[f"itc_top{k}_overlap"] = _mean(topk_overlap(ref_scores, red_scores, k)) if informative else None
    out["spearman_mean"] = _mean(spearman_rows(ref_scores, red_scores))
    out["kendall_mean"] = _mean(kendall_rows(ref_scores, red_scores))
    out["queries"] = int(ref_scores.shape[0])
    out["gallery"] = int(ref_scores.shape[1])
    return out


def _mean(values: torch.Tensor) -> float:
    value = float(values.double().mean())
    return value if math.isfinite(value) else float("nan")
