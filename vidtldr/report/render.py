"""Renderers: table DataFrames (:mod:`vidtldr.report.tables`) -> human-readable cells, Markdown and
LaTeX; one run record -> the Markdown that ``python -m vidtldr.eval`` prints. No row selection here."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from vidtldr.report.labels import BACKBONE_LABEL, DATASET_LABEL, METHOD_LABEL, METRIC_LABEL, is_qa
from vidtldr.report.rows import num
from vidtldr.report.tables import NOT_RUN, TableSpec

LEGEND = ("Cells: ours (paper, ours − paper). Ours come from run records only; \"not run\" means no "
          "record exists. GFLOPs: vision encoder only, batch 1, one multiply-add = 1 (paper convention); "
          "\"GFLOPs ref\" is the paper's Figure 1 value where printed, else the recount of the published "
          "schedule (see vidtldr/report/paper_reference.csv, column provenance). Baseline (UMT) paper numbers "
          "for fine-tuned/zero-shot retrieval come from the UMT model zoo, which used per-frame pooling.")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt(value: Any, digits: int = 1) -> str:
    if _missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_delta(value: Any) -> str:
    return "" if _missing(value) else f"{value:+.1f}"


def metric_cell(row: pd.Series, metric: str) -> str:
    """``ours (paper, delta)``; ``not run (paper)`` when no record exists."""
    ours = NOT_RUN if row["run"] == NOT_RUN else fmt(row[metric], 2)
    delta = fmt_delta(row[f"{metric}_delta"])
    return f"{ours} ({fmt(row[f'{metric}_paper'])}{', ' + delta if delta else ''})"


def gflops_cells(row: pd.Series) -> dict[str, str]:
    not_run = row["run"] == NOT_RUN
    reduction = row["gflops_reduction_pct"]
    return {"GFLOPs": NOT_RUN if not_run else fmt(row["gflops"]), "GFLOPs ref": fmt(row["gflops_paper"]),
            "reduction": "" if not_run or _missing(reduction) else f"{reduction:.1f}%"}


def display_table(spec: TableSpec, table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable cells: "ours (paper, Δ)"; "not run" where no record exists."""
    out = []
    for _, row in table.iterrows():
        cells = {"Dataset": DATASET_LABEL.get(row["dataset"], row["dataset"]),
                 "Backbone": BACKBONE_LABEL.get(row["backbone"], row["backbone"]),
                 "Method": spec.baseline_label if row["method"] == "none" else METHOD_LABEL.get(row["method"],
                                                                                               row["method"])}
        for metric in spec.metrics:
            if metric in row.index and (metric == "acc") == is_qa(row["dataset"]):
                label = METRIC_LABEL[metric] if spec.name != "fig1" else "R@1 / Acc"
                cells[label] = metric_cell(row, metric)
        if spec.card_reference is not None:
            metrics = [m for m in spec.metrics if f"{m}_card" in row.index]
            values = [row[f"{m}_card"] for m in metrics]
            cells[f"{spec.card_reference[1]} " + " / ".join(METRIC_LABEL[m] for m in metrics)] = \
                "–" if all(_missing(v) for v in values) else " / ".join(fmt(v) for v in values)
        cells.update(gflops_cells(row))
        cells["run"] = row["run"]
        out.append(cells)
    return pd.DataFrame(out).fillna("")


def to_markdown(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row.tolist()) + " |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                  "–": "--", "Δ": r"$\Delta$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame, caption: str) -> str:
    cols = list(df.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{" + "l" * len(cols) + "}",
             r"\toprule", " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for _, row in df.iterrows():
        lines.append(" & ".join(latex_escape(v) for v in row.tolist()) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + latex_escape(caption) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


_RETRIEVAL_HEADER = ("| scores | T2V R@1 | T2V R@5 | T2V R@10 | T2V MdR | V2T R@1 | V2T R@5 | V2T R@10 | V2T MdR "
                     "| mean R |")
_RETRIEVAL_KEYS = ("img_r1", "img_r5", "img_r10", "img_medr", "txt_r1", "txt_r5", "txt_r10", "txt_medr", "r_mean")


def _retrieval_lines(metrics: dict) -> list[str]:
    lines = [_RETRIEVAL_HEADER, "|" + "---|" * 10]
    for name, key in (("ITM re-ranked", "itm"), ("ITC only", "itc")):
        block = metrics.get(key) or {}
        lines.append(f"| {name} | " + " | ".join(fmt(num(block.get(k)), 2) for k in _RETRIEVAL_KEYS) + " |")
    return lines


def _gflops_line(gflops: dict) -> str:
    base = gflops.get("base_paper")
    # the record's reduction_pct comes from the unrounded counts (the 3-decimal GFLOPs shown here
    # would say 19.6% for 19.54%); older records without it fall back to the rounded ones
    pct = gflops.get("reduction_pct")
    if pct is None and base:
        pct = 100 * (1 - gflops["paper"] / base)
    reduction = ""
    if base and pct is not None:
        change = f"{pct:.1f}% fewer" if pct >= 0 else f"{-pct:.1f}% more"
        reduction = f", {change} than without merging ({base:.3g})"
    views = (f" per view; x {gflops['views']} views = {gflops['paper_per_video']:.4g} per video"
             if gflops.get("views") else "")
    return f"\nvision encoder GFLOPs (paper convention): {gflops['paper']:.3g}{views}{reduction}"


def single_run_table(record: dict) -> str:
    """Markdown table of one run's metrics (what ``python -m vidtldr.eval`` prints)."""
    metrics = record.get("metrics") or {}
    lines = _retrieval_lines(metrics) if "itm" in metrics else []
    if "top1" in metrics:
        lines += ["| metric | value |", "|---|---|", f"| top-1 (%) | {fmt(num(metrics['top1']), 2)} |",
                  f"| top-5 (%) | {fmt(num(metrics['top5']), 2)} |",
                  f"| mean per-class top-1 (%) | {fmt(num(metrics.get('mean_class_top1')), 2)} |"]
    if "acc" in metrics:
        lines += ["| metric | value |", "|---|---|", f"| accuracy (%) | {fmt(num(metrics['acc']), 2)} |"]
    gflops = record.get("gflops") or {}
    if gflops.get("paper") is not None:
        lines.append(_gflops_line(gflops))
    return "\n".join(lines) + "\n"
