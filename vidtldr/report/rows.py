"""Run records -> one numeric row per run, and which run stands for a paper-table row.

A record fills a paper row only if it was run with that row's settings: exactly what the table's
plan (:mod:`vidtldr.report.plan`) runs for it, resolved like a real run. Everything here works on
plain dicts and DataFrames; rendering is :mod:`vidtldr.report.render`."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from vidtldr.errors import VidtldrError
from vidtldr.run.record import find_records, read_record
from vidtldr.tasks.base import discover_tasks
from vidtldr.tasks.metrics import number

#: Precisions a paper row accepts: the fp32 reference and the official evaluation's CUDA fp16 autocast.
PAPER_PRECISIONS = ("fp32", "fp16")
#: Settings copied from ``record["resolved"]`` that decide whether a run stands for a paper row.
RESOLVED_SETTINGS = ("num_frames", "k_test", "max_txt_l", "max_q_len", "max_a_len", "precision", "data_source")


num = number  # a finite-or-inf float, or None for a missing / non-numeric / NaN value


def _identity(record: dict) -> dict[str, Any]:
    ident = record.get("run", {})
    return {"setting": ident.get("setting"), "dataset": ident.get("dataset_base"),
            "dataset_config": ident.get("dataset"), "backbone": ident.get("backbone"),
            "model": ident.get("model"), "method": ident.get("merge"), "task": ident.get("task"),
            # dataset key paper_row (records from before it: their dataset_base alone decided)
            "paper_row": bool(ident.get("paper_row", True)),
            "schedule": ident.get("schedule"), "partial": bool(record.get("partial", False)),
            "status": record.get("status"), "created": record.get("created"), "path": record.get("_path")}


def _counts(record: dict) -> dict[str, Any]:
    counts = record.get("counts") or {}
    task = discover_tasks().get(str((record.get("run") or {}).get("task")))
    # What data.limit counts: the task says (videos for retrieval, questions for QA).
    unit = task.limit_unit if task is not None else ("questions" if "questions" in counts else "videos")
    return {"videos": counts.get("videos"), "videos_total": counts.get("videos_total"),
            "limit_unit": unit, "n": counts.get(unit), "n_total": counts.get(f"{unit}_total")}


def _settings(record: dict) -> dict[str, Any]:
    resolved = record.get("resolved") or {}
    config = record.get("config") or {}
    ev = config.get("eval") or {}
    row = {key: resolved.get(key) for key in RESOLVED_SETTINGS}
    if resolved.get("views") is not None:  # tasks with test views (action recognition): they decide the row too
        row["views"] = resolved["views"]
    row["checkpoint_file"] = Path(resolved["checkpoint"]).name if resolved.get("checkpoint") else None
    row["explicit_checkpoint"] = (config.get("model") or {}).get("checkpoint")
    row["token_store_dtype"] = ev.get("token_store_dtype", "fp32")
    row["attention"] = ev.get("attention", "fused")
    return row


def run_row(record: dict) -> dict:
    """Flatten one record into the numbers the tables use (ITM-reranked retrieval metrics, the
    ITC-only ones with an ``itc_`` prefix, QA accuracy, GFLOPs) and the settings that decide
    whether it stands for a paper row (:func:`settings_mismatch`)."""
    metrics = record.get("metrics") or {}
    row = {**_identity(record), **_counts(record)}
    tasks = discover_tasks()
    # Each task names its own columns; a record that does not say its task is read by every task
    # (each fills only the columns whose metrics the record holds).
    for task in [tasks[row["task"]]] if row["task"] in tasks else tasks.values():
        row.update(task().table_row(metrics))
    gflops = record.get("gflops") or {}
    row["gflops"] = num(gflops.get("paper"))
    row["gflops_base"] = num(gflops.get("base_paper"))
    row.update(_settings(record))
    return row


def load_runs(roots: Iterable[str | Path]) -> pd.DataFrame:
    """One row per finished record under ``roots`` (failed or running records are ignored)."""
    rows = []
    for path in find_records(roots):
        try:
            record = read_record(path)
        except (OSError, ValueError) as exc:
            raise VidtldrError(f"cannot read run record {path}: {exc}") from None
        if record.get("status") == "complete":
            rows.append(run_row(record))
    return pd.DataFrame(rows)


def resolve_row_settings(table: str, dataset: str, backbone: str, method: str) -> dict | None:
    """What a run must have been run with to stand for one row of a paper table: exactly what
    ``make table-<table>`` runs for it (:func:`vidtldr.report.plan.plan`, resolved like a real run):
    the schedule (published vid-TLDR, the ToMe preset or nearest r, none for UMT), the dataset's own
    frames, k_test and text lengths, the default checkpoint file and attention mode. None when the
    table has no planned run for the row (no record can fill it). :func:`row_settings` is the cached
    form every table uses."""
    from vidtldr.config_utils import compose_config
    from vidtldr.report.plan import plan
    from vidtldr.run.runspec import resolve

    planned = [p for p in plan(table, backbones=(backbone,), datasets=(dataset,))
               if p.model == backbone and p.merge == method]
    if not planned:
        return None
    cfg = compose_config(planned[0].all_overrides())
    spec = resolve(cfg)
    return {"schedule": list(spec.schedule), "num_frames": spec.num_frames, "k_test": spec.k_test,
            "max_txt_l": spec.max_txt_l, "max_q_len": spec.max_q_len, "max_a_len": spec.max_a_len,
            "checkpoint_file": Path(spec.checkpoint).name if spec.checkpoint else None,
            "attention": spec.settings.attention, "data_source": spec.data_source,
            **({"views": spec.views} if spec.views is not None else {})}


#: :func:`resolve_row_settings`, cached: composing and resolving a config takes a while and every table
#: asks for each of its rows (an explicit wrapper, not a decorator on the function, so that mutation
#: testing sees the function's body). Callers must not change the dict it returns.
row_settings = functools.lru_cache(maxsize=None)(resolve_row_settings)


def settings_mismatch(run: dict, expected: dict) -> list[str]:
    """``key=ours (expected)`` for every setting in which a run differs from its paper row."""
    out = []
    for key, want in expected.items():
        have = run.get(key)
        if isinstance(have, float) and math.isnan(have):
            have = None  # pandas fills a column's missing values with NaN
        if key == "schedule":
            have = list(have) if isinstance(have, (list, tuple)) else have
        if have != want:
            out.append(f"{key}={have!r} (row: {want!r})")
    if run.get("precision") not in PAPER_PRECISIONS:
        out.append(f"precision={run.get('precision')!r} (row: one of {PAPER_PRECISIONS})")
    if run.get("token_store_dtype") != "fp32":
        out.append(f"token_store_dtype={run.get('token_store_dtype')!r} (row: 'fp32')")
    return out


def pick_run(runs: pd.DataFrame | None, setting: str, dataset: str, backbone: str, method: str,
             table: str | None = None) -> dict | None:
    """The run that stands for a table row: among the records of this row whose settings are the
    row's own (:func:`row_settings` of ``table``; any settings when ``table`` is None), the newest
    complete (non-partial) one, else the newest partial one. Records run with other settings
    (another schedule, frame count, k_test, checkpoint, ...) never fill a paper row; the ``runs``
    table still lists them."""
    if runs is None or runs.empty or not {"setting", "dataset", "backbone", "method"} <= set(runs.columns):
        return None
    match = runs[(runs["setting"] == setting) & (runs["dataset"] == dataset) & (runs["backbone"] == backbone)
                 & (runs["method"] == method)]
    if match.empty:
        return None
    if "paper_row" in match:  # a dataset config with paper_row: false never stands for a paper row
        match = match[match["paper_row"].fillna(True).astype(bool)]
        if match.empty:
            return None
    if table is not None:
        expected = row_settings(table, dataset, backbone, method)
        if expected is None:
            return None
        match = match[[not settings_mismatch(r, expected) for r in match.to_dict("records")]]
        if match.empty:
            return None
    # Records without the field sort as complete / oldest.
    partial = (match["partial"].fillna(False).astype(bool) if "partial" in match
               else pd.Series(False, index=match.index))
    created = match["created"].fillna("").astype(str) if "created" in match else pd.Series("", index=match.index)
    order = pd.DataFrame({"partial": partial, "created": created}).sort_values(
        ["partial", "created"], ascending=[True, False], kind="stable")
    return match.loc[order.index[0]].to_dict()
