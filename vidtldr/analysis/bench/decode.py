"""Decode benchmark (``make bench-decode``, ``python -m vidtldr.bench_decode``).

Generates synthetic videos shaped like two datasets (H.264 through PyAV, one thread, so the bytes
repeat): MSRVTT-like (320x240, 30 fps, 15 s) and ActivityNet-like (1280x720, 30 fps, 150 s, a
keyframe every 250 frames, B-frames). One ActivityNet-like video is encoded and copied (decoding
cost does not depend on the file name; the copies are distinct files for the frame cache). Then,
for 12 sampled frames:

* per decoder (decord, PyAV, torchcodec when it loads): ms per video, and whether its frames equal
  decord's exactly (largest pixel difference otherwise); decord with a threaded codec context too;
* the evaluation's loader (decode, resize, normalise) with 0, 1, 2 and ``auto`` workers: ms per video;
* the frame cache cold (decode + write) and warm (read): ms per video;
* the decode share of an evaluation: per video, decoding beside the UMT-B encoder's measured time on
  this CPU (``results/bench_eval.json``) and on a GPU (``results/bench_eval_cuda.json``).

Writes ``<out>/bench_decode.md`` and ``.json``; the last output line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from vidtldr.errors import cli_guard
from vidtldr.jsonio import dumps

NUM_FRAMES = 12
SIZE = 224


@dataclass(frozen=True)
class Kind:
    name: str
    width: int
    height: int
    fps: int
    seconds: int
    keyint: int


KINDS = {"msrvtt": Kind("msrvtt", 320, 240, 30, 15, 250),
         "anet": Kind("anet", 1280, 720, 30, 150, 250)}


def synthetic_frame(i: int, width: int, height: int, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB frame ``i``: a textured background panning 2 px a frame, a bright block crossing it, and
    fresh low-amplitude noise over the lower half (grain: residuals in every frame, as in camera footage)."""
    img = np.roll(base, shift=2 * i, axis=1).copy()
    x = (7 * i) % max(width - width // 8, 1)
    y = (3 * i) % max(height - height // 6, 1)
    img[y:y + height // 6, x:x + width // 8] = (240, 200, 40)
    half = img[height // 2:].astype(np.int16) + rng.integers(-6, 7, size=(height - height // 2, width, 1), dtype=np.int16)
    img[height // 2:] = half.clip(0, 255).astype(np.uint8)
    return img


def write_video(path: Path, kind: Kind) -> Path:
    import av

    rng = np.random.default_rng(0)
    # Smooth texture (upsampled noise): compressible like real footage, not a flat frame.
    coarse = rng.integers(0, 255, size=(kind.height // 16 + 1, kind.width // 16 + 1, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[: kind.height, : kind.width]
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(kind.fps))
        stream.width, stream.height, stream.pix_fmt = kind.width, kind.height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "26", "g": str(kind.keyint), "keyint_min": str(kind.keyint),
                          "bf": "3", "threads": "1", "sc_threshold": "0"}
        for i in range(kind.fps * kind.seconds):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, kind.width, kind.height, base, rng), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def make_videos(folder: Path, kind: Kind, count: int) -> list[str]:
    """``count`` files of ``kind``: one encoded, the rest copies (distinct files, same content)."""
    first = write_video(folder / f"{kind.name}_0.mp4", kind)
    out = [first]
    for k in range(1, count):
        out.append(folder / f"{kind.name}_{k}.mp4")
        shutil.copyfile(first, out[-1])
    return [str(p) for p in out]


def _median_ms(seconds: list[float], per: int) -> float:
    return round(1000 * statistics.median(seconds) / per, 1)


def time_reads(videos: list[str], read, repeats: int) -> list[float]:
    """Seconds per pass over ``videos`` with ``read(path)``."""
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for v in videos:
            read(v)
        out.append(time.perf_counter() - start)
    return out


def decord_threads(path: str, threads: int) -> torch.Tensor:
    """The official reading with a threaded codec context (``num_threads``)."""
    import decord

    from vidtldr.data.video import sample_indices

    vr = decord.VideoReader(path, num_threads=threads)
    batch = vr.get_batch(sample_indices(len(vr), NUM_FRAMES)).asnumpy()
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


def decoder_rows(videos: list[str], repeats: int) -> list[dict]:
    from vidtldr.data.decoders import read_frames, read_pyav, torchcodec_available

    readers = {"decord": lambda p: read_frames(p, NUM_FRAMES),
               "decord, 2-thread codec": lambda p: decord_threads(p, 2),
               "pyav": lambda p: read_frames(p, NUM_FRAMES, decoder="pyav"),
               "pyav, non-reference frames decoded too": lambda p: read_pyav(Path(p), NUM_FRAMES, False,
                                                                             skip_nonref=False)[0]}
    if torchcodec_available():
        readers["torchcodec"] = lambda p: read_frames(p, NUM_FRAMES, decoder="torchcodec")
    reference = [read_frames(v, NUM_FRAMES) for v in videos[:1]]
    rows = []
    for name, read in readers.items():
        got = [read(v) for v in videos[:1]]
        diff = max(int((a.int() - b.int()).abs().max()) if a.shape == b.shape else 255
                   for a, b in zip(reference, got, strict=True))
        rows.append({"decoder": name, "ms_per_video": _median_ms(time_reads(videos, read, repeats), len(videos)),
                     "frames_equal_decord": diff == 0, "max_abs_diff": diff})
    if not torchcodec_available():
        rows.append({"decoder": "torchcodec", "ms_per_video": None, "frames_equal_decord": None,
                     "max_abs_diff": None, "note": "not loadable here"})
    return rows


def loader_ms(videos: list[str], num_workers: int, repeats: int, frame_cache=None) -> float:
    from vidtldr.data.dataset import VideoDataset, make_loader

    seconds = []
    for _ in range(repeats):
        loader = make_loader(VideoDataset(videos, NUM_FRAMES, size=SIZE, frame_cache=frame_cache), 1,
                             min(num_workers, len(videos)))
        start = time.perf_counter()
        with loader:
            for _batch in loader:
                pass
        seconds.append(time.perf_counter() - start)
    return _median_ms(seconds, len(videos))


def worker_rows(videos: list[str], repeats: int) -> list[dict]:
    from vidtldr.data.workers import resolve_num_workers

    auto = resolve_num_workers("auto", "cpu")
    counts = sorted({0, 1, 2, auto})
    return [{"num_workers": n, "auto": n == auto, "ms_per_video": loader_ms(videos, n, repeats)} for n in counts]


def cache_rows(videos: list[str], folder: Path, repeats: int) -> dict:
    from vidtldr.run.frame_cache import FrameCache

    cold = []
    for k in range(repeats):
        cache = FrameCache(folder / f"cold{k}", 1 << 34)
        cold.append(loader_ms(videos, 0, 1, cache))
    warm = loader_ms(videos, 0, repeats, cache)
    entry = next(iter((folder / f"cold{repeats - 1}").glob("*.frames")))
    return {"cold_ms_per_video": round(statistics.median(cold), 1), "warm_ms_per_video": warm,
            "entry_mib": round(entry.stat().st_size / 2 ** 20, 2)}


def encoder_seconds(results_dir: Path) -> dict:
    """UMT-B vision seconds per video measured by bench_eval (CPU) and on CUDA, where recorded."""
    out = {}
    for label, name in (("cpu", "bench_eval.json"), ("cuda", "bench_eval_cuda.json")):
        path = results_dir / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        grouped = data.get("engines", {}).get("grouped", {})
        seconds = (grouped.get("units") or {}).get("vision_per_video_s")
        if seconds is not None:
            info = data.get("machine") or {}
            out[label] = {"s_per_video": round(float(seconds), 4), "source": f"results/{name}",
                          "device": info.get("gpu") or info.get("device", label),
                          "precision": (data.get("setup") or {}).get("precision"),
                          "load_average": info.get("loadavg_before")}
    return out


def machine() -> dict:
    load = os.getloadavg()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cores": cores, "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "load_average": [round(x, 2) for x in load]}


def decode_share(kind_rows: dict, encoder: dict) -> list[dict]:
    """Per kind and encoder device: decode ms per video (one core, with the workers, from the warm
    frame cache) against the encoder's, and decoding's share of the two together."""
    rows = []
    for kind, rec in kind_rows.items():
        one_core = next(r["ms_per_video"] for r in rec["workers"] if r["num_workers"] == 0)
        best = min(r["ms_per_video"] for r in rec["workers"])
        for device, enc in encoder.items():
            enc_ms = 1000 * enc["s_per_video"]
            for label, ms in (("serial (num_workers=0)", one_core), ("best worker count", best),
                              ("frame cache warm", rec["frame_cache"]["warm_ms_per_video"])):
                rows.append({"kind": kind, "encoder": device, "decode": label, "decode_ms": ms,
                             "encoder_ms": round(enc_ms, 1), "decode_share_pct": round(100 * ms / (ms + enc_ms), 1)})
    return rows


def render(result: dict) -> str:
    m = result["machine"]
    lines = ["# Decode benchmark", "",
             f"Generated by `python -m vidtldr.bench_decode` (`make bench-decode`); created {result['created']}.",
             f"Machine: {m['processor']}, {m['cores']} cores usable; {m['platform']}; torch {m['torch']}, "
             f"{m['torch_threads']} threads; load average before/after {result['load_before']} / "
             f"{result['load_after']} (`uptime`). {result['note']}", "",
             f"Videos (synthetic, H.264 via PyAV/libx264 veryfast, crf 26, B-frames 3, one thread): "
             f"{result['setup']}. {NUM_FRAMES} frames sampled (official \"middle\" rule), resized to {SIZE}x{SIZE}.",
             f"Medians of {result['repeats']} passes; ms per video.", ""]
    for kind, rec in result["kinds"].items():
        lines += [f"## {kind}: {rec['describe']}", "", "| decoder | ms / video | frames equal decord | max pixel diff |",
                  "|---|---:|---|---:|"]
        for r in rec["decoders"]:
            ms = "n/a" if r["ms_per_video"] is None else f"{r['ms_per_video']:.1f}"
            equal = {True: "yes", False: "**no**", None: r.get("note", "")}[r["frames_equal_decord"]]
            lines.append(f"| {r['decoder']} | {ms} | {equal} | {'' if r['max_abs_diff'] is None else r['max_abs_diff']} |")
        lines += ["", "| loader (decode, resize, normalise) | ms / video |", "|---|---:|"]
        for r in rec["workers"]:
            lines.append(f"| num_workers={r['num_workers']}{' (auto here)' if r['auto'] else ''} | {r['ms_per_video']:.1f} |")
        fc = rec["frame_cache"]
        lines += [f"| frame cache cold (decode + write), num_workers=0 | {fc['cold_ms_per_video']:.1f} |",
                  f"| frame cache warm (read), num_workers=0 | {fc['warm_ms_per_video']:.1f} |",
                  "", f"One frame-cache entry: {fc['entry_mib']} MiB.", ""]
    if result["share"]:
        lines += ["## Decode share of an evaluation (UMT-B, 12 frames)", "",
                  "Encoder seconds per video as measured by `bench_eval` "
                  + "; ".join(f"{d}: {e['s_per_video'] * 1000:.1f} ms ({e['device']}, {e['precision']}, {e['source']}, "
                              f"load {e['load_average']})" for d, e in result["encoder"].items()) + ".", "",
                  "| videos | encoder | decoding | decode ms | encoder ms | decode share |", "|---|---|---|---:|---:|---:|"]
        for r in result["share"]:
            lines.append(f"| {r['kind']} | {r['encoder']} | {r['decode']} | {r['decode_ms']:.1f} | {r['encoder_ms']:.1f} | "
                         f"{r['decode_share_pct']:.1f}% |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m vidtldr.bench_decode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results", help="folder for bench_decode.md/.json (default results)")
    parser.add_argument("--msrvtt-videos", type=int, default=8)
    parser.add_argument("--msrvtt-seconds", type=int, default=KINDS["msrvtt"].seconds)
    parser.add_argument("--anet-videos", type=int, default=3)
    parser.add_argument("--anet-seconds", type=int, default=KINDS["anet"].seconds,
                        help="length of the ActivityNet-like video (fewer seconds: faster generation)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--note", default="", help="a sentence about the machine, e.g. who else was using it")
    parser.add_argument("--work", default=None, help="folder for the generated videos (default: a temporary one)")
    return parser.parse_args(argv)


def run(args) -> dict:
    from dataclasses import replace

    kinds = {"msrvtt": (replace(KINDS["msrvtt"], seconds=args.msrvtt_seconds), args.msrvtt_videos),
             "anet": (replace(KINDS["anet"], seconds=args.anet_seconds), args.anet_videos)}
    load_before = [round(x, 2) for x in os.getloadavg()]
    result = {"created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "machine": machine(),
              "load_before": load_before, "repeats": args.repeats, "note": args.note, "kinds": {}}
    setup = []
    with tempfile.TemporaryDirectory(prefix="vidtldr_bench_decode_", dir=args.work) as tmp:
        for name, (kind, count) in kinds.items():
            start = time.perf_counter()
            videos = make_videos(Path(tmp) / "videos", kind, count)
            made = time.perf_counter() - start
            describe = (f"{count} videos {kind.width}x{kind.height}, {kind.fps} fps, {kind.seconds} s, keyframe every "
                        f"{kind.keyint} frames ({os.path.getsize(videos[0]) / 2 ** 20:.1f} MiB each, generated in {made:.0f} s)")
            setup.append(f"{name}: {describe}")
            print(f"[bench_decode] {name}: {describe}", flush=True)
            result["kinds"][name] = {"describe": describe, "decoders": decoder_rows(videos, args.repeats),
                                     "workers": worker_rows(videos, args.repeats),
                                     "frame_cache": cache_rows(videos, Path(tmp) / f"frames_{name}", args.repeats)}
    result["setup"] = "; ".join(setup)
    result["encoder"] = encoder_seconds(Path(args.out))
    result["share"] = decode_share(result["kinds"], result["encoder"])
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    with cli_guard("vidtldr.bench_decode"):
        from vidtldr.files import atomic_write_text

        result = run(args)
        out = Path(args.out)
        atomic_write_text(out / "bench_decode.json", dumps(result, indent=1))
        atomic_write_text(out / "bench_decode.md", render(result))
        print(render(result))
        print(dumps({"msrvtt_ms": result["kinds"]["msrvtt"]["workers"][0]["ms_per_video"],
                          "anet_ms": result["kinds"]["anet"]["workers"][0]["ms_per_video"]}))
    return 0
