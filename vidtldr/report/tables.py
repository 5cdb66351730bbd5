"""The paper's tables as data: which rows each table has, and the numeric long-form DataFrame of
ours vs the paper's numbers (rendered by :mod:`vidtldr.report.render`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from vidtldr.report.labels import ACTION_DATASETS, FT_DATASETS, QA_DATASETS, RETRIEVAL_METRICS, ZS_DATASETS, task_of
from vidtldr.report.reference import paper_value, reference_gflops
from vidtldr.report.rows import num, pick_run

NOT_RUN = "not run"


@dataclass(frozen=True)
class TableSpec:
    """One paper table: which rows exist and which metrics are compared."""

    name: str
    title: str
    setting: str
    datasets: tuple[str, ...]
    backbones: tuple[str, ...]
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    reference_tables: tuple[str, ...]  # where to look up the paper's value, in order
    baseline_label: str = "UMT"        # how the unreduced rows (method none) are named
    # A second reference beside the paper's, in its own column: (reference table, column label); the
    # action table's Hugging Face model-card figures (method none only, where a card could be read).
    card_reference: tuple[str, str] | None = None
    note: str = ""                     # said under the table, after the legend


TABLES: dict[str, TableSpec] = {
    "finetuned": TableSpec("finetuned", "Fine-tuned text-video retrieval (ITM re-ranked), 12 frames",
                           "finetuned", FT_DATASETS, ("umt_b", "umt_l"), ("none", "vidtldr"),
                           RETRIEVAL_METRICS, ("finetuned",)),
    "zeroshot": TableSpec("zeroshot", "Zero-shot text-video retrieval (ITM re-ranked), 4 frames",
                          "zeroshot", tuple(ZS_DATASETS), ("umt_b", "umt_l"),
                          ("none", "vidtldr"), RETRIEVAL_METRICS, ("zeroshot",)),
    "qa": TableSpec("qa", "Video question answering (exact-match accuracy), 12 frames", "finetuned",
                    (*QA_DATASETS, "anet_qa"), ("umt_b", "umt_l"), ("none", "vidtldr"), ("acc",), ("qa",)),
    "fig1": TableSpec("fig1", "UMT-B: UMT vs ToMe vs vid-TLDR (paper Figure 1); R@1 = mean of T2V and V2T R@1",
                      "finetuned", FT_DATASETS + QA_DATASETS, ("umt_b",),
                      ("none", "tome", "vidtldr"), ("r1_mean", "acc"), ("fig1",)),
    "action": TableSpec("action", "Action recognition with VideoMAE (16 frames; Kinetics-400 5 clips x 3 crops, SSv2 "
                        "2 x 3); GFLOPs per view; vid-TLDR and ToMe at merge.r=umt_fractions (vid-TLDR's UMT "
                        "schedules as fractions: none was published for VideoMAE)",
                        "finetuned", ACTION_DATASETS, ("videomae_b", "videomae_l"), ("none", "vidtldr", "tome"),
                        ("top1", "top5"), ("action",), baseline_label="VideoMAE",
                        card_reference=("action_card", "model card"),
                        note="\"model card\": the top-1 / top-5 that the checkpoint's Hugging Face model card states, "
                             "where one could be read: only VideoMAE-B Kinetics-400 (80.9 / 94.7), from a third-party "
                             "copy of the card (the huggingface.co page was not readable from our machine; the copy "
                             "does not state the test views); no figure for the other three cards. Provenance: "
                             "vidtldr/report/paper_reference.csv, table action_card."),
}


def run_status(run: dict | None) -> str:
    """``not run``, ``complete`` or ``partial (N/M videos|questions)``."""
    if run is None:
        return NOT_RUN
    if run.get("partial"):
        return f"partial ({_count(run.get('n'))}/{_count(run.get('n_total'))} {run.get('limit_unit')})"
    return "complete"


def _count(value: Any) -> str:
    """A whole number, or ``?``: pandas holds a count column as floats once any record lacks it."""
    value = num(value)
    return "?" if value is None or math.isinf(value) else f"{value:.0f}"


def _delta(ours: float | None, paper: float | None) -> float | None:
    return None if ours is None or paper is None else round(ours - paper, 2)


def row_metrics(spec: TableSpec, dataset: str) -> list[str]:
    """The table's metrics that apply to a dataset: the columns its task fills."""
    from vidtldr.tasks.base import get_task

    columns = get_task(task_of(dataset)).metric_columns
    return [m for m in spec.metrics if m in columns]


def _metric_cells(spec: TableSpec, run: dict | None, ref: pd.DataFrame, dataset: str, backbone: str,
                  method: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for metric in row_metrics(spec, dataset):
        ours = num(run.get(metric)) if run else None
        paper, _ = paper_value(ref, spec.reference_tables, spec.setting, dataset, backbone, method, metric)
        row[metric], row[f"{metric}_paper"], row[f"{metric}_delta"] = ours, paper, _delta(ours, paper)
    return row


def _card_cells(spec: TableSpec, ref: pd.DataFrame, dataset: str, backbone: str, method: str) -> dict[str, Any]:
    """The second reference's value per metric (``<metric>_card``) and its provenance (``card_source``)."""
    if spec.card_reference is None:
        return {}
    row: dict[str, Any] = {"card_source": None}
    for metric in row_metrics(spec, dataset):
        value, source = paper_value(ref, (spec.card_reference[0],), spec.setting, dataset, backbone, method, metric)
        row[f"{metric}_card"] = value
        row["card_source"] = row["card_source"] or source
    return row


def _gflops_cells(spec: TableSpec, run: dict | None, base_run: dict | None, ref: pd.DataFrame, dataset: str,
                  backbone: str, method: str) -> dict[str, Any]:
    """Our GFLOPs, the reduction against the baseline row's run (else the record's own no-merging
    count), and the paper's GFLOPs with its source."""
    gflops = num(run.get("gflops")) if run else None
    base = num(base_run.get("gflops")) if base_run else (num(run.get("gflops_base")) if run else None)
    paper, source = reference_gflops(ref, spec.setting, dataset, backbone, method)
    return {"gflops": gflops,
            "gflops_reduction_pct": round(100.0 * (1 - gflops / base), 1) if gflops is not None and base else None,
            "gflops_paper": paper, "gflops_paper_source": source}


def build_table(spec: TableSpec, runs: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """Numeric long-form table: one row per (dataset, backbone, method), columns ``<metric>``,
    ``<metric>_paper``, ``<metric>_delta`` for each metric, GFLOPs and its reduction."""
    rows = []
    for dataset in spec.datasets:
        for backbone in spec.backbones:
            base_run = pick_run(runs, spec.setting, dataset, backbone, "none", spec.name)
            for method in spec.methods:
                run = pick_run(runs, spec.setting, dataset, backbone, method, spec.name)
                rows.append({"dataset": dataset, "backbone": backbone, "method": method, "run": run_status(run),
                             **_metric_cells(spec, run, ref, dataset, backbone, method),
                             **_card_cells(spec, ref, dataset, backbone, method),
                             **_gflops_cells(spec, run, base_run, ref, dataset, backbone, method),
                             "schedule": run.get("schedule") if run else None,
                             "record": run.get("path") if run else None})
    return pd.DataFrame(rows)


RUNS_COLUMNS = ["dataset_config", "model", "method", "schedule", "num_frames", "k_test", "precision", "videos",
                "videos_total", "partial", "t2v_r1", "v2t_r1", "r1_mean", "itc_t2v_r1", "itc_v2t_r1", "acc",
                "gflops", "created", "path"]


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run as recorded (including tiny-model and partial runs), newest first."""
    if runs.empty:
        return pd.DataFrame(columns=["dataset", "model", "method", "schedule", "run"])
    present = [c for c in RUNS_COLUMNS if c in runs.columns]
    return runs.sort_values("created", ascending=False)[present]
