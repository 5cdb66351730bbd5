#!/usr/bin/env python
"""Every registered reducer at vid-TLDR's published GFLOPs on the fine-tuned retrieval datasets.

    python scripts/reducers_table.py [--backbones umt_b umt_l] [--datasets msrvtt ...] [--runs runs]
                                     [--out results] [--dry-run] [-- extra Hydra overrides, e.g. device=cuda]

Runs ``python -m vidtldr.compare budget=published`` for each dataset and backbone (one run directory
each, ``<runs>/reducers/<dataset>/<backbone>/``; a finished one is reused, an interrupted one resumes
row by row), then writes
``<out>/reducers.md``, ``.csv`` and ``.tex``. Every input (checkpoints, tokenizer, annotations,
videos) is checked first; if any is missing, nothing runs and one line per missing input says which.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from vidtldr.errors import cli_guard
from vidtldr.report.labels import FT_DATASETS


def pairs(backbones, datasets) -> list[tuple[str, str]]:
    return [(d, b) for d in (datasets or FT_DATASETS) for b in backbones]


def overrides(dataset: str, backbone: str, extra) -> list[str]:
    return [f"model={backbone}", f"dataset={dataset}", "budget=published", *extra]


def missing(todo, extra) -> tuple[list[str], dict]:
    """(one line per missing input over every planned comparison, each listed once; where to get them).
    A comparison reads what the evaluation of that dataset and backbone reads."""
    from vidtldr.report.plan import PlannedRun, missing_for

    return missing_for([PlannedRun("reducers", d, b, "vidtldr") for d, b in todo], list(extra))


def compare_one(dataset: str, backbone: str, extra, runs: Path) -> dict:
    from vidtldr.analysis.compare.command import run_compare
    from vidtldr.config_utils import compose_config

    run_dir = runs / "reducers" / dataset / backbone
    done = run_dir / "compare.json"
    if done.is_file():
        record = json.loads(done.read_text())
        if record.get("status") == "complete":
            print(f"{dataset}/{backbone}: reusing {done}", flush=True)
            return record
    given = overrides(dataset, backbone, extra)  # explicit, as on `vidtldr compare`'s command line
    return run_compare(compose_config(given, config_name="compare"), run_dir, overrides=given)


def write_table(records: list[dict], out: Path) -> list[Path]:
    """``reducers.md`` (one block per dataset and backbone), ``reducers.csv``, ``reducers.tex``."""
    from vidtldr.analysis.compare.report import csv_text, latex, markdown
    from vidtldr.run.cache import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    md = ["# Reducers at vid-TLDR's published GFLOPs (`make table-reducers`)", ""]
    csv_parts = []
    for i, record in enumerate(records):
        md += [f"## {record['dataset']} / {record['backbone']}", "", markdown(record)]
        text = csv_text(record, {"dataset": record["dataset"], "backbone": record["backbone"]})
        csv_parts.append(text if i == 0 else text.split("\n", 1)[1])
    paths = [out / "reducers.md", out / "reducers.csv", out / "reducers.tex"]
    atomic_write_text(paths[0], "\n".join(md))
    atomic_write_text(paths[1], "".join(csv_parts))
    atomic_write_text(paths[2], latex(records))
    return paths


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=["umt_b", "umt_l"])
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--runs", default=os.environ.get("VIDTLDR_RUNS", "runs"))
    parser.add_argument("--out", default="results")
    parser.add_argument("--dry-run", action="store_true", help="list the comparisons and missing inputs only")
    args = parser.parse_args(argv)
    with cli_guard("reducers_table"):
        from vidtldr.errors import MissingFilesError
        from vidtldr.run.inputs import format_missing

        todo = pairs(args.backbones, args.datasets)
        lines, helps = missing(todo, extra)
        if args.dry_run:
            for d, b in todo:
                print("python -m vidtldr.compare " + " ".join(overrides(d, b, extra)))
            print(f"{len(todo)} comparisons; {len(lines)} missing input(s)")
            for line in lines:
                print("  missing " + line)
            return 0
        if lines:
            raise MissingFilesError(format_missing(lines, helps, f"the reducers table ({len(todo)} comparisons; "
                                                                 "nothing was run)"))
        records = [compare_one(d, b, extra, Path(args.runs)) for d, b in todo]
        for path in write_table(records, Path(args.out)):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
