"""Encoder time of attention-map scoring (vid-TLDR) vs representation shift (repshift) at equal GFLOPs.

Needs only torch (no Hydra, no video decoder), so it runs on a bare GPU machine. Random weights
(the timing does not depend on them), one seeded input batch; every merge runs the same schedule,
so the token counts and the paper-convention GFLOPs are equal and the time difference is what
scoring from the attention map costs: vid-TLDR must compute softmax statistics in its scoring
blocks, repshift reads the attention's residual update and keeps fused attention (SDPA) everywhere.
Executions are interleaved round-robin; each time is the median over ``--repeats`` forwards.

    python scripts/bench_scoring.py --device cuda --batch 8 --out results/bench_scoring_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vidtldr.cost.vision import reducer_cost, vision_dims  # noqa: E402
from vidtldr.models.config import load_architecture  # noqa: E402
from vidtldr.models.vit import VisionTransformer  # noqa: E402
from vidtldr.reduce import build_reducer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="umt_b16")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--schedule", default="600,200,100", help="merge.r shared by every merge")
    p.add_argument("--merges", default="none,vidtldr,repshift,tome")
    p.add_argument("--attention", default="fused,materialized")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="fp16", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    schedule = [int(x) for x in args.schedule.split(",") if x]
    cfg = load_architecture(args.arch, task="retrieval", num_frames=args.frames)
    torch.manual_seed(0)
    model = VisionTransformer(cfg.vision).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, args.frames, 3, cfg.vision.img_size, cfg.vision.img_size, generator=gen).to(device)
    dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    dims = vision_dims(cfg)

    execs = []
    for merge in args.merges.split(","):
        for mode in args.attention.split(","):
            execs.append((merge, mode))

    def forward(merge: str, mode: str):
        model.attention = mode
        reducer = None if merge == "none" else build_reducer(merge, schedule)
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            return model(x, reducer=reducer)

    times = {e: [] for e in execs}
    outputs = {}
    for e in execs:
        for _ in range(args.warmup):
            out = forward(*e)
        outputs[e] = (out.token_counts, out.tokens.float().cpu())
    _sync(device)
    for _ in range(args.repeats):
        for e in execs:  # round-robin: drift and clock changes hit every execution alike
            _sync(device)
            start = time.perf_counter()
            forward(*e)
            _sync(device)
            times[e].append(time.perf_counter() - start)

    base = statistics.median(times[("none", "fused")]) if ("none", "fused") in times else None
    rows = []
    for merge, mode in execs:
        reducer = None if merge == "none" else build_reducer(merge, schedule)
        med = statistics.median(times[(merge, mode)])
        rows.append({"merge": merge, "attention": mode, "r": [] if merge == "none" else schedule,
                     "tokens": outputs[(merge, mode)][0][-1],
                     "gflops_paper": round(reducer_cost(dims, args.frames, reducer).gflops_paper, 2),
                     "ms_per_batch": round(1000 * med, 3), "clips_per_s": round(args.batch / med, 1),
                     "x_vs_none_fused": round(base / med, 3) if base else None})
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
           else (platform.processor() or platform.machine()), "dtype": args.dtype, "batch": args.batch, "frames": args.frames,
           "arch": args.arch, "repeats": args.repeats, "python": platform.python_version()}
    lines = [f"{args.arch}, {args.frames} frames, batch {args.batch}, {args.dtype}, {env['device']}, "
             f"median of {args.repeats} interleaved forwards (random weights)", "",
             "| merge | attention | r | final tokens | GFLOPs | ms / batch | clips/s | x none (fused) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['merge']} | {r['attention']} | {r['r']} | {r['tokens']} | {r['gflops_paper']} | "
                     f"{r['ms_per_batch']} | {r['clips_per_s']} | {r['x_vs_none_fused']} |")
    print("\n".join(lines))
    result = {"rows": rows, "environment": env}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
