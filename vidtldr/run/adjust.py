"""Values a run uses that differ from what the user asked: never silent.

Each one is either refused (a ConfigError) or applied with a warning and recorded in
``record["adjusted"]`` as ``{key: {"requested": ..., "effective": ..., "reason": ...}}``:

* ``eval.k_test`` / ``eval.num_frames`` above the model's caps (``model.caps``) are capped;
* schedule entries larger than a block can remove (half its tokens, the bipartite rule) are clamped;
* with a model whose own default is generated data or random weights (``model=tiny``), an explicit
  ``paths.data=`` resolves ``data.source`` to ``real`` and an explicit ``model.checkpoint=``
  ``model.init`` to ``checkpoint``; contradicting them explicitly (``data.source=tiny paths.data=...``)
  is refused.

The resolver (:func:`vidtldr.run.runspec.resolve`) calls these functions; they read the composed
config and never edit it.
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from omegaconf import DictConfig

from vidtldr.config_utils import plain as _plain
from vidtldr.errors import ConfigError

log = logging.getLogger(__name__)


def explicit_keys(overrides: Optional[Iterable[str]] = None) -> set[str]:
    """Config keys the user set on the command line (``overrides``; by default Hydra's, when a Hydra
    command is running)."""
    if overrides is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
        except (ImportError, ValueError):
            overrides = []
    return {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}


# (key the user gave, key it implies, the value it implies, the value that would ignore it)
_IMPLIED = (("paths.data", "data.source", "real", "tiny"),
            ("model.checkpoint", "model.init", "checkpoint", "random"))


def implied_by_explicit(cfg: DictConfig, keys: Iterable[str]) -> dict:
    """The settings that explicitly given ``keys`` imply, as adjustments ``{implied key: {"requested",
    "effective", "reason"}}``: the resolver (:func:`vidtldr.run.runspec.resolve`) runs with the
    effective values; ``cfg`` is only read. Contradicting one explicitly is a ConfigError."""
    keys = set(keys)
    adjusted: dict = {}
    for given, implied, wanted, ignoring in _IMPLIED:
        section, name = implied.split(".")
        current = str(cfg[section].get(name))
        if given not in keys or current != ignoring:
            continue
        if implied in keys:
            raise ConfigError(f"{given}= is ignored with {implied}={ignoring}: drop one of them "
                              f"(or set {implied}={wanted})")
        if given == "model.checkpoint" and not cfg.model.get("checkpoint"):
            continue
        adjusted[implied] = {"requested": ignoring, "effective": wanted,
                             "reason": f"{given} was given; model={cfg.model.name} defaults to {implied}={ignoring}, "
                                       "which would ignore it"}
    return adjusted


def spec_adjustments(cfg: DictConfig, spec, num_tokens: int, per_step: Optional[int] = None) -> dict:
    """Caps and clamps the resolution applied to this run's settings (``per_step``: embedded tokens
    per tubelet step, which an input-level reducer never removes; default: none of them kept)."""
    from vidtldr.reduce.schedule import tokens_to_remove

    adjusted: dict = {}
    caps = _plain(cfg.model.get("caps")) or {}
    for key in ("k_test", "num_frames"):
        given = cfg.eval.get(key)
        if getattr(spec, key) is None:  # not a setting of this task (k_test without texts)
            continue
        requested = int(given) if given is not None else int(cfg.dataset[key])
        effective = int(getattr(spec, key))
        if effective != requested:
            origin = f"eval.{key}" if given is not None else f"dataset {spec.dataset}'s {key}"
            adjusted[f"eval.{key}"] = {"requested": requested, "effective": effective, "explicit": given is not None,
                                       "reason": f"{origin} capped by model={spec.model} (model.caps.{key}="
                                                 f"{caps.get(key)})"}
    if spec.merge != "none" and spec.schedule:
        adjusted.update(_input_adjustment(spec, num_tokens, per_step or 0))
        reducer = spec.reducer()
        if getattr(reducer, "input_level", False) and not reducer.reducing_blocks(num_tokens) \
                and "+" not in spec.merge:
            return adjusted  # merge.r is the input-level budget, not per-block entries
        removed, count = [], num_tokens - reducer.input_removed(num_tokens, per_step or 0)
        for entry in spec.schedule:
            removed.append(tokens_to_remove(entry, count))
            count -= removed[-1]
        if any(entry >= 1 and int(entry) != done for entry, done in zip(spec.schedule, removed, strict=True)):
            adjusted["merge.r"] = {"requested": list(spec.schedule), "effective": removed, "explicit": True,
                                   "reason": "a block removes at most half of its tokens (bipartite matching)"}
    return adjusted


def _input_adjustment(spec, num_tokens: int, per_step: int) -> dict:
    """An input-level budget above what it may remove (every token after the first tubelet step)."""
    reducer = spec.reducer()
    if not getattr(reducer, "input_level", False):
        return {}
    budget = getattr(reducer, "input_budget", None)
    requested = budget(num_tokens) if budget is not None else None
    effective = reducer.input_removed(num_tokens, per_step)
    if requested is None or requested == effective:
        return {}
    return {"merge.input_removed": {"requested": requested, "effective": effective, "explicit": True,
                                    "reason": f"an input-level reducer keeps the first tubelet step ({per_step} tokens)"}}


def report(adjusted: dict) -> None:
    """A warning per value the user set that the run changed (info for the model's own defaults)."""
    for key, change in adjusted.items():
        level = logging.WARNING if change.get("explicit", True) else logging.INFO
        log.log(level, "%s: requested %s, using %s (%s)", key, change["requested"], change["effective"],
                change["reason"])
