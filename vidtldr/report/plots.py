"""Accuracy vs GFLOPs from run records, beside the paper's reference points (Figure 1 style).

The table builder (``vidtldr.report.results``) calls :func:`plot_accuracy_vs_gflops` with the DataFrames it
already has: ``runs`` (one row per complete record, ``results.load_runs``) and ``ref``
(``vidtldr/report/paper_reference.csv``, ``results.load_reference``). One panel per dataset; x = vision
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

# results imports this module lazily (write_table), so importing it here is not circular.
from vidtldr.report.results import pick_run

METHOD_STYLE = {  # colour, marker, label
    "none": ("#555555", "o", "UMT (no reduction)"),
    "tome": ("#1f77b4", "s", "ToMe"),
    "vidtldr": ("#d62728", "D", "vid-TLDR"),
    "random": ("#2ca02c", "^", "random drop"),
}
DATASET_LABEL = {
    "msrvtt": "MSRVTT", "msvd": "MSVD", "didemo": "DiDeMo", "anet": "ActivityNet", "lsmdc": "LSMDC",
    "ssv2_label": "SSv2-label", "ssv2_template": "SSv2-template", "msrvtt_qa": "MSRVTT-QA",
    "msvd_qa": "MSVD-QA", "anet_qa": "ActivityNet-QA",
}
POINT_COLUMNS = ["dataset", "method", "source", "metric", "accuracy", "gflops", "partial", "record"]


def _num(value: Any) -> Optional[float]:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def _is_qa(dataset: str) -> bool:
    return dataset.endswith("_qa")


def _run_accuracy(row: dict, dataset: str) -> tuple[Optional[float], str]:
    """(value, metric) of one run: QA accuracy, or R@1 averaged over both directions."""
    if _is_qa(dataset):
        return _num(row.get("acc")), "acc"
    value = _num(row.get("r1_mean"))
    if value is None:
        t2v, v2t = _num(row.get("t2v_r1")), _num(row.get("v2t_r1"))
        value = None if t2v is None or v2t is None else (t2v + v2t) / 2
    return value, "r1_mean"


def _ref_value(ref: pd.DataFrame, tables: Sequence[str], setting: str, dataset: str, backbone: str,
               method: str, metric: str) -> Optional[float]:
    if ref is None or ref.empty:
        return None
    for table in tables:
        hit = ref[(ref["table"] == table) & (ref["setting"] == setting) & (ref["dataset"] == dataset)
                  & (ref["backbone"] == backbone) & (ref["method"] == method) & (ref["metric"] == metric)]
        if not hit.empty:
            return _num(hit.iloc[0]["value"])
    return None


def _paper_point(ref: pd.DataFrame, setting: str, dataset: str, backbone: str, method: str
                 ) -> tuple[Optional[float], Optional[float], str]:
    """(accuracy, gflops, metric) the paper gives for one method, looking in Figure 1 first, then
    in the per-setting tables (R@1 averaged from T2V/V2T there); GFLOPs from Figure 1, else the
    recount of the published schedule, else the baseline of every task."""
    tables = ("fig1", setting, "qa")
    if _is_qa(dataset):
        metric, acc = "acc", _ref_value(ref, tables, setting, dataset, backbone, method, "acc")
    else:
        metric = "r1_mean"
        acc = _ref_value(ref, tables, setting, dataset, backbone, method, "r1_mean")
        if acc is None:
            t2v = _ref_value(ref, tables, setting, dataset, backbone, method, "t2v_r1")
            v2t = _ref_value(ref, tables, setting, dataset, backbone, method, "v2t_r1")
            acc = None if t2v is None or v2t is None else (t2v + v2t) / 2
    gflops = _ref_value(ref, ("fig1", "gflops"), setting, dataset, backbone, method, "gflops")
    if gflops is None and method == "none":
        gflops = _ref_value(ref, ("gflops",), setting, "all", backbone, "none", "gflops")
    return acc, gflops, metric


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
                gflops = _num(run.get("gflops"))
                if acc is not None and gflops is not None:
                    rows.append({"dataset": dataset, "method": method, "source": "ours", "metric": metric,
                                 "accuracy": acc, "gflops": gflops, "partial": bool(run.get("partial", False)),
                                 "record": run.get("path")})
            acc, gflops, metric = _paper_point(ref, setting, dataset, backbone, method)
            if acc is not None and gflops is not None:
                rows.append({"dataset": dataset, "method": method, "source": "paper", "metric": metric,
                             "accuracy": acc, "gflops": gflops, "partial": False, "record": None})
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def plot_accuracy_vs_gflops(runs: pd.DataFrame, ref: pd.DataFrame, out_stem: str | Path,
                            datasets: Sequence[str], backbone: str = "umt_b", setting: str = "finetuned",
                            methods: Sequence[str] = ("none", "tome", "vidtldr"), title: str = "",
                            ncols: int = 3, table: Optional[str] = None) -> dict[str, Any]:
    """Write ``<out_stem>.png`` and ``<out_stem>.svg``; returns ``{"png": Path, "svg": Path,
    "points": DataFrame}`` (the points drawn, for tests and captions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    points = accuracy_points(runs, ref, datasets, backbone, setting, methods, table)
    out_stem = Path(out_stem)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    ncols = max(1, min(ncols, len(datasets)))
    nrows = max(1, math.ceil(len(datasets) / ncols))
    with plt.rc_context({"svg.hashsalt": "vidtldr", "font.size": 8}):  # fixed ids: byte-stable SVG
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.7 * nrows + 0.8), squeeze=False)
        for i, dataset in enumerate(datasets):
            ax = axes[i // ncols][i % ncols]
            mine = points[points["dataset"] == dataset]
            for _, p in mine.iterrows():
                colour, marker, _ = METHOD_STYLE.get(p["method"], ("#9467bd", "v", p["method"]))
                if p["source"] == "paper":
                    ax.scatter(p["gflops"], p["accuracy"], s=46, marker=marker, facecolors="none",
                               edgecolors=colour, linewidths=1.4, zorder=2)
                else:
                    ax.scatter(p["gflops"], p["accuracy"], s=40, marker="X" if p["partial"] else marker,
                               color=colour, zorder=3)
            if not (mine["source"] == "ours").any():
                ax.text(0.97, 0.05, "no run", transform=ax.transAxes, ha="right", va="bottom", color="#888888")
            ax.set_title(DATASET_LABEL.get(dataset, dataset))
            ax.set_xlabel("GFLOPs (vision encoder)")
            ax.set_ylabel("accuracy (%)" if _is_qa(dataset) else "R@1, mean T2V/V2T (%)")
            ax.grid(alpha=0.3)
            ax.margins(0.15)
        for j in range(len(datasets), nrows * ncols):
            axes[j // ncols][j % ncols].set_visible(False)
        handles = [Line2D([], [], color=METHOD_STYLE.get(m, ("#9467bd", "v", m))[0], ls="",
                          marker=METHOD_STYLE.get(m, ("#9467bd", "v", m))[1], label=METHOD_STYLE.get(m, ("", "", m))[2])
                   for m in methods]
        handles += [Line2D([], [], color="black", ls="", marker="o", label="ours (filled)"),
                    Line2D([], [], color="black", ls="", marker="o", markerfacecolor="none", label="paper (hollow)")]
        if points["partial"].any():
            handles.append(Line2D([], [], color="black", ls="", marker="X", label="ours, partial run"))
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0.06, 1, 0.95 if title else 1))
        paths = {"png": out_stem.with_suffix(".png"), "svg": out_stem.with_suffix(".svg")}
        for kind, path in paths.items():
            tmp = path.with_name(path.stem + ".tmp" + path.suffix)
            fig.savefig(tmp, dpi=120, metadata={"Date": None} if kind == "svg" else None)
            tmp.replace(path)  # atomic: a reader never sees half a figure
        plt.close(fig)
    return {**paths, "points": points}
