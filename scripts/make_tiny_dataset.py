#!/usr/bin/env python
"""Write the tiny synthetic dataset (clips + every dataset config's annotation files) into a folder.

usage: python scripts/make_tiny_dataset.py OUT_DIR [DATASET ...]
"""

import json
import sys

from vidtldr.data.tiny import make_tiny_dataset
from vidtldr.errors import cli_guard


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with cli_guard("make_tiny_dataset"):
        summary = make_tiny_dataset(argv[0], argv[1:] or None)
    print(f"wrote {len(summary['datasets'])} dataset(s), {len(summary['clips'])} clips per video folder, under {argv[0]}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
