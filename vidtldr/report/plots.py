"""Accuracy vs GFLOPs from run records, beside the paper's reference points (Figure 1 style).

The table writer (``vidtldr.report.results``) calls :func:`plot_accuracy_vs_gflops` with the DataFrames it
already has: ``runs`` (one row per complete record, ``rows.load_runs``) and ``ref``
(``vidtldr/report/paper_reference.csv``, ``reference.load_reference``). One panel per dataset; x = vision
encoder GFLOPs (paper convention), y = R@1 (mean of T2V and V2T, ITM re-ranked) for retrieval or
accuracy for QA. Filled markers are our runs, hollow ones the paper's numbers; a partial run
(``data.limit``) is drawn with a cross and says so in the legend. Nothing is ever copied from the
paper into "ours": a dataset without a run shows only the paper's points and "no run".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from vidtldr.files import atomic_output
from vidtldr.report.labels import DATASET_LABEL, is_qa
from vidtldr.report.reference import paper_value, reference_gflops
from vidtldr.report.rows import num, pick_run

METHOD_STYLE = {  # colour, marker, label
    "none": ("#555555", "o", "UMT (no reduction)"),
    "tome": ("#1f77b4", "s", "ToMe"),
    "vidtldr": ("#d62728", "D", "vid-TLDR"),
    "random": ("#2ca02c", "^", "random drop"),
}
OTHER_STYLE = ("#9467bd", "v")
POINT_COLUMNS = ["dataset", "method", "source", "metric", "accuracy", "gflops", "partial", "record"]


def _mean_r1(t2v: Optional[float], v2t: Optional[float]) -> Optional[float]:
    return None if t2v is None or v2t is None else (t2v + v2t) / 2


def _run_accuracy(row: dict, dataset: str) -> tuple[Optional[float], str]:
    """(value, metric) of one run: QA accuracy, or R@1 averaged over both directions."""
    if is_qa(dataset):
        return num(row.get("acc")), "acc"
    value = num(row.get("r1_mean"))
    if value is None:
        value = _mean_r1(num(row.get("t2v_r1")), num(row.get("v2t_r1")))
    return value, "r1_mean"


def _paper_point(ref: pd.DataFrame, setting: str, dataset: str, backbone: str, method: str
                 ) -> tuple[Optional[float], Optional[float], str]:
    """(accuracy, gflops, metric) the paper gives for one method, looking in Figure 1 first, then
    in the per-setting tables (R@1 averaged from T2V/V2T there); GFLOPs as the table beside the
    figure shows them (:func:`vidtldr.report.reference.reference_gflops`)."""
    tables = ("fig1", setting, "qa")

    def value(metric: str) -> Optional[float]:
        return paper_value(ref, tables, setting, dataset, backbone, method, metric)[0]

    if is_qa(dataset):
        metric, acc = "acc", value("acc")
    else:
        metric, acc = "r1_mean", value("r1_mean")
        if acc is None:
            acc = _mean_r1(value("t2v_r1"), value("v2t_r1"))
    return acc, reference_gflops(ref, setting, dataset, backbone, method)[0], metric


def accuracy_points(runs: pd.DataFrame, ref: pd.DataFrame, datasets: Sequence[str], backbone: str = "umt_b",
                    setting: str = "finetuned", methods: Sequence[str] = ("none", "tome", "vidtldr"),
                    table: Optional[str] = None) -> pd.DataFrame:
    """Every point the figure shows, one row each (columns ``POINT_COLUMNS``); ``source`` is
    ``ours`` or ``paper``. Points lacking either coordinate are left out."""
    rows = []
    for dataset in datasets:
        for method in methods:
            run = pick_run(runs, setting, dataset, backbone, method, table)  # as the table beside it
            if run is not None:
                acc, metric = _run_accuracy(run, dataset)
                gflops = num(run.get("gflops"))
                if acc is not None and gflops is not None:
                    rows.append({"dataset": dataset, "method": method, "source": "ours", "metric": metric,
                                 "accuracy": acc, "gflops": gflops, "partial": bool(run.get("partial", False)),
                                 "record": run.get("path")})
            acc, gflops, metric = _paper_point(ref, setting, dataset, backbone, method)
            if acc is not None and gflops is not None:
                rows.append({"dataset": dataset, "method": method, "source": "paper", "metric": metric,
                             "accuracy": acc, "gflops": gflops, "partial": False, "record": None})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def _style(method: str) -> tuple[str, str, str]:
    """(colour, marker, legend label) of a method; unknown methods share one style."""
    return METHOD_STYLE.get(method, (*OTHER_STYLE, method))


def _draw_panel(ax, points: pd.DataFrame, dataset: str) -> None:
    """One dataset: filled markers for our runs (a cross when partial), hollow for the paper."""
    for _, p in points.iterrows():
        colour, marker, _ = _style(p["method"])
        if p["source"] == "paper":
            ax.scatter(p["gflops"], p["accuracy"], s=46, marker=marker, facecolors="none",
                       edgecolors=colour, linewidths=1.4, zorder=2)
        else:
            ax.scatter(p["gflops"], p["accuracy"], s=40, marker="X" if p["partial"] else marker,
                       color=colour, zorder=3)
    if not (points["source"] == "ours").any():
        ax.text(0.97, 0.05, "no run", transform=ax.transAxes, ha="right", va="bottom", color="#888888")
    ax.set_title(DATASET_LABEL.get(dataset, dataset))
    ax.set_xlabel("GFLOPs (vision encoder)")
    ax.set_ylabel("accuracy (%)" if is_qa(dataset) else "R@1, mean T2V/V2T (%)")
    ax.grid(alpha=0.3)
    ax.margins(0.15)


def _legend_handles(methods: Sequence[str], any_partial: bool) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_style(m)[0], ls="", marker=_style(m)[1], label=_style(m)[2]) for m in methods]
    handles += [Line2D([], [], color="black", ls="", marker="o", label="ours (filled)"),
                Line2D([], [], color="black", ls="", marker="o", markerfacecolor="none", label="paper (hollow)")]
    if any_partial:
        handles.append(Line2D([], [], color="black", ls="", marker="X", label="ours, partial run"))
    return handles


def save_figure(fig, png: Path, svg: Path) -> None:
    """``fig`` as PNG and SVG, each written atomically (a reader never sees half a figure). The SVG is
    reproducible (no date, a fixed id salt: the same figure gives the same bytes) and keeps its words
    as text, so it can be searched."""
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "vidtldr"}):
        for kind, path in (("png", png), ("svg", svg)):
            with atomic_output(path) as tmp:
                fig.savefig(tmp, format=kind, dpi=120, metadata={"Date": None} if kind == "svg" else None)


def _save(fig, out_stem: Path) -> dict[str, Path]:
    paths = {"png": out_stem.with_suffix(".png"), "svg": out_stem.with_suffix(".svg")}
    save_figure(fig, paths["png"], paths["svg"])
    return paths


def plot_accuracy_vs_gflops(runs: pd.DataFrame, ref: pd.DataFrame, out_stem: str | Path,
                            datasets: Sequence[str], backbone: str = "umt_b", setting: str = "finetuned",
                            methods: Sequence[str] = ("none", "tome", "vidtldr"), title: str = "",
                            ncols: int = 3, table: Optional[str] = None) -> dict[str, Any]:
    """Write ``<out_stem>.png`` and ``<out_stem>.svg``; returns ``{"png": Path, "svg": Path,
    "points": DataFrame}`` (the points drawn, for tests and captions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = accuracy_points(runs, ref, datasets, backbone, setting, methods, table)
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    ncols = max(1, min(ncols, len(datasets)))
    nrows = max(1, math.ceil(len(datasets) / ncols))
    with plt.rc_context({"svg.hashsalt": "vidtldr", "font.size": 8}):  # fixed ids: byte-stable SVG
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.7 * nrows + 0.8), squeeze=False)
        for i, dataset in enumerate(datasets):
            _draw_panel(axes[i // ncols][i % ncols], points[points["dataset"] == dataset], dataset)
        for j in range(len(datasets), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        handles = _legend_handles(methods, bool(points["partial"].any()))
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.06, 1, 0.95 if title else 1))
        paths = _save(fig, out_stem)
        plt.close(fig)
    return {**paths, "points": points}
