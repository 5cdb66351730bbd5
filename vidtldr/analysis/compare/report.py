"""Rendering of a compare record: table rows, Markdown, CSV, LaTeX, the plot, the console view."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

from vidtldr.report.labels import METHOD_LABEL
from vidtldr.files import write_report_files

# Colours the project's plots do not give a method already (report/plots.py: blue, red, green, grey).
EXTRA_COLOURS = ("#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#000000")
COLUMNS = ("reducer", "stochastic", "merge_r", "gflops_paper", "metric_mean", "metric_std", "seeds",
           "r1_mean", "encoder_ms_fused", "encoder_ms_materialized", "status")


def label(merge: str) -> str:
    """Display name (a composition ``A+B`` as its parts' names joined by " + "; the reference is the
    unreduced model of whichever backbone, not "UMT")."""
    if merge == "none":
        return "unreduced"
    return " + ".join(METHOD_LABEL.get(part, part).lstrip("+") for part in merge.split("+"))


def table_rows(record: dict) -> list[dict]:
    """The unreduced reference, then one row per reducer in the record's order (plain values)."""
    out = []
    for row in [record["reference"], *record["rows"]]:
        metrics = row.get("metrics") or {}
        r1 = metrics.get("r1_mean") or {}
        ms = row.get("encoder_ms") or {}
        status = ("reference (unreduced)" if row["merge"] == "none" else
                  "fitted" if row["fitted"] else f"not fitted: {row['error']}")
        out.append({"reducer": row["merge"], "stochastic": "yes" if row["stochastic"] else "",
                    "merge_r": None if row["merge_r"] is None else "[" + ",".join(map(str, row["merge_r"])) + "]",
                    "gflops_paper": row["gflops_paper"], "metric_mean": row.get("mean"),
                    "metric_std": row.get("std"), "seeds": len(row["seeds"]) if row["fitted"] else None,
                    "r1_mean": r1.get("mean"), "encoder_ms_fused": ms.get("fused"),
                    "encoder_ms_materialized": ms.get("materialized"), "status": status})
    return out


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cell(mean: Optional[float], std: Optional[float], digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def metric_labels() -> dict[str, str]:
    """Display names of the percentage metrics, as the registered tasks declare them
    (``Task.metric_labels``)."""
    from vidtldr.tasks.base import discover_tasks

    return {key: name for task in discover_tasks().values() for key, name in task.metric_labels.items()}


def metric_name(metric: str) -> str:
    return metric_labels().get(metric, metric)


def digits(record: dict) -> int:
    """A task's percentages (recall, accuracy) with 2 decimals, fidelities (0..1) with 4."""
    return 2 if record["metric"] in metric_labels() else 4


def heading(record: dict) -> str:
    name = metric_name(record["metric"])
    return (f"Reducers at equal GFLOPs: {record['model']} on {record['collection']} ({record['num_frames']} frames), "
            f"budget {record['budget_gflops']:.4f} GFLOPs ({record['budget']}; unreduced "
            f"{record['unreduced_gflops']:.4f}), each fitted within {100 * record['tolerance']:.0f}% below it "
            f"({record['schedule_family']}); metric: {name}; stochastic reducers over {record['seeds']} seeds "
            f"(mean ± sample std); encoder ms per clip: batch 1, fastest of {record['timing']['repeats']} "
            f"interleaved forwards on {record['timing']['device']}.")


def markdown(record: dict) -> str:
    lines = [heading(record), ""]
    if record.get("note"):
        lines += [f"Note: {record['note']}.", ""]
    retrieval = any(r["r1_mean"] is not None for r in table_rows(record))
    head = ["reducer", "merge.r", "GFLOPs", metric_name(record["metric"])]
    head += ["R@1"] if retrieval else []
    head += ["seeds", "ms fused", "ms materialized", "status"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in table_rows(record):
        cells = [label(r["reducer"]) + (" (stochastic)" if r["stochastic"] else ""), _fmt(r["merge_r"]),
                 _fmt(r["gflops_paper"]), _cell(r["metric_mean"], r["metric_std"], digits(record))]
        cells += [_fmt(r["r1_mean"], 2)] if retrieval else []
        cells += [_fmt(r["seeds"]), _fmt(r["encoder_ms_fused"], 2), _fmt(r["encoder_ms_materialized"], 2), r["status"]]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{label(r['merge'])}: {r['fit_note']}" for r in record["rows"] if r.get("fit_note")]
    if notes:
        lines += [""] + notes
    return "\n".join(lines) + "\n"


def csv_text(record: dict, extra: Optional[dict] = None) -> str:
    """One line per row; ``extra`` columns (e.g. dataset, backbone) first."""
    extra = extra or {}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*extra, *COLUMNS], lineterminator="\n")
    writer.writeheader()
    for row in table_rows(record):
        writer.writerow({**extra, **{k: ("" if v is None else v) for k, v in row.items()}})
    return buf.getvalue()


def draw_plot(record: dict, png: Path, svg: Path) -> None:
    """Metric vs GFLOPs (left) and vs measured encoder time (right): one point per reducer, error
    bars = the seeds' std, the unreduced model hollow, the budget dashed. Says so when nothing
    could be drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vidtldr.report.plots import METHOD_STYLE, save_figure

    rows = [r for r in [record["reference"], *record["rows"]] if r.get("mean") is not None]
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.2), sharey=True)
    others = [r["merge"] for r in rows if r["merge"] not in METHOD_STYLE]
    for row in rows:
        if row["merge"] in METHOD_STYLE:
            colour, marker = METHOD_STYLE[row["merge"]][:2]
        else:
            k = others.index(row["merge"])
            colour, marker = EXTRA_COLOURS[k % len(EXTRA_COLOURS)], "v^<>PXhp*d"[k % 10]
        ms = (row.get("encoder_ms") or {}).get("fused")
        for ax, x in ((axes[0], row["gflops_paper"]), (axes[1], ms)):
            if x is None:
                continue
            face = "none" if row["merge"] == "none" else colour
            ax.errorbar([x], [row["mean"]], yerr=[row["std"]] if row.get("std") else None, fmt=marker, color=colour,
                        markerfacecolor=face, markersize=7, capsize=3, label=label(row["merge"]))
    axes[0].axvline(record["budget_gflops"], color="black", linestyle="--", linewidth=0.8, label="budget")
    axes[0].set_xlabel("vision encoder GFLOPs (paper convention)")
    axes[1].set_xlabel("measured encoder time per clip, fused (ms)")
    axes[0].set_ylabel(metric_name(record["metric"]))
    for ax in axes:
        ax.grid(alpha=0.3)
        if not rows:
            ax.text(0.5, 0.5, "nothing to draw: no reducer was evaluated", transform=ax.transAxes, ha="center")
    title = f"{record['model']} on {record['collection']}: reducers at {record['budget_gflops']:.4f} GFLOPs"
    if record.get("note"):
        title += " (random weights: mechanism only)"
    fig.suptitle(title, fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.84, 1))
    save_figure(fig, png, svg)
    plt.close(fig)


def write_outputs(record: dict, run_dir: Path, plot: bool = True) -> dict:
    """``compare.md``, ``compare.csv`` and (``plot``) ``compare.png``/``.svg``; their paths."""
    return write_report_files(run_dir, {"md": ("compare.md", markdown(record)), "csv": ("compare.csv", csv_text(record))},
                              "compare" if plot else None, lambda png, svg: draw_plot(record, png, svg))


def format_table(record: dict) -> str:
    """Console view: the Markdown table, then where the files are."""
    lines = [f"== compare | {record['collection']} | model={record['model']} | budget {record['budget_gflops']:.4f} "
             f"GFLOPs ({record['budget']}) | metric = {record['metric']} =="]
    lines += markdown(record).splitlines()[2:]
    lines.append(f"table: {record['outputs']['md']} (and .csv)")
    if "plot_png" in record["outputs"]:
        lines.append(f"plot: {record['outputs']['plot_png']} (and .svg)")
    return "\n".join(lines)


def latex(records: list[dict]) -> str:
    """A paper-style table of several compare records (one block of rows per dataset and backbone)."""
    from vidtldr.report.labels import BACKBONE_LABEL, DATASET_LABEL

    lines = [r"\begin{tabular}{llrrrr}", r"\toprule",
             r"Dataset & Method & GFLOPs & Mean R & R@1 & ms/clip \\", r"\midrule"]
    for record in records:
        where = f"{DATASET_LABEL.get(record['dataset'], record['dataset'])} ({BACKBONE_LABEL.get(record['backbone'], record['backbone'])})"
        for r in table_rows(record):
            if r["status"].startswith("not fitted"):
                cells = [where, label(r["reducer"]), "--", "not fitted", "--", "--"]
            else:
                mean = _cell(r["metric_mean"], r["metric_std"]).replace("±", r"$\pm$")
                cells = [where, label(r["reducer"]), _fmt(r["gflops_paper"], 1), mean, _fmt(r["r1_mean"], 2),
                         _fmt(r["encoder_ms_fused"], 1)]
            lines.append(" & ".join(c.replace("_", r"\_") for c in cells) + r" \\")
            where = ""
        lines.append(r"\midrule")
    lines[-1] = r"\bottomrule"
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"
