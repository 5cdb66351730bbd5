"""Run records -> the paper's tables (Markdown, CSV, LaTeX), our numbers beside the paper's.

Our columns come from ``record.json`` files only; the paper's from ``vidtldr/report/paper_reference.csv``
(every number of the reference sheet, with its provenance). A row whose run did not happen says
"not run" in our columns: a paper number is never copied into them. A row built from a partial run
(``data.limit``) says so in its ``run`` column.

    python -m vidtldr.report.results                      # all tables from runs/ into results/
    python -m vidtldr.report.results --runs runs/ other/ --out results/ --tables finetuned qa
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from vidtldr.run.cache import atomic_write_text
from vidtldr.errors import ConfigError, VidtldrError, cli_guard
from vidtldr.run.record import find_records, read_record

REFERENCE_CSV = Path(__file__).resolve().parent / "paper_reference.csv"
NOT_RUN = "not run"

DATASET_LABEL = {
    "msrvtt": "MSRVTT", "msvd": "MSVD", "didemo": "DiDeMo", "anet": "ActivityNet", "lsmdc": "LSMDC",
    "ssv2_label": "SSv2-label", "ssv2_template": "SSv2-template", "msrvtt_qa": "MSRVTT-QA",
    "msvd_qa": "MSVD-QA", "anet_qa": "ActivityNet-QA",
}
BACKBONE_LABEL = {"umt_b": "UMT-B/16", "umt_l": "UMT-L/16", "tiny": "tiny (random weights)"}
METHOD_LABEL = {"none": "UMT", "vidtldr": "+vid-TLDR", "tome": "+ToMe", "random": "+random drop"}

RETRIEVAL_METRICS = ("t2v_r1", "t2v_r5", "t2v_r10", "v2t_r1", "v2t_r5", "v2t_r10")
METRIC_LABEL = {"t2v_r1": "T2V R@1", "t2v_r5": "T2V R@5", "t2v_r10": "T2V R@10", "v2t_r1": "V2T R@1",
                "v2t_r5": "V2T R@5", "v2t_r10": "V2T R@10", "r1_mean": "R@1 (mean)", "acc": "Acc",
                "gflops": "GFLOPs"}


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


FT_DATASETS = ("msrvtt", "msvd", "didemo", "anet", "lsmdc", "ssv2_label", "ssv2_template")
TABLES: dict[str, TableSpec] = {
    "finetuned": TableSpec("finetuned", "Fine-tuned text-video retrieval (ITM re-ranked), 12 frames",
                           "finetuned", FT_DATASETS, ("umt_b", "umt_l"), ("none", "vidtldr"),
                           RETRIEVAL_METRICS, ("finetuned",)),
    "zeroshot": TableSpec("zeroshot", "Zero-shot text-video retrieval (ITM re-ranked), 4 frames",
                          "zeroshot", ("msrvtt", "msvd", "didemo", "anet", "lsmdc"), ("umt_b", "umt_l"),
                          ("none", "vidtldr"), RETRIEVAL_METRICS, ("zeroshot",)),
    "qa": TableSpec("qa", "Video question answering (exact-match accuracy), 12 frames", "finetuned",
                    ("msrvtt_qa", "msvd_qa", "anet_qa"), ("umt_b", "umt_l"), ("none", "vidtldr"),
                    ("acc",), ("qa",)),
    "fig1": TableSpec("fig1", "UMT-B: UMT vs ToMe vs vid-TLDR (paper Figure 1); R@1 = mean of T2V and V2T R@1",
                      "finetuned", FT_DATASETS + ("msrvtt_qa", "msvd_qa"), ("umt_b",),
                      ("none", "tome", "vidtldr"), ("r1_mean", "acc"), ("fig1",)),
}


# ----------------------------------------------------------------------------- records -> runs


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def run_row(record: dict) -> dict:
    """Flatten one record into the numbers the tables use (ITM-reranked retrieval metrics,
    the ITC-only ones with an ``itc_`` prefix, QA accuracy, GFLOPs)."""
    ident = record.get("run", {})
    metrics = record.get("metrics") or {}
    row: dict[str, Any] = {
        "setting": ident.get("setting"), "dataset": ident.get("dataset_base"),
        "dataset_config": ident.get("dataset"), "backbone": ident.get("backbone"),
        "model": ident.get("model"), "method": ident.get("merge"), "task": ident.get("task"),
        "schedule": ident.get("schedule"), "partial": bool(record.get("partial", False)),
        "status": record.get("status"), "created": record.get("created"), "path": record.get("_path"),
    }
    counts = record.get("counts") or {}
    row["videos"] = counts.get("videos")
    row["videos_total"] = counts.get("videos_total")
    # What data.limit counts: videos for retrieval, questions for QA.
    unit = "questions" if "questions" in counts else "videos"
    row["limit_unit"], row["n"], row["n_total"] = unit, counts.get(unit), counts.get(f"{unit}_total")
    for prefix, block in (("", metrics.get("itm")), ("itc_", metrics.get("itc"))):
        if not block:
            continue
        row[prefix + "t2v_r1"], row[prefix + "t2v_r5"], row[prefix + "t2v_r10"] = (
            _num(block.get("img_r1")), _num(block.get("img_r5")), _num(block.get("img_r10")))
        row[prefix + "v2t_r1"], row[prefix + "v2t_r5"], row[prefix + "v2t_r10"] = (
            _num(block.get("txt_r1")), _num(block.get("txt_r5")), _num(block.get("txt_r10")))
        row[prefix + "t2v_medr"] = _num(block.get("img_medr"))
        row[prefix + "v2t_medr"] = _num(block.get("txt_medr"))
        row[prefix + "r_mean"] = _num(block.get("r_mean"))
        if row[prefix + "t2v_r1"] is not None and row[prefix + "v2t_r1"] is not None:
            row[prefix + "r1_mean"] = round((row[prefix + "t2v_r1"] + row[prefix + "v2t_r1"]) / 2, 2)
    if "acc" in metrics:
        row["acc"] = _num(metrics.get("acc"))
    gflops = record.get("gflops") or {}
    row["gflops"] = _num(gflops.get("paper"))
    row["gflops_base"] = _num(gflops.get("base_paper"))
    # The settings that decide whether the record stands for a paper row (see row_settings).
    resolved = record.get("resolved") or {}
    config = record.get("config") or {}
    ev = config.get("eval") or {}
    for key in ("num_frames", "k_test", "max_txt_l", "max_q_len", "max_a_len", "precision", "data_source"):
        row[key] = resolved.get(key)
    row["checkpoint_file"] = Path(resolved["checkpoint"]).name if resolved.get("checkpoint") else None
    row["explicit_checkpoint"] = (config.get("model") or {}).get("checkpoint")
    row["token_store_dtype"] = ev.get("token_store_dtype", "fp32")
    row["attention"] = ev.get("attention", "fused")
    return row


def load_runs(roots: Iterable[str | Path]) -> pd.DataFrame:
    """One row per finished record under ``roots`` (failed or running records are ignored)."""
    rows = []
    for path in find_records(roots):
        try:
            record = read_record(path)
        except (OSError, ValueError) as exc:
            raise VidtldrError(f"cannot read run record {path}: {exc}") from None
        if record.get("status") != "complete":
            continue
        rows.append(run_row(record))
    return pd.DataFrame(rows)


# Precisions a paper row accepts: the fp32 reference and the official evaluation's CUDA fp16 autocast.
PAPER_PRECISIONS = ("fp32", "fp16")


@functools.lru_cache(maxsize=None)
def row_settings(table: str, dataset: str, backbone: str, method: str) -> dict | None:
    """What a run must have been run with to stand for one row of a paper table: exactly what
    ``make table-<table>`` runs for it (:func:`vidtldr.report.plan.plan`, resolved like a
    real run): the schedule (published vid-TLDR, the ToMe preset or nearest r, none for UMT), the
    dataset's own frames, k_test and text lengths, the default checkpoint file and attention mode.
    None when the table has no planned run for the row (no record can fill it)."""
    from vidtldr.report.plan import plan
    from vidtldr.run.runspec import resolve
    from vidtldr.config_utils import compose_config

    planned = [p for p in plan(table, backbones=(backbone,), datasets=(dataset,))
               if p.model == backbone and p.merge == method]
    if not planned:
        return None
    cfg = compose_config(planned[0].all_overrides())
    spec = resolve(cfg)
    return {"schedule": list(spec.schedule), "num_frames": spec.num_frames, "k_test": spec.k_test,
            "max_txt_l": spec.max_txt_l, "max_q_len": spec.max_q_len, "max_a_len": spec.max_a_len,
            "checkpoint_file": Path(spec.checkpoint).name if spec.checkpoint else None,
            "attention": str(cfg.eval.attention), "data_source": spec.data_source}


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


def pick_run(runs: pd.DataFrame, setting: str, dataset: str, backbone: str, method: str,
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
    if table is not None:
        expected = row_settings(table, dataset, backbone, method)
        if expected is None:
            return None
        keep = [not settings_mismatch(r, expected) for r in match.to_dict("records")]
        match = match[keep]
        if match.empty:
            return None
    # Records without the field sort as complete / oldest.
    partial = (match["partial"].fillna(False).astype(bool) if "partial" in match
               else pd.Series(False, index=match.index))
    created = match["created"].fillna("").astype(str) if "created" in match else pd.Series("", index=match.index)
    order = pd.DataFrame({"partial": partial, "created": created}).sort_values(
        ["partial", "created"], ascending=[True, False], kind="stable")
    return match.loc[order.index[0]].to_dict()


# ----------------------------------------------------------------------------- reference


def load_reference(path: str | Path = REFERENCE_CSV) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"paper reference table not found: {path}")
    ref = pd.read_csv(path, dtype={"value": float}, keep_default_na=False, na_values=[""])
    need = {"table", "setting", "dataset", "backbone", "method", "metric", "value", "provenance"}
    missing = need - set(ref.columns)
    if missing:
        raise ConfigError(f"{path}: missing columns {sorted(missing)}")
    return ref


def paper_value(ref: pd.DataFrame, tables: Sequence[str], setting: str, dataset: str, backbone: str,
                method: str, metric: str) -> tuple[float | None, str | None]:
    """(value, provenance) of the paper's number for one cell, or (None, None)."""
    for table in tables:
        hit = ref[(ref["table"] == table) & (ref["setting"] == setting) & (ref["dataset"] == dataset)
                  & (ref["backbone"] == backbone) & (ref["method"] == method) & (ref["metric"] == metric)]
        if not hit.empty:
            return float(hit.iloc[0]["value"]), str(hit.iloc[0]["provenance"])
    return None, None


def reference_gflops(ref: pd.DataFrame, setting: str, dataset: str, backbone: str, method: str
                     ) -> tuple[float | None, str | None]:
    """The paper's GFLOPs (Figure 1) where printed, else the recount of the published schedule."""
    value, prov = paper_value(ref, ("fig1",), setting, dataset, backbone, method, "gflops")
    if value is None:
        value, prov = paper_value(ref, ("gflops",), setting, dataset, backbone, method, "gflops")
    if value is None and method == "none":
        value, prov = paper_value(ref, ("gflops",), setting, "all", backbone, "none", "gflops")
    return value, prov


# ----------------------------------------------------------------------------- tables


def _run_status(run: dict | None) -> str:
    if run is None:
        return NOT_RUN
    if run.get("partial"):
        return f"partial ({run.get('n')}/{run.get('n_total')} {run.get('limit_unit')})"
    return "complete"


def _delta(ours: float | None, paper: float | None) -> float | None:
    if ours is None or paper is None:
        return None
    return round(ours - paper, 2)


def build_table(spec: TableSpec, runs: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """Numeric long-form table: one row per (dataset, backbone, method), columns ``<metric>``,
    ``<metric>_paper``, ``<metric>_delta`` for each metric, GFLOPs and its reduction."""
    rows = []
    for dataset in spec.datasets:
        metrics = [m for m in spec.metrics if (m == "acc") == dataset.endswith("_qa")]
        for backbone in spec.backbones:
            base_run = pick_run(runs, spec.setting, dataset, backbone, "none", spec.name)
            for method in spec.methods:
                run = pick_run(runs, spec.setting, dataset, backbone, method, spec.name)
                row: dict[str, Any] = {"dataset": dataset, "backbone": backbone, "method": method,
                                       "run": _run_status(run)}
                for metric in metrics:
                    ours = _num(run.get(metric)) if run else None
                    paper, _ = paper_value(ref, spec.reference_tables, spec.setting, dataset, backbone,
                                           method, metric)
                    row[metric] = ours
                    row[f"{metric}_paper"] = paper
                    row[f"{metric}_delta"] = _delta(ours, paper)
                gflops = _num(run.get("gflops")) if run else None
                base = _num(base_run.get("gflops")) if base_run else (_num(run.get("gflops_base")) if run else None)
                row["gflops"] = gflops
                row["gflops_reduction_pct"] = (round(100.0 * (1 - gflops / base), 1)
                                               if gflops is not None and base else None)
                row["gflops_paper"], row["gflops_paper_source"] = reference_gflops(
                    ref, spec.setting, dataset, backbone, method)
                row["schedule"] = run.get("schedule") if run else None
                row["record"] = run.get("path") if run else None
                rows.append(row)
    return pd.DataFrame(rows)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _fmt_delta(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:+.1f}"


def display_table(spec: TableSpec, table: pd.DataFrame) -> pd.DataFrame:
    """Human-readable cells: "ours (paper, Δ)"; "not run" where no record exists."""
    out = []
    for _, row in table.iterrows():
        cells = {"Dataset": DATASET_LABEL.get(row["dataset"], row["dataset"]),
                 "Backbone": BACKBONE_LABEL.get(row["backbone"], row["backbone"]),
                 "Method": METHOD_LABEL.get(row["method"], row["method"])}
        not_run = row["run"] == NOT_RUN
        for metric in spec.metrics:
            if metric not in row.index:
                continue
            if (metric == "acc") != row["dataset"].endswith("_qa"):
                continue
            label = METRIC_LABEL[metric] if spec.name != "fig1" else "R@1 / Acc"
            ours = NOT_RUN if not_run else _fmt(row[metric], 2)
            paper = _fmt(row[f"{metric}_paper"])
            delta = _fmt_delta(row[f"{metric}_delta"])
            cells[label] = f"{ours} ({paper}{', ' + delta if delta else ''})"
        cells["GFLOPs"] = NOT_RUN if not_run else _fmt(row["gflops"])
        cells["GFLOPs ref"] = _fmt(row["gflops_paper"])
        cells["reduction"] = "" if not_run or row["gflops_reduction_pct"] is None or (
            isinstance(row["gflops_reduction_pct"], float) and math.isnan(row["gflops_reduction_pct"])) \
            else f"{row['gflops_reduction_pct']:.1f}%"
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


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame, caption: str) -> str:
    cols = list(df.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{" + "l" * len(cols) + "}",
             r"\toprule", " & ".join(_latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for _, row in df.iterrows():
        lines.append(" & ".join(_latex_escape(v) for v in row.tolist()) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + _latex_escape(caption) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


LEGEND = ("Cells: ours (paper, ours − paper). Ours come from run records only; \"not run\" means no "
          "record exists. GFLOPs: vision encoder only, batch 1, one multiply-add = 1 (paper convention); "
          "\"GFLOPs ref\" is the paper's Figure 1 value where printed, else the recount of the published "
          "schedule (see vidtldr/report/paper_reference.csv, column provenance). Baseline (UMT) paper numbers "
          "for fine-tuned/zero-shot retrieval come from the UMT model zoo, which used per-frame pooling.")


def write_table(spec: TableSpec, runs: pd.DataFrame, ref: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    table = build_table(spec, runs, ref)
    shown = display_table(spec, table)
    paths = {"csv": out_dir / f"{spec.name}.csv", "md": out_dir / f"{spec.name}.md",
             "tex": out_dir / f"{spec.name}.tex"}
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    atomic_write_text(paths["md"], f"# {spec.title}\n\n{to_markdown(shown)}\n{LEGEND}\n")
    atomic_write_text(paths["tex"], to_latex(shown, spec.title))
    if spec.name == "fig1":
        # Accuracy-vs-GFLOPs figure beside the Figure 1 table (plotting lives in vidtldr/plots.py).
        from vidtldr.report.plots import plot_accuracy_vs_gflops

        figure = plot_accuracy_vs_gflops(runs, ref, out_dir / spec.name, datasets=spec.datasets,
                                         backbone=spec.backbones[0], setting=spec.setting,
                                         methods=spec.methods, title=spec.title, table=spec.name)
        paths["png"], paths["svg"] = figure["png"], figure["svg"]
    return paths


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every run as recorded (including tiny-model and partial runs), newest first."""
    if runs.empty:
        return pd.DataFrame(columns=["dataset", "model", "method", "schedule", "run"])
    cols = ["dataset_config", "model", "method", "schedule", "num_frames", "k_test", "precision", "videos",
            "videos_total", "partial",
            "t2v_r1", "v2t_r1", "r1_mean", "itc_t2v_r1", "itc_v2t_r1", "acc", "gflops", "created", "path"]
    present = [c for c in cols if c in runs.columns]
    return runs.sort_values("created", ascending=False)[present]


def single_run_table(record: dict) -> str:
    """Markdown table of one run's metrics (what ``python -m vidtldr.eval`` prints)."""
    metrics = record.get("metrics") or {}
    lines = []
    if "itm" in metrics:
        header = "| scores | T2V R@1 | T2V R@5 | T2V R@10 | T2V MdR | V2T R@1 | V2T R@5 | V2T R@10 | V2T MdR | mean R |"
        lines += [header, "|" + "---|" * 10]
        for name, key in (("ITM re-ranked", "itm"), ("ITC only", "itc")):
            m = metrics.get(key) or {}
            vals = [m.get(k) for k in ("img_r1", "img_r5", "img_r10", "img_medr", "txt_r1", "txt_r5",
                                       "txt_r10", "txt_medr", "r_mean")]
            lines.append(f"| {name} | " + " | ".join(_fmt(_num(v), 2) for v in vals) + " |")
    if "acc" in metrics:
        lines += ["| metric | value |", "|---|---|", f"| accuracy (%) | {_fmt(_num(metrics['acc']), 2)} |"]
    gflops = record.get("gflops") or {}
    if gflops.get("paper") is not None:
        base = gflops.get("base_paper")
        red = f", {100 * (1 - gflops['paper'] / base):.1f}% fewer than without merging ({base:.3g})" if base else ""
        lines.append(f"\nvision encoder GFLOPs (paper convention): {gflops['paper']:.3g}{red}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CLI


def build_all(run_roots: Sequence[str | Path], out_dir: str | Path, tables: Sequence[str] | None = None,
              reference: str | Path = REFERENCE_CSV) -> dict[str, dict[str, Path]]:
    names = list(tables) if tables else [*TABLES, "runs"]
    unknown = [n for n in names if n not in TABLES and n != "runs"]
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; available: {[*TABLES, 'runs']}")
    runs = load_runs(run_roots)
    ref = load_reference(reference)
    written: dict[str, dict[str, Path]] = {}
    for name in names:
        if name == "runs":
            df = runs_table(runs)
            out = Path(out_dir)
            paths = {"csv": out / "runs.csv", "md": out / "runs.md"}
            atomic_write_text(paths["csv"], df.to_csv(index=False))
            atomic_write_text(paths["md"], "# Every recorded run\n\n" + to_markdown(df.fillna("")))
            written[name] = paths
        else:
            written[name] = write_table(TABLES[name], runs, ref, out_dir)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidtldr.report.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=None, help="directories searched for record.json (default: runs)")
    parser.add_argument("--out", default="results", help="where the tables are written")
    parser.add_argument("--tables", nargs="+", default=None, help=f"subset of {[*TABLES, 'runs']}")
    parser.add_argument("--reference", default=str(REFERENCE_CSV), help="paper reference CSV")
    args = parser.parse_args(argv)
    with cli_guard("vidtldr.report.results"):
        roots = args.runs or ["runs"]
        missing = [str(r) for r in roots if not Path(r).exists()]
        if missing and args.runs:  # a typo in --runs would otherwise give tables that say "not run" everywhere
            raise ConfigError(f"runs folder(s) not found: {', '.join(missing)}")
        if load_runs(roots).empty:  # (the default runs/ may not exist yet: tables of "not run" rows)
            print(f"vidtldr.report.results: warning: no complete run records under {', '.join(map(str, roots))}; "
                  "every row will say 'not run'", file=sys.stderr)
        written = build_all(roots, args.out, args.tables, args.reference)
        for name, paths in written.items():
            print(f"{name}: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
