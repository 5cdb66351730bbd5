"""The contract between a vision transformer and a token reducer.

A ViT block calls its reducer once, between the attention residual and the MLP::

    need = reducer.needs(layer, num_tokens)          # what the attention must also compute
    x, aux = x + attn(norm1(x), state.size, need)   # aux holds what was asked for
    x = reducer.reduce(x, layer, state, aux)
    x = x + mlp(norm2(x))

Reducers are stateless apart from their schedule; everything that lives for one forward pass
(token sizes, provenance, per-layer trace, token counts) is in a :class:`ReductionState` that the
encoder creates at the start of each forward. Reducers never import models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch

from vidtldr.reduce.schedule import tokens_to_remove

# What a reducer may ask the attention module to compute at a block:
#   "neg_entropy": per-query sum_j P_ij ln P_ij of the head-mean, pre-size-bias softmax  -> [B, T, 1]
#   "attn":        the head-mean pre-size-bias softmax itself                              -> [B, T, T]
#   "keys":        head-mean keys (ToMe's matching metric)                                 -> [B, T, head_dim]
Need = Optional[Literal["neg_entropy", "attn", "keys"]]


@dataclass
class ReductionState:
    """Per-forward state shared by all blocks of one encoder forward."""

    size: Optional[torch.Tensor] = None  # [B, T, 1] token sizes; None until the first merge
    source: Optional[torch.Tensor] = None  # [B, T, N0] provenance; only when trace_source
    trace_source: bool = False
    record_trace: bool = False  # keep per-layer debug tensors (merge indices, scores) in `trace`
    trace: list = field(default_factory=list)
    token_counts: list = field(default_factory=list)  # entering block 0, then after each block


class Reducer:
    """Base class and the identity (``merge=none``, which ignores any schedule).

    Subclasses set ``need`` (what the attention must compute at blocks that remove tokens) and
    implement :meth:`remove`; the schedule lookup, the no-op blocks and the per-forward state
    bookkeeping that every reducer shares live here.
    """

    name = "none"
    need: Need = None

    def __init__(self, schedule: list | None = None):
        self.schedule = list(schedule) if schedule is not None else []

    def tokens_removed(self, layer: int, num_tokens: int) -> int:
        """How many tokens block ``layer`` removes from ``num_tokens`` (0 past the schedule)."""
        if type(self).remove is Reducer.remove or layer >= len(self.schedule):
            return 0
        return tokens_to_remove(self.schedule[layer], num_tokens)

    def needs(self, layer: int, num_tokens: int) -> Need:
        return self.need if self.tokens_removed(layer, num_tokens) > 0 else None

    def reduce(self, x: torch.Tensor, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        r = self.tokens_removed(layer, x.shape[1])
        return x if r == 0 else self.remove(x, r, layer, state, aux)

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        """Remove ``r`` (> 0) tokens from ``x`` [B, T, C], updating ``state``; the identity here."""
        return x

    def describe(self) -> dict:
        return {"name": self.name, "r": list(self.schedule)}


def apply_merge(match, x: torch.Tensor, state: ReductionState, merge_wavg, merge_source) -> torch.Tensor:
    """Shared tail of the merging reducers: provenance, then the size-weighted merge of ``x``.

    ``merge_wavg(match, x, size) -> (x, size)`` and ``merge_source(match, x, source) -> source``
    are the reducer's own rules; sizes start at ones (dtype of ``x``) at the first merge."""
    if state.trace_source:
        state.source = merge_source(match, x, state.source)
    if state.size is None:
        state.size = torch.ones_like(x[..., 0, None])
    x, state.size = merge_wavg(match, x, state.size)
    return x


REDUCERS: dict[str, Callable[..., Reducer]] = {"none": Reducer}


def register_reducer(name: str):
    """Class decorator: make a reducer selectable as ``merge=<name>``."""

    def wrap(cls):
        cls.name = name
        REDUCERS[name] = cls
        return cls

    return wrap
