"""PiToMe: spectrum-preserving token merging (Tran et al., NeurIPS 2024).

ToMe merges whatever pairs are most similar, which can swallow tokens that carry distinct
information. PiToMe first scores how redundant each token is with an *energy* computed on the
token similarity graph and only lets the most redundant tokens merge:

1. cosine similarities ``s_ij`` of the head-mean keys of every pair (``T x T``);
2. energy ``E_i = mean_j f(s_ij - m)`` with ``f`` the ELU (``x`` for ``x > 0``, ``e^x - 1``
   otherwise; alpha 1) and a margin ``m`` that falls with depth: ``m = 0.75 - 0.75 l / L`` at block
   ``l`` of ``L`` (as the authors' ViT patch sets it), so many close neighbours = high energy;
3. the ``2r`` tokens of highest energy may merge, the others are protected; taken in decreasing
   energy, they alternate between a source set (1st, 3rd, ...) and a destination set (2nd, 4th, ...);
4. each source merges into its most similar destination by a size-weighted average (ToMe's), and
   sizes feed proportional attention in later blocks.

Output order: the protected tokens, then the destinations, each in decreasing energy (the authors'
order). Ties in the energy sort go to the earlier token (stable sort). The authors' ViT patch runs a
second variant (energy-ordered ToMe matching over every token) in the first half of the blocks;
this module implements the protected variant above, which is the paper's method, in every block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vidtldr.reduce.base import ReductionState, Reducer, apply_merge, register_reducer
from vidtldr.reduce.tome import tome_merge_source, tome_merge_wavg


def pitome_margin(layer: int, depth: int) -> float:
    """The energy margin at block ``layer`` of ``depth``: 0.75 at the first block, falling linearly."""
    return 0.75 - 0.75 * layer / depth


def energy_score(sim: torch.Tensor, margin: float) -> torch.Tensor:
    """``[B, T]``: mean over ``j`` of ``ELU(s_ij - margin)`` for cosine similarities ``[B, T, T]``."""
    return F.elu(sim - margin, alpha=1.0).mean(dim=-1)


@dataclass
class PiToMeMatch:
    """Indices into the current tokens: ``protected`` ``[B, T - 2r]``, sources ``src`` and
    destinations ``dst`` ``[B, r]``, and each source's destination ``assign`` ``[B, r]`` (into dst)."""

    protected: torch.Tensor
    src: torch.Tensor
    dst: torch.Tensor
    assign: torch.Tensor

    def merge(self, t: torch.Tensor, mode: str) -> torch.Tensor:
        """``[B, T, D] -> [B, T - r, D]``: protected rows, then destinations with sources reduced in."""
        d = t.shape[-1]

        def rows(idx):
            return t.gather(1, idx[..., None].expand(-1, -1, d))

        dst = rows(self.dst).scatter_reduce(1, self.assign[..., None].expand(-1, -1, d), rows(self.src),
                                            reduce=mode, include_self=True)
        return torch.cat([rows(self.protected), dst], dim=1)


def pitome_match(metric: torch.Tensor, r: int, margin: float) -> tuple[PiToMeMatch, torch.Tensor]:
    """PiToMe's choice on ``metric`` ``[B, T, D]`` removing ``r`` (``2r <= T``); also the energies."""
    n_tok = metric.shape[1]
    if not 0 <= 2 * r <= n_tok:
        raise ValueError(f"r must be in [0, T//2] = [0, {n_tok // 2}], got {r}")
    with torch.no_grad():
        m = metric / metric.norm(dim=-1, keepdim=True)
        sim = m @ m.transpose(-1, -2)
        energy = energy_score(sim, margin)
        order = energy.argsort(dim=1, descending=True, stable=True)
        src, dst = order[:, 0:2 * r:2], order[:, 1:2 * r:2]
        pair_sim = sim.gather(1, src[..., None].expand(-1, -1, n_tok)).gather(2, dst[:, None, :].expand(-1, r, -1))
        assign = pair_sim.argmax(dim=-1)
    return PiToMeMatch(protected=order[:, 2 * r:], src=src, dst=dst, assign=assign), energy


@register_reducer("pitome")
class PiToMe(Reducer):
    """Energy-protected bipartite merging on head-mean keys (margin falling with depth)."""

    need = "keys"          # the authors' metric: head-mean keys
    match_on = "keys"
    tracks_sizes = True    # size-weighted average; proportional attention afterwards

    @classmethod
    def similarity_shape(cls, num_tokens: int, removed: int) -> tuple[int, int]:
        return num_tokens, num_tokens   # the whole similarity graph (the energy needs every pair)

    @classmethod
    def selection_flops(cls, dims, num_tokens: int, removed: int) -> int:
        return 3 * num_tokens * num_tokens   # s - m, the ELU and the mean over each row

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        keys = self.needed(aux, "keys", layer)
        n_tok = x.shape[1]
        match, energy = pitome_match(keys, r, pitome_margin(layer, len(self.schedule)))
        x = apply_merge(match, x, state, tome_merge_wavg, tome_merge_source)
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": n_tok, "r_merge": r, "energy": energy,
                                "protected_idx": match.protected, "src_idx": match.src, "dst_idx": match.dst,
                                "assign_idx": match.assign})
        return x
