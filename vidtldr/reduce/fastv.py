"""FastV inside the video encoder: drop the tokens that receive the least attention.

FastV (Chen et al., "An Image is Worth 1/2 Tokens After Layer 2", ECCV 2024) prunes the visual
tokens of a multimodal LLM after one of its layers, keeping those that the sequence attends to most.
Here the same rule runs at any block of the vision encoder: the attention a token *receives* is
its column of the block's head-mean softmax map (before any size bias) averaged over every query,
and the ``r`` tokens that receive the least are dropped. Survivors keep their order; nothing is
merged, so no sizes are created (a size vector made by an earlier reducer in a composition is
carried along). Ties are broken towards the earlier token (a stable sort), so the choice is
deterministic.
"""

from __future__ import annotations

import torch

from vidtldr.reduce.base import ReductionState, Reducer, apply_keep, register_reducer


def attention_received(attn: torch.Tensor) -> torch.Tensor:
    """``[B, T]``: each key's attention averaged over the queries of a head-mean map ``[B, T, T]``."""
    if attn.dim() != 3 or attn.shape[1] != attn.shape[2]:
        raise ValueError(f"attn must be a head-mean map [B, T, T], got shape {tuple(attn.shape)}")
    return attn.mean(dim=1)


def least_attended_keep(received: torch.Tensor, r: int) -> torch.Tensor:
    """Ascending indices ``[B, T - r]`` of the tokens that survive dropping the ``r`` least attended
    (ties: the earlier token counts as less attended, so it is dropped first)."""
    order = received.argsort(dim=1, stable=True)
    return order[:, r:].sort(dim=1).values


@register_reducer("fastv")
class FastV(Reducer):
    """Drops the ``r`` tokens with the least attention received (mean over heads and queries)."""

    need = "attn"          # the head-mean map of the block
    match_on = None        # no similarity
    tracks_sizes = False   # pruning: survivors are gathered

    @classmethod
    def selection_flops(cls, dims, num_tokens: int, removed: int) -> int:
        return num_tokens * num_tokens   # the column sums of the T x T map (sorting is not counted)

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        attn = self.needed(aux, "attn", layer)
        received = attention_received(attn)
        keep = least_attended_keep(received, r)
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": x.shape[1], "r_merge": r, "keep_idx": keep,
                                "received": received})
        return apply_keep(keep, x, state)
