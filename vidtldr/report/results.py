"""Run records -> the paper's tables (Markdown, CSV, LaTeX) and the Figure-1 plot, written to a folder.

Our columns come from ``record.json`` files only (:mod:`vidtldr.report.rows`); the paper's from
``vidtldr/report/paper_reference.csv`` (:mod:`vidtldr.report.reference`). A row whose run did not
happen says "not run" in our columns: a paper number is never copied into them. A row built from a
partial run (``data.limit``) says so in its ``run`` column. The table data is
:mod:`vidtldr.report.tables`, the Markdown/LaTeX :mod:`vidtldr.report.render`.

    vidtldr results                                  # all tables from runs/ into results/
    vidtldr results runs=[runs,other] out=results tables=[finetuned,qa]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from vidtldr.config_utils import check_directory_path, compose_config, plain
from vidtldr.errors import ConfigError, cli_guard
from vidtldr.report.plots import plot_accuracy_vs_gflops
from vidtldr.report.reference import REFERENCE_CSV, load_reference
from vidtldr.report.render import LEGEND, display_table, to_latex, to_markdown
from vidtldr.report.rows import load_runs
from vidtldr.report.tables import TABLES, TableSpec, build_table, runs_table
from vidtldr.files import atomic_write_text

TABLE_NAMES = [*TABLES, "runs"]


def write_table(spec: TableSpec, runs: pd.DataFrame, ref: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """``<name>.csv`` (numbers), ``.md`` and ``.tex`` (cells as shown); Figure 1 also its plot."""
    out_dir = Path(out_dir)
    table = build_table(spec, runs, ref)
    shown = display_table(spec, table)
    paths = {"csv": out_dir / f"{spec.name}.csv", "md": out_dir / f"{spec.name}.md",
             "tex": out_dir / f"{spec.name}.tex"}
    atomic_write_text(paths["csv"], table.to_csv(index=False))
    note = f"\n{spec.note}\n" if spec.note else ""
    atomic_write_text(paths["md"], f"# {spec.title}\n\n{to_markdown(shown)}\n{LEGEND}\n{note}")
    atomic_write_text(paths["tex"], to_latex(shown, spec.title))
    if spec.name == "fig1":
        figure = plot_accuracy_vs_gflops(runs, ref, out_dir / spec.name, datasets=spec.datasets,
                                         backbone=spec.backbones[0], setting=spec.setting,
                                         methods=spec.methods, title=spec.title, table=spec.name)
        paths["png"], paths["svg"] = figure["png"], figure["svg"]
    return paths


def write_runs(runs: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """``runs.csv`` / ``runs.md``: every complete record, whatever its settings."""
    df = runs_table(runs)
    paths = {"csv": Path(out_dir) / "runs.csv", "md": Path(out_dir) / "runs.md"}
    atomic_write_text(paths["csv"], df.to_csv(index=False))
    atomic_write_text(paths["md"], "# Every recorded run\n\n" + to_markdown(df.fillna("")))
    return paths


def build_all(run_roots: Sequence[str | Path], out_dir: str | Path, tables: Sequence[str] | None = None,
              reference: str | Path = REFERENCE_CSV) -> dict[str, dict[str, Path]]:
    names = list(tables) if tables else TABLE_NAMES
    unknown = [n for n in names if n not in TABLE_NAMES]
    if unknown:
        raise ConfigError(f"unknown table(s) {unknown}; available: {TABLE_NAMES}")
    runs = load_runs(run_roots)
    ref = load_reference(reference)
    return {name: write_runs(runs, out_dir) if name == "runs" else write_table(TABLES[name], runs, ref, out_dir)
            for name in names}


# The flags this command took before it used the override grammar of every other command.
OLD_FLAGS = {"--runs": "runs=[DIR,...]", "--out": "out=DIR", "--tables": "tables=[NAME,...]",
             "--reference": "reference=FILE"}


def _as_list(value) -> list | None:
    value = plain(value)
    return None if value is None else [str(v) for v in (value if isinstance(value, list) else [value])]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    with cli_guard("vidtldr.results"):
        for arg in argv:
            flag = arg.partition("=")[0]
            if flag in OLD_FLAGS:
                raise ConfigError(f"{flag} was replaced by the override grammar of every command: use {OLD_FLAGS[flag]}")
        cfg = compose_config(argv, config_name="results")
        out, runs, tables = str(cfg.out), _as_list(cfg.runs), _as_list(cfg.tables)
        check_directory_path("out", out, writable=True)  # a file there was a FileExistsError traceback
        roots = runs or ["runs"]
        missing = [str(r) for r in roots if not Path(r).exists()]
        if missing and runs:  # a typo in runs= would otherwise give tables that say "not run" everywhere
            raise ConfigError(f"runs folder(s) not found: {', '.join(missing)}")
        if load_runs(roots).empty:  # (the default runs/ may not exist yet: tables of "not run" rows)
            print(f"vidtldr.results: warning: no complete run records under {', '.join(map(str, roots))}; "
                  "every row will say 'not run'", file=sys.stderr)
        written = build_all(roots, out, tables, str(cfg.reference) if cfg.reference else str(REFERENCE_CSV))
        for name, paths in written.items():
            print(f"{name}: " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
