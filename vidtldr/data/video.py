"""Frame sampling and decord decoding (docs/protocol.md section 6).

Sampling is pure (``usable_length``, ``sample_indices``); decoding opens a fresh
``decord.VideoReader(path, num_threads=1)`` per call, so it is safe in DataLoader workers.
Every failure is a :class:`VideoError` naming the file. decord is the official reader and the
default; :mod:`vidtldr.data.decoders` reads the same indices with PyAV or torchcodec
(``data.decoder``; their differences are in docs/protocol.md section 6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidtldr.errors import VideoError

TRIM_SECONDS = 30
SAMPLING = "middle"  # the official test-time rule (sample_indices); part of the frame cache's key
# decord 0.6.0 mis-decodes H.264/yuv420p frames of these widths (data_formats README).
DECORD_BAD_WIDTHS = (16, 24, 48, 72)


def usable_length(vlen: int, fps: float, trimmed30: bool) -> int:
    """Number of leading frames eligible for sampling: with ``trimmed30`` (DiDeMo) only the first
    30 s, applied when the clip is strictly longer than 30 s, as ``int(30 * fps)``."""
    if trimmed30 and fps > 0 and vlen / fps > TRIM_SECONDS:
        return int(TRIM_SECONDS * fps)
    return vlen


def sample_indices(vlen: int, num_frames: int) -> list[int]:
    """"middle" sampling: split ``[0, vlen)`` into ``min(num_frames, vlen)`` segments at
    ``linspace(0, vlen, n+1).astype(int)`` and take each segment's middle (rounded down); repeat the
    last index up to ``num_frames`` for short clips."""
    if vlen <= 0:
        raise ValueError(f"cannot sample from a video with {vlen} frames")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    n = min(num_frames, vlen)
    # The official code uses numpy's linspace; its float rounding decides the boundaries.
    bounds = np.linspace(0, vlen, n + 1).astype(int)
    idx = [int((bounds[k] + bounds[k + 1] - 1) // 2) for k in range(n)]
    return idx + [idx[-1]] * (num_frames - n)


@dataclass(frozen=True)
class FrameSample:
    """What sampling saw: decord's frame count and fps, the trimmed length, and the indices."""

    path: str
    num_video_frames: int
    fps: float
    vlen_used: int
    indices: list[int]
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.num_video_frames / self.fps if self.fps > 0 else float("nan")

    @property
    def trimmed(self) -> bool:
        return self.vlen_used < self.num_video_frames


def _width_hint(width: int | None) -> str:
    if width in DECORD_BAD_WIDTHS:
        return (f" (frame width {width}: decord 0.6.0 is known to mis-decode H.264 frames of width "
                f"{', '.join(map(str, DECORD_BAD_WIDTHS))}; re-encode the file with another width)")
    return ""


def probe_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the container header (PyAV), without decoding."""
    try:
        import av

        with av.open(str(path)) as container:
            ctx = container.streams.video[0].codec_context
            return int(ctx.width), int(ctx.height)
    except Exception:  # only a hint for messages and reports; decord decides readability
        return None


def probe_width(path: str | Path) -> int | None:
    size = probe_size(path)
    return size[0] if size else None


def open_video(path: str | Path):
    """Open with decord as the official reader does; VideoError for missing/unreadable files."""
    import decord  # imported lazily: importing decord is slow and not needed for annotations

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video not found: {path}")
    try:
        vr = decord.VideoReader(str(path), num_threads=1)
    except Exception as exc:  # decord raises DECORDError / RuntimeError with C++ text
        raise VideoError(f"cannot open video {path}: {_short(exc)}") from None
    if len(vr) <= 0:
        raise VideoError(f"video {path} has no decodable frames")
    return vr


_DECORD_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:\d+: (Check failed: )?")
# libav failures reach decord's messages as raw error codes; say what they mean instead.
_LIBAV_MEANING = (("cannot find video stream", "no video stream in the file (not a video, or truncated)"),
                  ("Error reading", "the file cannot be parsed as a video container (truncated or corrupt?)"),
                  ("Invalid data found", "the file cannot be parsed as a video container (truncated or corrupt?)"))
_LIBAV_CODE = re.compile(r"\S+ [<>=!]=? -?\d+ \(-?\d+ vs\. -?\d+\)\s*|\[?(AVERROR|error code)[^\]]*\]?")


def _short(exc: Exception) -> str:
    # decord error messages carry a C++ stack trace and a "[time] file.cc:line:" prefix; the
    # first line without the prefix says what happened (translated when it is a libav code).
    text = str(exc).strip().splitlines()
    if not text:
        return type(exc).__name__
    for needle, meaning in _LIBAV_MEANING:
        if needle in text[0]:
            return meaning
    return _LIBAV_CODE.sub("", _DECORD_PREFIX.sub("", text[0])).strip() or type(exc).__name__


def plan_frames(vr, path: str | Path, num_frames: int, trimmed30: bool) -> FrameSample:
    vlen = len(vr)
    fps = float(vr.get_avg_fps())
    used = usable_length(vlen, fps, trimmed30)
    # Width/height stay 0 here: reading them from decord would decode a frame.
    return FrameSample(str(path), vlen, fps, used, sample_indices(used, num_frames), 0, 0)


def decode_indices(vr, path: str | Path, indices: list[int]) -> torch.Tensor:
    """``get_batch(indices)`` as uint8 ``[T,3,H,W]``; any decode fault becomes a VideoError."""
    try:
        batch = vr.get_batch(indices).asnumpy()
    except Exception as exc:
        raise VideoError(f"cannot decode frames {indices} of {path}: {_short(exc)}"
                         f"{_width_hint(probe_width(path))}") from None
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise VideoError(f"video {path} decoded to unexpected data: shape {tuple(batch.shape)}, "
                         f"dtype {batch.dtype} (expected [T,H,W,3] uint8){_width_hint(probe_width(path))}")
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).contiguous()


def read_frames_with_info(path: str | Path, num_frames: int, trimmed30: bool = False) -> tuple[torch.Tensor, FrameSample]:
    """Decode the sampled frames: uint8 ``[T,3,H,W]`` plus the :class:`FrameSample` used."""
    vr = open_video(path)
    plan = plan_frames(vr, path, num_frames, trimmed30)
    frames = decode_indices(vr, path, plan.indices)
    info = FrameSample(plan.path, plan.num_video_frames, plan.fps, plan.vlen_used, plan.indices,
                       int(frames.shape[3]), int(frames.shape[2]))
    return frames, info


def read_frames(path: str | Path, num_frames: int, trimmed30: bool = False) -> torch.Tensor:
    """uint8 ``[T,3,H,W]`` frames the harness samples from ``path`` (official "middle" sampling)."""
    return read_frames_with_info(path, num_frames, trimmed30)[0]


def probe_video(path: str | Path, num_frames: int = 12, trimmed30: bool = False) -> FrameSample:
    """Frame count, fps, size and sampled indices without decoding pixels."""
    vr = open_video(path)
    plan = plan_frames(vr, path, num_frames, trimmed30)
    width, height = probe_size(path) or (0, 0)
    return FrameSample(plan.path, plan.num_video_frames, plan.fps, plan.vlen_used, plan.indices, width, height)
