"""DivPrune: keep a maximally diverse subset of the tokens, drop the rest.

DivPrune (Alvar et al., CVPR 2025) treats pruning as a max-min diversity problem and solves it
greedily (farthest-point selection). On the block's hidden states, with the cosine distance
``d_ij = 1 - cos(x_i, x_j)``:

1. the first token kept is the most isolated one: the largest distance to its nearest *other*
   token (the second smallest entry of its column, the smallest being its own 0);
2. then, until ``T - r`` tokens are kept, the token whose distance to the nearest kept token is the
   largest is added (ties: the earlier token).

The kept tokens stay in their original order; the others are dropped (no sizes). One departure from
the published loop: a token already kept is never picked again (the published one can re-pick a
kept token when every remaining token duplicates one exactly, returning fewer distinct tokens).
"""

from __future__ import annotations

import torch

from vidtldr.reduce.base import ReductionState, Reducer, apply_keep, register_reducer


def cosine_distance(x: torch.Tensor) -> torch.Tensor:
    """``[B, T, T]`` pairwise ``1 - cos`` of the tokens ``x`` ``[B, T, C]``."""
    m = x / x.norm(dim=-1, keepdim=True)
    return 1.0 - m @ m.transpose(-1, -2)


def max_min_keep(distance: torch.Tensor, keep: int) -> torch.Tensor:
    """Ascending indices ``[B, keep]`` chosen greedily by max-min distance (module docstring)."""
    batch, n_tok, _ = distance.shape
    if not 1 <= keep <= n_tok:
        raise ValueError(f"cannot keep {keep} of {n_tok} tokens")
    rows = torch.arange(batch, device=distance.device)
    if n_tok > 1:
        isolation = distance.topk(2, dim=1, largest=False).values[:, 1, :]  # nearest other token
    else:
        isolation = torch.zeros(batch, 1, dtype=distance.dtype, device=distance.device)
    chosen = [isolation.argmax(dim=1)]
    nearest_kept = distance[rows, chosen[0]].clone()     # distance of every token to the kept set
    taken = torch.zeros(batch, n_tok, dtype=torch.bool, device=distance.device)
    taken[rows, chosen[0]] = True
    for _ in range(keep - 1):
        pick = nearest_kept.masked_fill(taken, -torch.inf).argmax(dim=1)
        chosen.append(pick)
        taken[rows, pick] = True
        nearest_kept = torch.minimum(nearest_kept, distance[rows, pick])
    return torch.stack(chosen, dim=1).sort(dim=1).values


@register_reducer("divprune")
class DivPrune(Reducer):
    """Keeps the ``T - r`` most diverse tokens (greedy max-min cosine distance), drops the rest."""

    need = None            # nothing from the attention
    match_on = "hidden"    # cosine similarities of the hidden states (width C)
    tracks_sizes = False   # pruning: survivors are gathered

    @classmethod
    def similarity_shape(cls, num_tokens: int, removed: int) -> tuple[int, int]:
        return num_tokens, num_tokens   # every pair

    @classmethod
    def selection_flops(cls, dims, num_tokens: int, removed: int) -> int:
        # the running minimum over the T tokens at each of the T - r - 1 greedy steps after the first
        return (num_tokens - removed - 1) * num_tokens

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        with torch.no_grad():
            keep = max_min_keep(cosine_distance(x), x.shape[1] - r)
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": x.shape[1], "r_merge": r, "keep_idx": keep})
        return apply_keep(keep, x, state)
