"""VisionZip at a block: keep the dominant tokens, merge the rest into a few contextual ones.

VisionZip (Yang et al., CVPR 2025) shrinks the output of a CLIP-style image encoder to a few
"dominant" tokens, those that receive the most attention, plus a few "contextual" tokens that
summarise the others by similarity. Applied here at any block of the video encoder (no CLS token):

1. attention received by each token = its column of the block's head-mean softmax map (before any
   size bias), averaged over every query; the ``K`` tokens that receive the most are dominant
   (ties: the earlier token);
2. of the other ``T - K`` tokens (in their order), ``M`` evenly spaced ones are contextual targets
   (every ``(T - K) // M``-th, starting with the first);
3. every remaining token joins the target whose hidden state is most similar (cosine), by a
   size-weighted average; sizes feed proportional attention in later blocks.

Output order: the dominant tokens (ascending), then the contextual ones.

Budget: the schedule's ``r`` removes ``r`` tokens, so ``K + M = T - r`` tokens are kept, split as
VisionZip's published operating points split them (54 + 10 of 64, 108 + 20 of 128, 162 + 30 of
192): ``M = round(5 (T - r) / 32)`` (at least 1) contextual and ``K = T - r - M`` dominant. Then
exactly the ``r`` non-dominant, non-target tokens are merged. VisionZip compares head-mean keys for
the contextual merge; here the hidden states, because a block computes one extra thing for its
reducer and this one needs the attention map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vidtldr.reduce.base import ReductionState, Reducer, apply_merge, register_reducer
from vidtldr.reduce.fastv import attention_received
from vidtldr.reduce.tome import tome_merge_source, tome_merge_wavg


def contextual_count(kept: int) -> int:
    """Contextual tokens among ``kept``: VisionZip's 10 of 64, rounded half up, at least 1."""
    return max(1, (kept * 10 + 32) // 64)


@dataclass
class ZipMatch:
    """Indices into the current tokens: ``dominant`` ``[B, K]``, ``targets`` ``[B, M]``,
    ``others`` ``[B, r]`` and, per other token, its target ``assign`` ``[B, r]`` (into targets)."""

    dominant: torch.Tensor
    targets: torch.Tensor
    others: torch.Tensor
    assign: torch.Tensor

    def merge(self, t: torch.Tensor, mode: str) -> torch.Tensor:
        """``[B, T, D] -> [B, K + M, D]``: dominant rows, then targets with their others reduced in."""
        d = t.shape[-1]

        def rows(idx):
            return t.gather(1, idx[..., None].expand(-1, -1, d))

        ctx = rows(self.targets).scatter_reduce(1, self.assign[..., None].expand(-1, -1, d), rows(self.others),
                                                reduce=mode, include_self=True)
        return torch.cat([rows(self.dominant), ctx], dim=1)


def zip_match(x: torch.Tensor, received: torch.Tensor, n_dom: int, n_ctx: int) -> ZipMatch:
    """VisionZip's choice of ``n_dom`` dominant and ``n_ctx`` contextual tokens among the tokens ``x``
    ``[B, T, C]`` given the attention each receives ``[B, T]`` (module docstring)."""
    n_tok = x.shape[1]
    if n_dom < 0 or n_ctx < 1 or n_dom + n_ctx > n_tok:
        raise ValueError(f"cannot keep {n_dom} dominant and {n_ctx} contextual of {n_tok} tokens")
    with torch.no_grad():
        order = received.argsort(dim=1, descending=True, stable=True)
        dominant = order[:, :n_dom].sort(dim=1).values
        rest = order[:, n_dom:].sort(dim=1).values                    # [B, r + M], in token order
        step = max(1, rest.shape[1] // n_ctx)
        at = torch.arange(0, n_ctx * step, step, device=x.device)
        is_target = torch.zeros(rest.shape[1], dtype=torch.bool, device=x.device)
        is_target[at] = True
        targets, others = rest[:, is_target], rest[:, ~is_target]
        m = x / x.norm(dim=-1, keepdim=True)
        pick = m.gather(1, others[..., None].expand(-1, -1, m.shape[-1]))
        into = m.gather(1, targets[..., None].expand(-1, -1, m.shape[-1]))
        assign = (pick @ into.transpose(-1, -2)).argmax(dim=-1)         # [B, r]
    return ZipMatch(dominant=dominant, targets=targets, others=others, assign=assign)


@register_reducer("visionzip")
class VisionZip(Reducer):
    """Keeps the ``K`` most attended tokens and merges the rest into ``M`` contextual tokens."""

    need = "attn"          # attention received (head-mean map)
    match_on = "hidden"    # the contextual merge compares hidden states (width C)
    tracks_sizes = True    # size-weighted contextual tokens; proportional attention afterwards

    @classmethod
    def similarity_shape(cls, num_tokens: int, removed: int) -> tuple[int, int]:
        return removed, contextual_count(num_tokens - removed)   # merged tokens x targets

    @classmethod
    def selection_flops(cls, dims, num_tokens: int, removed: int) -> int:
        return num_tokens * num_tokens   # attention received: column sums of the T x T map

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        attn = self.needed(aux, "attn", layer)
        n_tok = x.shape[1]
        n_ctx = contextual_count(n_tok - r)
        match = zip_match(x, attention_received(attn), n_tok - r - n_ctx, n_ctx)
        x = apply_merge(match, x, state, tome_merge_wavg, tome_merge_source)
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": n_tok, "r_merge": r, "dominant_idx": match.dominant,
                                "target_idx": match.targets, "other_idx": match.others, "assign_idx": match.assign})
        return x
