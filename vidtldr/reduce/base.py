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
    """Base class: the identity (``merge=none``)."""

    name = "none"

    def __init__(self, schedule: list | None = None):
        self.schedule = list(schedule) if schedule is not None else []

    def needs(self, layer: int, num_tokens: int) -> Need:
        return None

    def reduce(self, x: torch.Tensor, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        return x

    def describe(self) -> dict:
        return {"name": self.name, "r": list(self.schedule)}


REDUCERS: dict[str, Callable[..., Reducer]] = {"none": Reducer}


def register_reducer(name: str):
    """Class decorator: make a reducer selectable as ``merge=<name>``."""

    def wrap(cls):
        cls.name = name
        REDUCERS[name] = cls
        return cls

    return wrap
