"""Show which frames the harness samples from a video.

usage: python -m vidtldr.data.inspect VIDEO [--num-frames 12] [--trimmed30] [--sheet out.png] [--size 224]
       python -m vidtldr.data.inspect VIDEO --sampling interval|segment [--frame-interval 4]
                                        [--clips 5] [--crops 3] [--num-frames 16] [--size 224]

The second form shows action recognition's test views (data/views.py): each clip's frame indices,
the resized frame size and each crop's top-left corner.

Prints the frame count, fps, duration, the trim and the sampled indices (with their times); with
``--sheet`` also writes a contact sheet PNG of the sampled frames after the eval transform (the
224x224 uint8 frames the normalisation then turns into the model's input). The last output line
is one JSON object with ``num_video_frames``, ``fps``, ``indices`` and more.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from vidtldr import jsonio
from vidtldr.data.transforms import resize_uint8
from vidtldr.data.video import FrameSample, read_frames_with_info
from vidtldr.errors import ConfigError, cli_guard
from vidtldr.files import atomic_output



def contact_sheet(frames_u8: torch.Tensor, indices: list[int], columns: int = 6, pad: int = 4):
    """PIL image of uint8 ``[T,3,H,W]`` frames in a grid, each labelled with its frame index."""
    from PIL import Image, ImageDraw

    t, _, h, w = frames_u8.shape
    cols = min(columns, t)
    rows = math.ceil(t / cols)
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for k in range(t):
        x, y = pad + (k % cols) * (w + pad), pad + (k // cols) * (h + pad)
        sheet.paste(Image.fromarray(frames_u8[k].permute(1, 2, 0).numpy()), (x, y))
        draw.rectangle((x, y, x + 44, y + 12), fill=(0, 0, 0))
        draw.text((x + 2, y + 1), f"#{indices[k]}", fill=(255, 255, 0))
    return sheet


def describe(info: FrameSample, trimmed30: bool) -> list[str]:
    lines = [f"video: {info.path}",
             f"size: {info.width}x{info.height}, frames (decord): {info.num_video_frames}, fps: {info.fps:.6g}, "
             f"duration: {info.duration_s:.3f} s",
             f"trimmed30: {trimmed30} -> frames eligible: {info.vlen_used}"
             + (" (first 30 s only)" if info.trimmed else ""),
             f"sampled {len(info.indices)} frames (middle of {min(len(info.indices), info.vlen_used)} segments"
             + (", last index repeated" if len(set(info.indices)) < len(info.indices) else "") + "):"]
    for k, idx in enumerate(info.indices):
        lines.append(f"  {k:2d}: frame {idx:6d}  t={idx / info.fps:8.3f} s" if info.fps > 0 else f"  {k:2d}: frame {idx}")
    return lines


def inspect_video(path: str | Path, num_frames: int = 12, trimmed30: bool = False, sheet: str | Path | None = None,
                  size: int = 224) -> dict:
    frames, info = read_frames_with_info(path, num_frames, trimmed30)
    result = {"video": str(path), "num_video_frames": info.num_video_frames, "fps": info.fps,
              "duration_s": info.duration_s, "width": info.width, "height": info.height,
              "num_frames": num_frames, "trimmed30": trimmed30, "vlen_used": info.vlen_used,
              "indices": info.indices, "times_s": [i / info.fps for i in info.indices] if info.fps > 0 else None,
              "sheet": None}
    if sheet:
        sheet = Path(sheet)
        with atomic_output(sheet, ".png") as tmp:
            contact_sheet(resize_uint8(frames, size), info.indices).save(tmp)
        result["sheet"] = str(sheet)
    result["_lines"] = describe(info, trimmed30)
    return result


def inspect_views(path: str | Path, num_frames: int, sampling: str, clips: int, crops: int, size: int,
                  interval: int | None) -> dict:
    """The view plan of one video (no pixels decoded) and its description lines."""
    from vidtldr.data.video import probe_video
    from vidtldr.data.views import plan_views

    info = probe_video(path, num_frames)
    plan = plan_views(info.num_video_frames, info.height, info.width, num_frames=num_frames, sampling=sampling,
                      clips=clips, crops=crops, size=size, interval=interval)
    lines = [f"video: {path}", f"size: {info.width}x{info.height}, frames (decord): {info.num_video_frames}, "
             f"fps: {info.fps:.6g}",
             f"{sampling} sampling, {num_frames} frames" + (f" every {interval}" if sampling == "interval" else "")
             + f": {clips} clip(s) x {crops} crop(s) = {plan.num_views} views",
             f"resized to {plan.resized[1]}x{plan.resized[0]} (short side {size}); crops of {size}x{size}:"]
    lines += [f"  crop {k}: top {c.top}, left {c.left}" for k, c in enumerate(plan.crops)]
    lines += [f"  clip {k}: frames {clip}" for k, clip in enumerate(plan.clips)]
    result = {"video": str(path), "num_video_frames": info.num_video_frames, "fps": info.fps,
              "width": info.width, "height": info.height, "sampling": sampling, "frame_interval": interval,
              "num_frames": num_frames, **plan.describe(), "_lines": lines}
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m vidtldr.data.inspect", description=__doc__.split("\n\n")[0])
    parser.add_argument("video", help="video file")
    parser.add_argument("--num-frames", type=int, default=12, help="frames sampled (default 12; zero-shot runs use 4)")
    parser.add_argument("--trimmed30", action="store_true", help="only the first 30 s are eligible (DiDeMo)")
    parser.add_argument("--sheet", default=None, help="write a contact sheet PNG of the sampled frames here")
    parser.add_argument("--size", type=int, default=224, help="frame size after the eval resize (views: crop size)")
    parser.add_argument("--sampling", choices=("middle", "interval", "segment"), default="middle",
                        help="middle: retrieval/QA sampling (default); interval / segment: action recognition views")
    parser.add_argument("--frame-interval", type=int, default=4, help="interval sampling: frames between samples")
    parser.add_argument("--clips", type=int, default=1, help="views: temporal clips")
    parser.add_argument("--crops", type=int, default=1, help="views: spatial crops")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with cli_guard("vidtldr.data.inspect"):
        for key in ("num_frames", "size", "frame_interval", "clips", "crops"):
            if getattr(args, key) < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be an integer >= 1, got {getattr(args, key)}")
        if args.sampling == "middle":
            result = inspect_video(args.video, args.num_frames, args.trimmed30, args.sheet, args.size)
        else:
            result = inspect_views(args.video, args.num_frames, args.sampling, args.clips, args.crops, args.size,
                                   args.frame_interval if args.sampling == "interval" else None)
            result["sheet"] = None
        for line in result.pop("_lines"):
            print(line)
        if result["sheet"]:
            print(f"contact sheet: {result['sheet']}")
        print(jsonio.dumps(result, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
