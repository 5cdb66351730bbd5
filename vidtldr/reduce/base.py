"""The contract between a vision transformer and a token reducer.

A ViT block calls its reducer once, between the attention residual and the MLP::

    need = reducer.needs(layer, num_tokens)          # what the attention must also compute
    x, aux = x + attn(norm1(x), state.size, need)   # aux holds what was asked for
    x = reducer.reduce(x, layer, state, aux)
    x = x + mlp(norm2(x))

Reducers are stateless apart from their schedule; everything that lives for one forward pass
(token sizes, provenance, per-layer trace, token counts) is in a :class:`ReductionState` that the
encoder creates at the start of each forward. Reducers never import models.

A reducer describes itself with three class attributes, from which everything outside the forward
(FLOP counts, benchmarks, tools) is derived, never from its name:

* ``need``: what the attention must compute at blocks that remove tokens (see :data:`Need`);
* ``match_on``: the metric a bipartite matcher compares, ``"hidden"`` (the block's hidden state,
  width C), ``"keys"`` (head-mean keys, width head_dim; requires ``need = "keys"``) or ``None``
  (no similarity is computed, e.g. random dropping);
* ``tracks_sizes``: the reducer averages tokens weighted by how many patches each holds and keeps
  those sizes, so later blocks add ``log(size)`` to their attention logits.

Two class methods complete the description where a reducer's own work differs from bipartite
matching (the cost reads them, never the name):

* ``similarity_shape(num_tokens, removed)``: rows x columns of the similarity matrix it computes at
  a block (width from ``match_on``); by default ToMe's halves, ``ceil(T/2) x floor(T/2)``;
* ``selection_flops(dims, num_tokens, removed)``: true FLOPs of its own scoring and selection that
  ``need``, the similarity and the merge do not cover (0 by default).

An input-level reducer (``input_level = True``, e.g. run-length tokenization) acts once, after the
patch and position embedding and before block 0::

    x = reducer.reduce_input(x, state, {"video": video [B, 3, T, H, W], "grid": (t, h, w)})

``input_removed(num_tokens, per_step)`` says how many tokens it removes there (exact for a fixed budget, an
upper bound for a content-adaptive one), ``input_flops(dims, num_tokens, removed)`` what deciding
costs. The in-block hook then sees the reduced sequence.

``stochastic`` (default False) says the reducer draws at random from its ``seed`` keyword, so a
comparison runs it over several seeds.

A new reducer is one module under ``vidtldr/reduce/`` with a :class:`Reducer` subclass decorated
with ``@register_reducer("name")``; :func:`reducer_class` imports every module of the package
(there is no list to edit), so ``merge=name`` finds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch

from vidtldr.reduce.schedule import tokens_to_remove

# What a reducer may ask the attention module to compute at a block:
#   "neg_entropy": per-query sum_j P_ij ln P_ij of the head-mean, pre-size-bias softmax  -> [B, T, 1]
#   "attn":        the head-mean pre-size-bias softmax itself                              -> [B, T, T]
#   "keys":        head-mean keys (ToMe's matching metric)                                 -> [B, T, head_dim]
#   "update":      nothing extra from the attention (SDPA); the block passes what its attention
#                  added to the residual stream                                             -> [B, T, C]
Need = Optional[Literal["neg_entropy", "attn", "keys", "update"]]
NEEDS = (None, "neg_entropy", "attn", "keys", "update")
#: What a matching reducer compares: the hidden state, head-mean keys, or nothing.
MatchOn = Optional[Literal["hidden", "keys"]]
MATCH_ON = (None, "hidden", "keys")


@dataclass
class ReductionState:
    """Per-forward state shared by all blocks of one encoder forward."""

    size: Optional[torch.Tensor] = None  # [B, T, 1] token sizes; None until the first merge
    source: Optional[torch.Tensor] = None  # [B, T, N0] provenance; only when trace_source
    trace_source: bool = False
    record_trace: bool = False  # keep per-layer debug tensors (merge indices, scores) in `trace`
    trace: list = field(default_factory=list)
    token_counts: list = field(default_factory=list)  # entering block 0, then after each block
    embedded_tokens: Optional[int] = None  # out of the patch embedding (before any input-level reducer)


class Reducer:
    """Base class and the identity (``merge=none``, which ignores any schedule).

    Subclasses set ``need``, ``match_on`` and ``tracks_sizes`` (module docstring) and implement
    :meth:`remove`; the schedule lookup, the no-op blocks and the per-forward state bookkeeping
    that every reducer shares live here.
    """

    name = "none"
    need: Need = None
    match_on: MatchOn = None
    tracks_sizes: bool = False
    # Fused execution reproduces the materialized (official) execution's decisions: the blocks up to
    # the last one that removes tokens run the materialized arithmetic. False for a reducer that has
    # no official execution to match and should keep SDPA wherever it asks nothing of the attention.
    exact_decisions: bool = True
    # Acts once before block 0 (reduce_input), not inside the blocks.
    input_level: bool = False
    # The token count depends on the content (rlt's threshold form): one video per forward, GFLOPs
    # counted per video from the counts each ran (an instance property where a setting decides).
    adaptive: bool = False
    # The reducer draws at random (seeded by its ``seed`` keyword): a fair comparison runs it over
    # several seeds and reports their mean and spread (``vidtldr compare``), never one lucky draw.
    stochastic: bool = False

    def __init__(self, schedule: list | None = None):
        self.schedule = list(schedule) if schedule is not None else []

    def tokens_removed(self, layer: int, num_tokens: int) -> int:
        """How many tokens block ``layer`` removes from ``num_tokens`` (0 past the schedule)."""
        if type(self).remove is Reducer.remove or layer >= len(self.schedule):
            return 0
        return tokens_to_remove(self.schedule[layer], num_tokens)

    def reducing_blocks(self, num_tokens: int) -> list[int]:
        """The blocks that remove tokens in a forward entering block 0 with ``num_tokens`` tokens
        (each block's count follows from the earlier ones; an entry that rounds to 0 removes none)."""
        blocks = []
        for layer in range(len(self.schedule)):
            removed = self.tokens_removed(layer, num_tokens)
            if removed > 0:
                blocks.append(layer)
                num_tokens -= removed
        return blocks

    def needs(self, layer: int, num_tokens: int) -> Need:
        return self.need if self.tokens_removed(layer, num_tokens) > 0 else None

    def reduce(self, x: torch.Tensor, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        r = self.tokens_removed(layer, x.shape[1])
        return x if r == 0 else self.remove(x, r, layer, state, aux)

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        """Remove ``r`` (> 0) tokens from ``x`` [B, T, C], updating ``state``; the identity here."""
        return x

    def needed(self, aux: dict, key: str, layer: int) -> torch.Tensor:
        """``aux[key]``, which :meth:`needs` asked the block's attention for; its absence is a bug in
        the block (a ValueError naming the reducer, the block and what ``aux`` holds), not a user's mistake."""
        value = aux.get(key)
        if value is None:
            raise ValueError(f"{self.name} at block {layer}: aux has no {key!r} (got keys {sorted(aux)}); "
                             "the attention must compute what needs() asks for")
        return value

    def describe(self) -> dict:
        return {"name": self.name, "r": list(self.schedule)}

    # -- self-description of the reducer's own work (read by vidtldr/cost/vision.py) --------------

    @classmethod
    def similarity_shape(cls, num_tokens: int, removed: int) -> tuple[int, int]:
        """Rows x columns of the similarity matrix computed at a block that removes ``removed`` of
        ``num_tokens`` tokens (only read when ``match_on`` is set): the bipartite halves."""
        return (num_tokens + 1) // 2, num_tokens // 2

    @classmethod
    def selection_flops(cls, dims, num_tokens: int, removed: int) -> int:
        """True FLOPs (per sample) of scoring/selection not covered by need, similarity or merge."""
        return 0

    # -- input-level hook (before block 0) ---------------------------------------------------------

    def input_removed(self, num_tokens: int, per_step: int) -> int:
        """Tokens the input-level hook removes from ``num_tokens`` embedded tokens, ``per_step`` of
        them per tubelet step (0: none; for a content-adaptive reducer, the most it may remove)."""
        return 0

    def input_flops(self, dims, num_tokens: int, removed: int) -> int:
        """True FLOPs (per sample) of deciding what the input-level hook removes."""
        return 0

    def reduce_input(self, x: torch.Tensor, state: ReductionState, aux: dict) -> torch.Tensor:
        """Called once after the patch + position embedding, before block 0; the identity here."""
        return x


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


def apply_keep(keep: torch.Tensor, x: torch.Tensor, state: ReductionState) -> torch.Tensor:
    """Shared tail of the pruning reducers: keep the tokens ``keep`` ``[B, T']`` (indices into the
    current order) of ``x`` and of whatever the state tracks per token (sizes, provenance)."""
    batch, n_tok, channels = x.shape
    if state.trace_source:
        if state.source is None:
            state.source = torch.eye(n_tok, device=x.device)[None].expand(batch, n_tok, n_tok)
        state.source = state.source.gather(1, keep[..., None].expand(-1, -1, state.source.shape[-1]))
    if state.size is not None:  # sizes created by another reducer (a composition) stay aligned
        state.size = state.size.gather(1, keep[..., None])
    return x.gather(1, keep[..., None].expand(-1, -1, channels))


REDUCERS: dict[str, type[Reducer]] = {"none": Reducer}


def check_contract(cls: type) -> None:
    """Raise ``TypeError`` naming the class and attribute when ``cls`` breaks the reducer contract."""
    where = f"{cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else repr(cls)
    if not (isinstance(cls, type) and issubclass(cls, Reducer)):
        raise TypeError(f"{where}: a registered reducer must subclass vidtldr.reduce.base.Reducer")
    if cls.need not in NEEDS:
        raise TypeError(f"{where}.need = {cls.need!r}; expected one of {NEEDS}")
    if cls.match_on not in MATCH_ON:
        raise TypeError(f"{where}.match_on = {cls.match_on!r}; expected one of {MATCH_ON}")
    if cls.match_on == "keys" and cls.need != "keys":
        raise TypeError(f"{where}: match_on = 'keys' needs need = 'keys' (the attention computes the keys), "
                        f"got need = {cls.need!r}")
    if not isinstance(cls.tracks_sizes, bool):
        raise TypeError(f"{where}.tracks_sizes = {cls.tracks_sizes!r}; expected True or False")
    if not isinstance(cls.input_level, bool):
        raise TypeError(f"{where}.input_level = {cls.input_level!r}; expected True or False")
    if not isinstance(cls.stochastic, bool):
        raise TypeError(f"{where}.stochastic = {cls.stochastic!r}; expected True or False")


def register_reducer(name: str):
    """Class decorator: make a reducer selectable as ``merge=<name>`` (its contract is checked)."""

    from vidtldr.registry import registrar

    return registrar(REDUCERS, "reducer", name, check_contract)


def discover_reducers() -> dict[str, type[Reducer]]:
    """Import every module of ``vidtldr.reduce`` (registering the reducers they define) and return
    the registry. An import error in a reducer module is raised, not hidden."""
    from vidtldr.registry import import_plugins

    import_plugins(__name__.rsplit(".", 1)[0])
    return dict(REDUCERS)


def reducer_class(name: str) -> type[Reducer]:
    """The registered reducer class named ``name``; a ConfigError lists the known names. Compositions
    ``A+B`` are resolved one level up (:func:`vidtldr.reduce.reducer_class`), so this module never
    imports :mod:`vidtldr.reduce.chain`, which builds on it."""
    from vidtldr.errors import ConfigError

    known = discover_reducers()
    if name not in known:
        raise ConfigError(f"merge.name: unknown reducer {name!r}; available: {sorted(known)}")
    return known[name]
