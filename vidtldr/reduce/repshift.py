"""Representation-shift merging: vid-TLDR's matching and merging, scored without attention maps.

Token importance is how much the block changes each token: the L2 norm of the block's residual
update (Choi et al., "Representation Shift", ICCV 2025, measure it as the distance between a token
before and after a layer). The ViT calls reducers between the attention residual and the MLP, so the
update available at the hook is this block's *attention* update (``aux["update"]``, what the
attention added to the residual stream, passed when a reducer's ``need`` is ``"update"``); that is
the one used here. Nothing extra is computed for it, so every block keeps fused attention (SDPA).

The shift norms go through vid-TLDR's own background removal and sharpening
(:func:`vidtldr.reduce.vidtldr.saliency_from_neg_entropy`) in place of the attention entropy; the
bipartite matching on the hidden states, the saliency-weighted size-weighted merge and the
provenance are vid-TLDR's unchanged. Tokens whose shift is below the sample's mean therefore add
nothing to the token they are merged into, as vid-TLDR's background tokens do.
"""

from __future__ import annotations

import torch

from vidtldr.reduce.base import ReductionState, Reducer, register_reducer
from vidtldr.reduce.vidtldr import merge_scored, saliency_from_neg_entropy


def shift_norm(update: torch.Tensor) -> torch.Tensor:
    """Per-token L2 norm ``[B, T, 1]`` of a residual update ``[B, T, C]`` (computed in float32)."""
    if update.dim() != 3:
        raise ValueError(f"update must be [B, T, C], got shape {tuple(update.shape)}")
    return update.float().norm(dim=-1, keepdim=True)


def shift_score(update: torch.Tensor) -> torch.Tensor:
    """Saliency ``[B, T, 1]`` in [0, 1] from a residual update: the shift norm, min-max normalised
    per sample, tokens below the mean set to 0, the rest sharpened so that the largest shift is 1."""
    return saliency_from_neg_entropy(shift_norm(update))


@register_reducer("repshift")
class RepShift(Reducer):
    """vid-TLDR matching/merging with importance = norm of the block's attention update."""

    need = "update"        # the attention's residual update; nothing computed extra, SDPA in every block
    match_on = "hidden"    # bipartite matching on the hidden states, as vid-TLDR
    tracks_sizes = True    # merged tokens carry sizes (proportional attention afterwards)
    # No official execution to reproduce: fused mode keeps SDPA in every block (its decisions are
    # those of the SDPA arithmetic; attention=materialized may differ at near-ties).
    exact_decisions = False

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        update = aux.get("update")
        if update is None:
            raise ValueError(f"repshift at block {layer}: aux has no 'update' (got keys {sorted(aux)}); "
                             "the block must pass its attention residual update to the reducer")
        if update.shape != x.shape:
            raise ValueError(f"repshift at block {layer}: update {tuple(update.shape)} does not match "
                             f"the tokens {tuple(x.shape)}")
        score = shift_score(update)
        return merge_scored(x, r, layer, score, state)
