"""Decoders other than decord (``data.decoder=pyav|torchcodec``), for the same sampled indices.

Each reads the frame count and average frame rate the way decord does (the stream's frame count
from the container, ``avg_frame_rate``), samples with :func:`vidtldr.data.video.sample_indices`,
and returns uint8 ``[T,3,H,W]`` RGB frames. How they compare with decord, frame by frame, is in
docs/protocol.md section 6 and ``results/bench_decode.md``.

PyAV reads only what the targets need (exact, checked against decord): the packets are listed once
without decoding (their timestamps give presentation order), the targets are grouped by the
keyframe before them, and each group is decoded once from its keyframe; on the way, frames that no
other frame references and that are not targets are not decoded at all (FFmpeg's ``skip_frame``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidtldr.data import video
from vidtldr.data.video import FrameSample, sample_indices, usable_length
from vidtldr.errors import ConfigError, VideoError

DEFAULT_DECODER = "decord"  # the official reader
DECODERS = ("decord", "pyav", "torchcodec")


def read_with(decoder: str, path: str | Path, num_frames: int, trimmed30: bool = False) -> tuple[torch.Tensor, FrameSample]:
    """uint8 ``[T,3,H,W]`` sampled frames of ``path`` and the :class:`FrameSample`, read with ``decoder``."""
    if decoder == DEFAULT_DECODER:
        return video.read_frames_with_info(path, num_frames, trimmed30)
    readers = {"pyav": read_pyav, "torchcodec": read_torchcodec}
    if decoder not in readers:
        raise ConfigError(f"data.decoder={decoder}: accepted values: {', '.join(DECODERS)}")
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video not found: {path}")
    return readers[decoder](path, num_frames, trimmed30)


def read_frames(path: str | Path, num_frames: int, trimmed30: bool = False, decoder: str = DEFAULT_DECODER) -> torch.Tensor:
    """:func:`vidtldr.data.video.read_frames` with a choice of decoder."""
    return read_with(decoder, path, num_frames, trimmed30)[0]


def _sample(path: Path, vlen: int, fps: float, num_frames: int, trimmed30: bool, width: int,
            height: int) -> FrameSample:
    used = usable_length(vlen, fps, trimmed30)
    return FrameSample(str(path), vlen, fps, used, sample_indices(used, num_frames), width, height)


def _stacked(frames: dict[int, np.ndarray], indices: list[int], path: Path) -> torch.Tensor:
    missing = sorted(set(indices) - set(frames))
    if missing:
        raise VideoError(f"cannot decode frames {missing} of {path}: the stream ended before them")
    batch = np.stack([frames[i] for i in indices])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------- PyAV


def _fps_of(stream) -> float:
    # decord: avg_frame_rate, else r_frame_rate (num / den as a double)
    for rate in (stream.average_rate, stream.base_rate):
        if rate is not None and rate.numerator > 0 and rate.denominator > 0:
            return rate.numerator / rate.denominator
    return 0.0


def packet_plan(container, stream) -> tuple[list[int], list[int]]:
    """(presentation timestamps in presentation order, those of keyframes) from one demux pass
    (no decoding). Frame ``i`` of the video is the frame with the ``i``-th smallest timestamp."""
    pts, keys = [], []
    for packet in container.demux(stream):
        if packet.size == 0 or packet.pts is None:
            continue
        pts.append(int(packet.pts))
        if packet.is_keyframe:
            keys.append(int(packet.pts))
    container.seek(0, stream=stream, backward=True, any_frame=False)
    return sorted(pts), sorted(keys)


def _groups(targets: list[int], keys: list[int]) -> list[tuple[int, list[int]]]:
    """Target timestamps grouped by the last keyframe at or before each (sorted)."""
    groups: dict[int, list[int]] = {}
    for t in sorted(set(targets)):
        before = [k for k in keys if k <= t]
        groups.setdefault(before[-1] if before else keys[0] if keys else 0, []).append(t)
    return sorted(groups.items())


def _decode_group(container, stream, start: int, wanted: list[int], out: dict[int, np.ndarray],
                  skip_nonref: bool = True) -> None:
    """Decode from keyframe ``start`` up to the last of ``wanted`` (timestamps), keeping those frames."""
    ctx = stream.codec_context
    container.seek(start, stream=stream, backward=True, any_frame=False)
    want, last = set(wanted), max(wanted)
    for packet in container.demux(stream):
        # A frame nothing refers to is needed only when it is a target (exact: references are decoded).
        ctx.skip_frame = "DEFAULT" if packet.pts in want or packet.pts is None or not skip_nonref else "NONREF"
        for frame in ctx.decode(packet):
            if frame.pts in want and frame.pts not in out:
                out[frame.pts] = frame.to_ndarray(format="rgb24")
        if want.issubset(out) or (packet.pts is not None and packet.dts is not None and packet.dts > last):
            break
    ctx.skip_frame = "DEFAULT"
    for frame in ctx.decode(None) if not want.issubset(out) else ():
        if frame.pts in want and frame.pts not in out:
            out[frame.pts] = frame.to_ndarray(format="rgb24")


def read_pyav(path: Path, num_frames: int, trimmed30: bool, *, skip_nonref: bool = True) -> tuple[torch.Tensor, FrameSample]:
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency
        raise ConfigError("data.decoder=pyav needs the `av` package (pip install av)") from None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            stream.codec_context.thread_count = 1
            pts, keys = packet_plan(container, stream)
            vlen = int(stream.frames) if stream.frames > 0 else len(pts)
            info = _sample(path, vlen, _fps_of(stream), num_frames, trimmed30, stream.codec_context.width,
                           stream.codec_context.height)
            if max(info.indices) >= len(pts):
                raise VideoError(f"cannot decode frames {info.indices} of {path}: the stream has {len(pts)} "
                                 f"frames, the container says {vlen}")
            target = {i: pts[i] for i in info.indices}
            by_pts: dict[int, np.ndarray] = {}
            for start, wanted in _groups(list(target.values()), keys):
                _decode_group(container, stream, start, wanted, by_pts, skip_nonref)
    except (av.FFmpegError, IndexError) as exc:
        raise VideoError(f"cannot decode {path} with PyAV: {exc}") from None
    frames = {i: by_pts[p] for i, p in target.items() if p in by_pts}
    return _stacked(frames, info.indices, path), info


# ----------------------------------------------------------------------------- torchcodec


TORCHCODEC_MISSING = ("data.decoder=torchcodec needs a working torchcodec (pip install torchcodec, built for this "
                      "torch, plus FFmpeg 4-7 shared libraries); use data.decoder=decord or pyav")


def torchcodec_available() -> bool:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or OSError when its libraries do not load
        return False
    return True


def read_torchcodec(path: Path, num_frames: int, trimmed30: bool) -> tuple[torch.Tensor, FrameSample]:
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception:  # noqa: BLE001 - see torchcodec_available
        raise ConfigError(TORCHCODEC_MISSING) from None
    try:
        decoder = VideoDecoder(str(path), dimension_order="NCHW", seek_mode="exact")
        meta = decoder.metadata
        vlen = int(meta.num_frames or len(decoder))
        info = _sample(path, vlen, float(meta.average_fps or 0.0), num_frames, trimmed30, int(meta.width or 0),
                       int(meta.height or 0))
        batch = decoder.get_frames_at(indices=list(info.indices)).data
    except Exception as exc:  # noqa: BLE001 - torchcodec raises RuntimeError/ValueError with FFmpeg text
        raise VideoError(f"cannot decode {path} with torchcodec: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    return batch.to(torch.uint8).contiguous(), info
