"""Random token dropping: the no-information baseline for token reduction.

At each block with a non-zero schedule entry, ``r`` tokens chosen uniformly at random (without
replacement, independently per sample) are removed; survivors keep their order. No sizes are
created, so attention stays unweighted. Reproducible: the generator for a block is seeded from
``(seed, layer)``, so the same batch gives the same result on every forward (the draw for a sample
does depend on its position in the batch).
"""

from __future__ import annotations

import torch

from vidtldr.reduce.base import ReductionState, Reducer, register_reducer
from vidtldr.reduce.schedule import tokens_to_remove


def random_keep_indices(batch: int, num_tokens: int, r: int, generator: torch.Generator) -> torch.Tensor:
    """Ascending indices ``[B, T - r]`` of the tokens that survive dropping ``r`` at random."""
    if not 0 <= r <= num_tokens:
        raise ValueError(f"cannot drop {r} of {num_tokens} tokens")
    noise = torch.rand(batch, num_tokens, generator=generator)
    keep = noise.argsort(dim=1)[:, r:]
    return keep.sort(dim=1).values


@register_reducer("random")
class RandomDrop(Reducer):
    """Drops ``tokens_to_remove(entry, T)`` random tokens per block (clamped to ``T // 2`` like the
    merging reducers, so schedules are comparable)."""

    def __init__(self, schedule: list | None = None, seed: int = 0):
        super().__init__(schedule)
        self.seed = int(seed)

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed}

    def _generator(self, layer: int) -> torch.Generator:
        # A fresh generator per (seed, layer): no state survives between forwards.
        return torch.Generator().manual_seed(self.seed * 1_000_003 + layer)

    def reduce(self, x: torch.Tensor, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        if layer >= len(self.schedule):
            return x
        batch, n_tok, channels = x.shape
        r = tokens_to_remove(self.schedule[layer], n_tok)
        if r == 0:
            return x
        keep = random_keep_indices(batch, n_tok, r, self._generator(layer)).to(x.device)
        if state.trace_source:
            if state.source is None:
                state.source = torch.eye(n_tok, device=x.device)[None].expand(batch, n_tok, n_tok)
            state.source = state.source.gather(1, keep[..., None].expand(-1, -1, state.source.shape[-1]))
        if state.size is not None:  # only if another mechanism created sizes; keep them aligned
            state.size = state.size.gather(1, keep[..., None])
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": n_tok, "r_merge": r, "keep_idx": keep})
        return x.gather(1, keep[..., None].expand(-1, -1, channels))
