#!/usr/bin/env python
"""Run every evaluation behind one paper table, then rebuild the tables from the records.

    python scripts/paper_table.py finetuned|zeroshot|qa|fig1|action [--backbones umt_b] [--datasets msrvtt ...]
                                  [--runs runs] [--dry-run] [-- extra Hydra overrides, e.g. device=cuda]

All inputs (checkpoints, annotations, videos) are checked first; if any is missing, nothing runs and
one message lists them all with where to get them.
"""

from __future__ import annotations

import argparse
import os
import sys

from vidtldr.errors import cli_guard
from vidtldr.report.results import build_all
from vidtldr.report.plan import missing_for, plan, run_table


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["finetuned", "zeroshot", "qa", "fig1", "action"])
    parser.add_argument("--backbones", nargs="+", default=None,
                        help="default: umt_b umt_l (action: videomae_b videomae_l)")
    parser.add_argument("--datasets", nargs="+", default=None)
    parser.add_argument("--runs", default=os.environ.get("VIDTLDR_RUNS", "runs"))
    parser.add_argument("--out", default="results")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and missing inputs only")
    args = parser.parse_args(argv)
    with cli_guard("paper_table"):
        kwargs = {"backbones": args.backbones, "datasets": args.datasets}
        if args.dry_run:
            runs = plan(args.table, **kwargs)
            for r in runs:
                print("python -m vidtldr.eval " + " ".join(r.all_overrides() + extra))
            missing, _ = missing_for(runs, extra)
            print(f"{len(runs)} runs; {len(missing)} missing input(s)")
            for line in missing:
                print("  missing " + line)
            return 0
        run_table(args.table, args.runs, extra, **kwargs)
        build_all([args.runs], args.out, [args.table])
        print(f"tables written to {args.out}/{args.table}.{{md,csv,tex}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
