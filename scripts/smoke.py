#!/usr/bin/env python
"""Smoke evaluations on tiny clips of every dataset format (tiny model, seeded random weights).

    python scripts/smoke.py [--out runs/smoke] [--cache .cache/vidtldr] [dataset ...]
"""

from __future__ import annotations

import argparse
import os

from vidtldr.errors import cli_guard
from vidtldr.run.runner_smoke import smoke_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="*", help="dataset configs (default: all)")
    parser.add_argument("--out", default=os.path.join(os.environ.get("VIDTLDR_RUNS", "runs"), "smoke"))
    parser.add_argument("--cache", default=os.environ.get("VIDTLDR_CACHE", ".cache/vidtldr"))
    args = parser.parse_args()
    with cli_guard("smoke"):
        records = smoke_all(args.cache, args.out, args.datasets or None)
        print(f"{len(records)} smoke evaluations complete; records under {args.out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
