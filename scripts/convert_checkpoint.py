#!/usr/bin/env python
"""Convert an official UMT checkpoint to .safetensors (tensors only, nothing executable).

    python scripts/convert_checkpoint.py SRC.pth DST.safetensors [--trust-pickle]

By default SRC is read with ``torch.load(weights_only=True)``, like every load in vidtldr. A file
that holds other Python objects (e.g. an optimizer state with custom classes) can only be read by
running its pickled code: pass ``--trust-pickle`` to do that **once, for a file you trust**; the
output keeps only the model state_dict (``ckpt["model"]`` when present), so later loads are safe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vidtldr.errors import CheckpointError, cli_guard
from vidtldr.models.checkpoint import read_state_dict, save_safetensors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="convert_checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--trust-pickle", action="store_true",
                        help="read SRC with weights_only=False (runs pickled code; only for files you trust)")
    args = parser.parse_args(argv)
    with cli_guard("convert_checkpoint"):
        if args.dst.suffix != ".safetensors":
            raise CheckpointError(f"{args.dst}: the output name must end in .safetensors")
        if args.trust_pickle:
            if not args.src.is_file():
                raise CheckpointError(f"checkpoint not found: {args.src}")
            try:
                obj = torch.load(str(args.src), map_location="cpu", weights_only=False)
            except Exception as exc:  # noqa: BLE001 - whatever the unpickler says, the file is unusable
                raise CheckpointError(f"{args.src}: cannot be read even as a trusted pickle "
                                      f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
            if isinstance(obj, dict) and "model" in obj:
                obj = obj["model"]
            if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
                raise CheckpointError(f"{args.src}: no state_dict (name -> tensor) found in the file")
            state_dict = obj
        else:
            state_dict, _ = read_state_dict(args.src)
        save_safetensors(state_dict, args.dst, metadata={"source": args.src.name})
        print(f"wrote {args.dst} ({len(state_dict)} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
