#!/usr/bin/env python
"""Check the data side (readers, pre_text, frame sampling, decoding, transform) against a fixture
folder of the tests/fixtures/data_formats layout. One line per compared item; exit 1 on any
mismatch beyond the fixture README's tolerance.

usage: python scripts/check_data_parity.py FIXTURE_DIR [--decoder pyav|torchcodec]

With --decoder, that decoder's frames are also compared with the recorded ones (frame count,
indices, raw uint8 frames; exact).
"""

import sys
from pathlib import Path

from vidtldr.data.parity import run_parity
from vidtldr.errors import cli_guard


def main(argv: list[str]) -> int:
    decoder = "decord"
    if len(argv) == 3 and argv[1] == "--decoder":
        argv, decoder = argv[:1], argv[2]
    if len(argv) != 1 or argv[0] in ("-h", "--help") or decoder not in ("decord", "pyav", "torchcodec"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    root = Path(argv[0])
    if not root.is_dir():
        print(f"check_data_parity: error: not a folder: {root}", file=sys.stderr)
        return 2
    with cli_guard("check_data_parity"):
        items = run_parity(root, decoder)
    for item in items:
        print(item.line())
    failed = [i for i in items if not i.ok]
    print(f"{len(items) - len(failed)}/{len(items)} items match" + (f", {len(failed)} FAIL" if failed else ""))
    return 1 if failed or not items else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
