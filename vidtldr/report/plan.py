"""The runs behind each paper table, and the check that their inputs exist *before* any of them
starts (one message listing every missing checkpoint / annotation / video folder).

Schedules: fine-tuned vid-TLDR runs use the published schedule (``merge.r=published``). No
zero-shot schedule was published; the zero-shot table runs ``merge.r=umt_fractions``: the *fraction*
of tokens each block removes in the fine-tuned schedule of the same dataset and backbone (our
assumption, recorded in every record's ``schedule_spec`` and ``schedule_note``). A JSON file named by
``VIDTLDR_ZS_SCHEDULES`` (``{"msrvtt/umt_b": [...], ...}``, e.g. schedules chosen by ``python -m vidtldr.tune``) replaces that assumption for the rows
it lists, for the runs and for the table's row matching alike. ToMe (Figure 1) uses the constant-r
presets; MSRVTT and DiDeMo fit no constant r, so they get the nearest one (85 and 95) -- also
recorded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

from vidtldr.errors import ConfigError
from vidtldr.reduce.schedule import UMT_FRACTIONS
from vidtldr.report.labels import ACTION_DATASETS, FT_DATASETS, QA_DATASETS, ZS_DATASETS

TOME_NEAREST = {"msrvtt": 85, "didemo": 95}


@dataclass(frozen=True)
class PlannedRun:
    table: str
    dataset: str
    model: str
    merge: str
    overrides: tuple[str, ...] = field(default_factory=tuple)

    @property
    def run_dir_name(self) -> str:
        return f"{self.table}/{self.dataset}/{self.model}_{self.merge}"

    def all_overrides(self) -> list[str]:
        return [f"dataset={self.dataset}", f"model={self.model}", f"merge={self.merge}", *self.overrides]


ZS_SCHEDULES_ENV = "VIDTLDR_ZS_SCHEDULES"


def tuned_zero_shot_schedules(path: str | os.PathLike | None = None) -> dict[str, list]:
    """``{"<dataset>/<backbone>": merge.r list}`` from ``path`` (default: the file named by
    ``VIDTLDR_ZS_SCHEDULES``; none set = no tuned schedules)."""
    path = path if path is not None else os.environ.get(ZS_SCHEDULES_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{ZS_SCHEDULES_ENV}={path}: cannot read a JSON object ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{ZS_SCHEDULES_ENV}={path}: expected an object {{\"msrvtt/umt_b\": [600, 200], ...}}")
    for key, value in data.items():
        if key.count("/") != 1 or not isinstance(value, list) or not value or \
                not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{ZS_SCHEDULES_ENV}={path}: entry {key!r}: expected \"<dataset>/<backbone>\": "
                              f"[numbers], got {value!r}")
    return data


def _finetuned(backbones: Sequence[str]) -> Iterator[tuple[PlannedRun, str]]:
    for d in FT_DATASETS:
        for b in backbones:
            for m in ("none", "vidtldr"):
                yield PlannedRun("finetuned", d, b, m), d


def _zeroshot(backbones: Sequence[str]) -> Iterator[tuple[PlannedRun, str]]:
    tuned = tuned_zero_shot_schedules()
    for d, cfg in ZS_DATASETS.items():
        for b in backbones:
            # One config per dataset: per-backbone text lengths are resolved from it (runspec).
            yield PlannedRun("zeroshot", cfg, b, "none"), d
            chosen = tuned.get(f"{d}/{b}")
            r = "[" + ",".join(str(f) for f in chosen) + "]" if chosen else UMT_FRACTIONS
            yield PlannedRun("zeroshot", cfg, b, "vidtldr", (f"merge.r={r}",)), d


def _qa(backbones: Sequence[str]) -> Iterator[tuple[PlannedRun, str]]:
    for d in QA_DATASETS:
        for b in backbones:
            for m in ("none", "vidtldr"):
                yield PlannedRun("qa", d, b, m), d
    for b in backbones:  # no published schedule (and the fork's configs do not parse): baseline only
        yield PlannedRun("qa", "anet_qa", b, "none"), "anet_qa"


def _fig1(backbones: Sequence[str]) -> Iterator[tuple[PlannedRun, str]]:
    del backbones  # Figure 1 is UMT-B only
    for d in (*FT_DATASETS, *QA_DATASETS):
        for m in ("none", "tome", "vidtldr"):
            extra = (f"merge.r={TOME_NEAREST[d]}",) if m == "tome" and d in TOME_NEAREST else ()
            yield PlannedRun("fig1", d, "umt_b", m, extra), d


def _action(backbones: Sequence[str]) -> Iterator[tuple[PlannedRun, str]]:
    # No vid-TLDR schedule was published for VideoMAE: vid-TLDR and ToMe alike (the same token
    # counts) run umt_fractions, whose source the dataset (schedule_source) and the model
    # (schedule_backbone) name: Kinetics-400 MSRVTT's, SSv2 SSv2-label's, same backbone size.
    for d in ACTION_DATASETS:
        for b in backbones:
            yield PlannedRun("action", d, b, "none"), d
            for m in ("vidtldr", "tome"):
                yield PlannedRun("action", d, b, m, (f"merge.r={UMT_FRACTIONS}",)), d


PLANS: dict[str, Callable[[Sequence[str]], Iterator[tuple[PlannedRun, str]]]] = {
    "finetuned": _finetuned, "zeroshot": _zeroshot, "qa": _qa, "fig1": _fig1, "action": _action}
#: The backbones a table is run with unless told otherwise.
DEFAULT_BACKBONES = {"action": ("videomae_b", "videomae_l")}


def plan(table: str, backbones: Sequence[str] | None = None, datasets: Iterable[str] | None = None
         ) -> list[PlannedRun]:
    """The runs behind one paper table, restricted to ``datasets`` (paper names such as ``msrvtt``
    or dataset configs such as ``msrvtt_zs``) when given."""
    if table not in PLANS:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(PLANS)}")
    backbones = backbones or DEFAULT_BACKBONES.get(table, ("umt_b", "umt_l"))
    wanted = set(datasets) if datasets else None
    return [run for run, base in PLANS[table](backbones)
            if wanted is None or base in wanted or run.dataset in wanted]


def missing_for(runs: Sequence[PlannedRun], common: Sequence[str] = ()) -> tuple[list[str], dict[str, str]]:
    """Every missing input over all planned runs (each listed once)."""
    from vidtldr.config_utils import compose_config
    from vidtldr.run.inputs import missing_inputs
    from vidtldr.run.runspec import resolve

    missing: dict[str, None] = {}
    help_lines: dict[str, str] = {}
    for run in runs:
        cfg = compose_config([*run.all_overrides(), *common])
        spec = resolve(cfg)
        lines, helps = missing_inputs(spec, spec.dataset_config, tokenizer_problem(spec))
        for line in lines:
            if line.startswith("checkpoint") and spec.checkpoint_from_zoo:
                help_lines.setdefault("zoo", "checkpoints: " + helps["checkpoint"].split(": ", 1)[1]
                                      .replace(Path(spec.checkpoint).name, "<file>"))
            elif line.startswith("checkpoint"):
                help_lines.setdefault("checkpoint", helps["checkpoint"])
            missing.setdefault(line, None)
        if "tokenizer" in helps:
            help_lines["tokenizer"] = helps["tokenizer"]
        if "data" in helps:
            help_lines["data"] = helps["data"]
    return list(missing), help_lines


def tokenizer_problem(spec) -> Optional[str]:
    """Why the run's tokenizer vocabulary cannot be found (None when it can): every evaluation of a
    plan would stop on it, so the plan's check lists it with the other missing inputs. The tokenizer
    is the one the assembler would load for the run."""
    from vidtldr.run.assemble import tokenizer_vocab
    from vidtldr.tasks.base import get_task

    if not get_task(spec.task).uses_text:  # action recognition reads no text
        return None
    try:
        tokenizer_vocab(spec, spec.arch_config())
    except ConfigError as exc:
        return str(exc).split(". ")[0]  # the runner's wording: what is missing, without the advice
    return None


def run_table(table: str, runs_root: str | Path, common: Sequence[str] = (), **plan_args) -> list[dict]:
    """Check every input, then run the table's evaluations (one run directory each)."""
    from vidtldr.errors import MissingFilesError
    from vidtldr.run.runner import run
    from vidtldr.config_utils import compose_config
    from vidtldr.run.inputs import format_missing

    runs = plan(table, **plan_args)
    missing, helps = missing_for(runs, common)
    if missing:
        raise MissingFilesError(format_missing(missing, helps, f"the {table} table ({len(runs)} runs)"))
    records = []
    for planned in runs:
        cfg = compose_config([*planned.all_overrides(), *common])
        records.append(run(cfg, Path(runs_root) / planned.run_dir_name))
    return records
