"""Rendering of a tune record: Pareto table (Markdown + CSV), plot (PNG + SVG), console table."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from vidtldr.analysis.search.schedules import Candidate, defined, pareto
from vidtldr.files import write_report_files

COLUMNS = ("reducer", "family", "merge_r", "gflops_paper", "fidelity", "embedding_cosine_mean",
           "itc_top1_agreement", "spearman_mean", "encoder_s", "pareto", "best")
STYLE = {"vidtldr": ("#d62728", "o"), "tome": ("#1f77b4", "s"), "random": ("#7f7f7f", "v"),
         "repshift": ("#2ca02c", "^")}


def rows(record: dict) -> list[dict]:
    """One row per evaluated candidate and reference point, sorted by reducer then GFLOPs."""
    out = []
    for run in record["reducers"]:
        if "candidates" not in run:
            continue
        cands = run["candidates"]
        front = {tuple(c.schedule) for c in pareto([Candidate(tuple(c["merge_r"]), c["family"], c["gflops_paper"],
                                                              c["fidelity"]) for c in cands])}
        for c in sorted(cands, key=lambda c: c["gflops_paper"]):
            out.append(_row(run["reducer"], c, tuple(c["merge_r"]) in front, c["merge_r"] == run["best"]["merge_r"]))
    for ref in record.get("references", []):
        out.append(_row(ref["reducer"], {**ref, "family": ref["label"]}, False, False))
    return out


def _row(reducer: str, c: dict, on_front: bool, best: bool) -> dict:
    m = c.get("metrics", {})
    return {"reducer": reducer, "family": c["family"], "merge_r": "[" + ",".join(map(str, c["merge_r"])) + "]",
            "gflops_paper": c["gflops_paper"], "fidelity": c["fidelity"],
            "embedding_cosine_mean": m.get("embedding_cosine_mean"), "itc_top1_agreement": m.get("itc_top1_agreement"),
            "spearman_mean": m.get("spearman_mean"), "encoder_s": m.get("encoder_s"),
            "pareto": "yes" if on_front else "", "best": "BEST" if best else ""}


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def collection_label(record: dict) -> str:
    """``dataset X`` as is; a folder by its name only (its full path is in tune.json)."""
    text = record["collection"]
    return f"folder {Path(text[len('folder '):]).name}/" if text.startswith("folder ") else text


def markdown(record: dict) -> str:
    head = (f"Label-free schedule search: {record['model']} on {collection_label(record)} ({record['videos']} videos, "
            f"{record['num_frames']} frames), budget {record['budget_gflops']:.4f} GFLOPs (paper convention; "
            f"unreduced {record['unreduced_gflops']:.4f}), fidelity = `{record['metric']}`, seed {record['seed']}, "
            f"{record['evaluated']} model evaluations.")
    undefined = sum(run.get("undefined", 0) for run in record["reducers"])
    if undefined:
        head += (f" {undefined} candidate(s) with an undefined `{record['metric']}` (fidelity `-`) are excluded from "
                 "the best and the Pareto front.")
    lines = [head, ""]
    if record.get("note"):
        lines += [f"Note: {record['note']}.", ""]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows(record):
        lines.append("| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |")
    for run in record["reducers"]:
        if "error" in run:
            lines.append(f"\n{run['reducer']}: {run['error']}")
    return "\n".join(lines) + "\n"


def csv_text(record: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows(record):
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def draw_plot(record: dict, png: Path, svg: Path) -> list[str]:
    """Fidelity vs GFLOPs: every evaluated candidate per reducer, each reducer's best, the published
    schedule, the unreduced model (fidelity 1 by definition) and the budget; returns the legend's
    labels (none, and a sentence on the plot, when no candidate has a defined fidelity)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawn = 0  # points with a defined fidelity: the legend lists only what is on the plot
    for run in record["reducers"]:
        if "candidates" not in run:
            continue
        color, marker = STYLE.get(run["reducer"], ("#9467bd", "D"))
        pts = [(c["gflops_paper"], c["fidelity"]) for c in run["candidates"] if defined(c["fidelity"])]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=color, marker=marker, alpha=0.45,
                       label=f"{run['reducer']} candidates")
        best = run["best"]
        if defined(best["fidelity"]):
            ax.scatter([best["gflops_paper"]], [best["fidelity"]], s=160, color=color, marker="*",
                       edgecolors="black", linewidths=0.6, zorder=5,
                       label=f"{run['reducer']} best [{','.join(map(str, best['merge_r']))}]")
        drawn += len(pts)
    for ref in record.get("references", []):
        if defined(ref["fidelity"]):
            ax.scatter([ref["gflops_paper"]], [ref["fidelity"]], s=70, color="black", marker="D", zorder=6,
                       label=f"{ref['label']} [{','.join(map(str, ref['merge_r']))}]")
            drawn += 1
    metric = record["metric"]
    if drawn:
        ax.scatter([record["unreduced_gflops"]], [1.0], s=70, color="black", marker="o", facecolors="none",
                   label="unreduced (reference)")
        ax.axvline(record["budget_gflops"], color="black", linestyle="--", linewidth=0.8, label="budget")
    else:
        ax.text(0.5, 0.5, f"nothing to draw: no candidate has a defined {metric}", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
    ax.set_xlabel("vision encoder GFLOPs (paper convention)")
    ax.set_ylabel(f"fidelity: {metric}")
    title = f"{record['model']} on {collection_label(record)}: fidelity vs GFLOPs"
    if record.get("note"):
        title += "\n(random weights: shows the mechanism only)"
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    labels = [h.get_label() for h in ax.get_legend_handles_labels()[0]] if drawn else []
    from vidtldr.report.plots import save_figure

    save_figure(fig, png, svg)
    plt.close(fig)
    return labels


def write_outputs(record: dict, run_dir: Path, plot: bool = True) -> dict:
    """Write ``pareto.md``, ``pareto.csv`` and (``plot``) ``tune.png``/``tune.svg``; their paths."""
    return write_report_files(run_dir, {"pareto_md": ("pareto.md", markdown(record)),
                                        "pareto_csv": ("pareto.csv", csv_text(record))},
                              "tune" if plot else None, lambda png, svg: draw_plot(record, png, svg))


def format_table(record: dict) -> str:
    """Console view: each reducer's best at the budget, then where the files are."""
    lines = [f"== tune | {collection_label(record)} | model={record['model']} | budget {record['budget_gflops']:.4f} "
             f"GFLOPs | fidelity = {record['metric']} | {record['evaluated']} model evaluations ==",
             "reducer | best merge.r | GFLOPs | fidelity | evaluated", "---|---|---|---|---"]
    for run in record["reducers"]:
        if "best" in run:
            b = run["best"]
            lines.append(f"{run['reducer']} | [{','.join(map(str, b['merge_r']))}] | {b['gflops_paper']:.4f} | "
                         f"{_fmt(b['fidelity'])} | {run['evaluated']}")
        else:
            lines.append(f"{run['reducer']} | - | - | - | {run['error']}")
    for ref in record.get("references", []):
        lines.append(f"{ref['label']} | [{','.join(map(str, ref['merge_r']))}] | {ref['gflops_paper']:.4f} | "
                     f"{_fmt(ref['fidelity'])} | (reference)")
    lines.append(f"Pareto table: {record['outputs']['pareto_md']} (and .csv)")
    if "plot_png" in record["outputs"]:
        lines.append(f"plot: {record['outputs']['plot_png']} (and .svg)")
    if record.get("note"):
        lines.append(f"note: {record['note']}")
    return "\n".join(lines)
