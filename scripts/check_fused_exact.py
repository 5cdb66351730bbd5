#!/usr/bin/env python
"""Check that the fused execution takes every reduction decision of the materialized (official)
one, for gapped schedules, on a full-size encoder with seeded random weights and a seeded input.

    python scripts/check_fused_exact.py [--model umt_b16] [--frames 12] [--batch 2] [--device cpu|cuda]
                                        [--precision fp32|fp16|bf16] [--old] [--time N] [--deterministic]
                                        [--reducers vidtldr,tome,...]

Schedules: the published UMT-B MSRVTT one and gapped ones ([0,600,0,200], merges after four and after
eight idle blocks), scaled to the token count; vid-TLDR, ToMe, random drop and the zoo's attention/key/hidden-state reducers (``NAMES``). Per schedule: the last
exact block, whether the token counts, every merge / keep index and the block outputs up to the last
reducing block are identical, and the largest difference of the final tokens. ``--old`` runs the
fused execution without the exact prefix (SDPA before merges) to show what it changes. ``--time N``
also prints vid-TLDR's median seconds per clip over N interleaved repeats: fused, fused without the
exact prefix, materialized (and no merging). Exit status 1 if any decision differs (without ``--old``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import torch

from vidtldr.models import vit
from vidtldr.models.config import load_architecture
from vidtldr.reduce import build_reducer, parse_schedule


# Every reducer whose decisions the exact prefix must reproduce (those that read the attention map,
# keys or hidden states); repshift opts out (exact_decisions = False).
NAMES = ("vidtldr", "tome", "random", "fastv", "visionzip", "pitome", "random_merge", "divprune", "rlt+vidtldr")


def schedules(num_tokens: int) -> list[list[int]]:
    s = num_tokens / 2352  # the published schedules are for 12 frames of UMT-B (2352 tokens)
    a, b, c = round(600 * s), round(200 * s), round(100 * s)
    return [[a, b, c], [0, a, 0, b], [0, 0, 0, 0, a, b, c], [0] * 8 + [a, 0, b]]


def decisions(out) -> list[dict]:
    return [{k: v for k, v in step.items() if k.endswith("_idx")} for step in out.state.trace]


def same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b, strict=True))


class _NoExactPrefix:
    """The reducer unchanged, but the encoder sees no reducing blocks: no exact prefix (SDPA before merges)."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def reducing_blocks(self, num_tokens):
        return []


def timings(model, videos, schedules_: list, repeats: int, autocast, device: str) -> None:
    """Median s/clip of vid-TLDR per schedule: fused, fused without the exact prefix, materialized."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    depth = len(model.encoder.blocks)
    runs = {("none", "fused"): None, ("none", "materialized"): None}
    for schedule in schedules_:
        for how in ("fused", "sdpa before merges", "materialized"):
            runs[(str(schedule), how)] = schedule
    times: dict = {key: [] for key in runs}
    for rep in range(repeats + 1):  # the first round warms up
        for (label, how), schedule in runs.items():
            model.attention = "materialized" if how == "materialized" else "fused"
            reducer = None if schedule is None else build_reducer("vidtldr", parse_schedule(schedule, depth))
            if reducer is not None and how == "sdpa before merges":
                reducer = _NoExactPrefix(reducer)
            sync()
            start = time.perf_counter()
            with torch.no_grad(), autocast:
                model(videos, reducer=reducer)
            sync()
            if rep:
                times[(label, how)].append((time.perf_counter() - start) / videos.shape[0])
    med = {key: statistics.median(v) for key, v in times.items()}
    for (label, how), t in med.items():
        extra = ""
        if how == "fused" and label != "none":
            extra = f"  ({t / med[(label, 'sdpa before merges')]:.3f}x the time without the exact prefix)"
        print(f"time vidtldr r={label} {how}: {t:.4f} s/clip{extra}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="umt_b16")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--old", action="store_true", help="fused without the exact prefix (SDPA before merges)")
    ap.add_argument("--time", type=int, default=0, metavar="N", help="also time vid-TLDR (N repeats)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--reducers", default=",".join(NAMES), help=f"comma-separated, default {','.join(NAMES)}")
    ap.add_argument("--deterministic", action="store_true",
                    help="torch.use_deterministic_algorithms (CUDA: the merges' scatter-add otherwise uses atomics, "
                         "so even two materialized runs differ in the last bits)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    cfg = load_architecture(args.model, num_frames=args.frames).vision
    torch.manual_seed(0)
    model = vit.VisionTransformer(cfg).eval().to(args.device)
    videos = torch.randn(args.batch, args.frames, 3, cfg.img_size, cfg.img_size,
                         generator=torch.Generator().manual_seed(1)).to(args.device)
    if args.old:
        vit.VisionTransformer.exact_through = lambda self, reducer, n: -1
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.precision)
    autocast = (torch.autocast(device_type=args.device.split(":")[0], dtype=dtype) if dtype
                else contextlib.nullcontext())
    num_tokens = args.frames // cfg.tubelet_size * cfg.grid ** 2
    bad = 0
    for name in args.reducers.split(","):
        for schedule in schedules(num_tokens):
            outs = {}
            for mode in ("fused", "materialized"):
                model.attention = mode
                reducer = build_reducer(name, parse_schedule(schedule, cfg.depth))
                with torch.no_grad(), autocast:
                    outs[mode] = model(videos, reducer=reducer, trace=True)
            f, m = outs["fused"], outs["materialized"]
            last = max(i for i, r in enumerate(schedule) if r)
            ok = f.token_counts == m.token_counts and same(decisions(f), decisions(m))
            prefix = zip(f.block_outputs[:last + 1], m.block_outputs[:last + 1], strict=True)
            bitwise = all(torch.equal(a, b) for a, b in prefix)
            diff = (f.tokens.float() - m.tokens.float()).abs().max().item()
            bad += not ok
            print(f"{name:8s} r={schedule}: exact through block {f.exact_through}; same decisions: {ok}; "
                  f"bitwise through block {last}: {bitwise}; final tokens max|diff| {diff:.2e}", flush=True)
    if args.time:
        timings(model, videos, schedules(num_tokens)[:2], args.time, autocast, args.device)
    print(f"{args.model}, {args.frames} frames, batch {args.batch}, {args.device} ({torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads"
          f"{', ' + torch.cuda.get_device_name() if args.device.startswith('cuda') else ''}), {args.precision}"
          f"{', without the exact prefix' if args.old else ''}{', deterministic' if args.deterministic else ''}: "
          f"{bad} schedule(s) with other decisions")
    return 1 if bad and not args.old else 0


if __name__ == "__main__":
    sys.exit(main())
