"""Decode + transform throughput (the data part of ``make bench``).

usage: python -m vidtldr.data.bench [--videos a.mp4 b.mp4 | --dir FOLDER] [--num-frames 12] [--trimmed30]
                                    [--batch-size 1] [--workers 0] [--repeats 3] [--warmup 1]

Without ``--videos``/``--dir`` it measures the tiny synthetic clips (generated in a temporary folder).
The last output line is one JSON object with ``clips_per_s``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence


from vidtldr import jsonio
from vidtldr.data.dataset import VideoDataset, make_loader
from vidtldr.errors import ConfigError, cli_guard
from vidtldr.provenance import machine

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov")


def decode_throughput(videos: Sequence[str | Path], num_frames: int = 12, trimmed30: bool = False,
                      size: int = 224, batch_size: int = 1, num_workers: int = 0, repeats: int = 3,
                      warmup: int = 1) -> dict:
    """Decode (decord, sampled frames) + eval transform through the same loader as evaluation.
    Returns ``clips_per_s`` (median over ``repeats`` passes) and the per-pass timings."""
    if not videos:
        raise ConfigError("no videos to benchmark")
    loader = make_loader(VideoDataset(videos, num_frames, trimmed30, size), batch_size, num_workers)

    def one_pass() -> float:
        start = time.perf_counter()
        for _ in loader:
            pass
        return time.perf_counter() - start

    for _ in range(warmup):
        one_pass()
    seconds = [one_pass() for _ in range(max(repeats, 1))]
    med = statistics.median(seconds)
    return {"clips": len(videos), "num_frames": num_frames, "size": size, "batch_size": batch_size,
            "num_workers": num_workers, "repeats": len(seconds), "seconds": seconds,
            "clips_per_s": len(videos) / med if med > 0 else float("inf"),
            "frames_per_s": len(videos) * num_frames / med if med > 0 else float("inf"),
            **machine(),  # the shared machine block (torch_threads, machine, processor, cores, ...)
            "videos": [str(v) for v in videos[:5]] + (["..."] if len(videos) > 5 else [])}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vidtldr.data.bench", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--videos", nargs="+", default=None, help="video files")
    which.add_argument("--dir", default=None, help="every video file under this folder")
    parser.add_argument("--num-frames", type=int, default=12)
    parser.add_argument("--trimmed30", action="store_true")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with cli_guard("vidtldr.data.bench"), tempfile.TemporaryDirectory(prefix="vidtldr_bench_") as tmp:
        if args.videos:
            videos = list(args.videos)
        elif args.dir:
            videos = sorted(str(p) for p in Path(args.dir).rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        else:
            from vidtldr.data.tiny import encode_clips

            videos = [str(p) for p in encode_clips(tmp)]
        res = decode_throughput(videos, args.num_frames, args.trimmed30, args.size, args.batch_size, args.workers,
                                args.repeats, args.warmup)
        print(f"decode+transform: {res['clips_per_s']:.2f} clips/s ({res['frames_per_s']:.1f} frames/s), "
              f"{res['clips']} clips x {res['num_frames']} frames, batch {res['batch_size']}, "
              f"{res['num_workers']} workers, median of {res['repeats']}")
        print(jsonio.dumps(res, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
