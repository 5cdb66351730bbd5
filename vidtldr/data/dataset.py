"""Torch Dataset over a list of videos, and a DataLoader wrapper that records skipped videos.

Each item is decoded independently (the decoder opened inside ``__getitem__``), so DataLoader workers,
batch size and worker count never change the frames. An optional frame cache (duck-typed:
``get(path, frames_key)`` / ``put(path, frames_key, frames)``, e.g. :class:`vidtldr.run.frame_cache.FrameCache`)
serves the resized uint8 frames instead of decoding; each item says whether it came from there. With ``skip_unreadable=True`` a missing or
unreadable video yields zero frames with ``ok=False`` instead of raising; :class:`VideoLoader`
collects those in the main process (worker processes cannot share a list), so
``loader.skipped`` is right for any ``num_workers``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from vidtldr.errors import VideoError
from vidtldr.data.transforms import normalize, resize_short_side_uint8, resize_uint8
from vidtldr.data.decoders import DEFAULT_DECODER, read_frames
from vidtldr.data.video import SAMPLING, decode_indices, open_video
from vidtldr.data.views import ViewPlan, clip_indices, plan_views
from vidtldr.data.workers import worker_init


@dataclass(frozen=True)
class SkippedVideo:
    index: int
    path: str
    reason: str


def through_cache(cache: Any, path: str, frames_key: Callable[[], dict],
                  decode: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """(uint8 pixels of ``path``, whether ``cache`` served them): read from the frame cache under
    ``frames_key()``, else ``decode()`` and store them there (``cache`` None: always decode)."""
    if cache is None:
        return decode(), False
    key = frames_key()
    pixels = cache.get(path, key)
    if pixels is not None:
        return pixels, True
    pixels = decode()
    cache.put(path, key, pixels)
    return pixels, False


class VideoDataset(Dataset):
    """Items ``{"frames": float32 [T,3,size,size], "index": i, "ok": bool, "error": str,
    "from_cache": bool}``."""

    def __init__(self, videos: Sequence[str | Path], num_frames: int, trimmed30: bool = False,
                 size: int = 224, skip_unreadable: bool = False, *, decoder: str = DEFAULT_DECODER,
                 frame_cache: Any = None):
        self.videos = [str(v) for v in videos]
        self.num_frames = int(num_frames)
        self.trimmed30 = bool(trimmed30)
        self.size = int(size)
        self.skip_unreadable = bool(skip_unreadable)
        self.decoder = str(decoder)
        self.frame_cache = frame_cache
        # Set by make_loader: a worker then returns the error with the item and the main process
        # raises it, so the user sees the VideoError's own message rather than a worker traceback.
        self.errors_in_band = False

    def frames_key(self) -> dict:
        """Everything that changes the cached (resized uint8) frames besides the video file itself."""
        return {"num_frames": self.num_frames, "sampling": SAMPLING, "trimmed30": self.trimmed30,
                "size": self.size, "resize": "bicubic-no-antialias", "decoder": self.decoder}

    def resized_frames(self, path: str) -> tuple[torch.Tensor, bool]:
        """(uint8 ``[T,3,size,size]``, whether the frame cache served them)."""
        return through_cache(self.frame_cache, path, self.frames_key, lambda: resize_uint8(
            read_frames(path, self.num_frames, self.trimmed30, decoder=self.decoder), self.size))

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.videos[i]
        try:
            frames, from_cache = self.resized_frames(path)
        except VideoError as exc:
            if not (self.skip_unreadable or self.errors_in_band):
                raise
            frames = torch.zeros(self.num_frames, 3, self.size, self.size)
            return {"frames": frames, "index": i, "ok": False, "error": str(exc), "from_cache": False}
        return {"frames": normalize(frames), "index": i, "ok": True, "error": "", "from_cache": from_cache}


@dataclass(frozen=True)
class ViewSpec:
    """How a classification dataset is viewed at test time (data/views.py)."""

    num_frames: int
    sampling: str
    clips: int
    crops: int
    size: int
    interval: int | None = None

    def describe(self) -> dict:
        return {"num_frames": self.num_frames, "sampling": self.sampling, "frame_interval": self.interval,
                "clips": self.clips, "crops": self.crops, "crop_size": self.size}


def read_views(path: str | Path, spec: ViewSpec) -> tuple[torch.Tensor, ViewPlan]:
    """float32 ``[views, T, 3, size, size]`` (clip-major, then crop) and the plan that made them."""
    pixels, plan = read_view_pixels(path, spec)
    return normalize(pixels), plan


def read_view_pixels(path: str | Path, spec: ViewSpec) -> tuple[torch.Tensor, ViewPlan]:
    """uint8 ``[views, T, 3, size, size]`` (clip-major, then crop), before the normalisation, and the
    plan that made them. Each distinct frame is decoded and resized once, however many views use it."""
    reader = open_video(path)
    clips = clip_indices(len(reader), spec.num_frames, spec.sampling, spec.clips, spec.interval)
    unique = sorted({i for clip in clips for i in clip})
    frames = decode_indices(reader, path, unique)
    plan = plan_views(len(reader), int(frames.shape[2]), int(frames.shape[3]), num_frames=spec.num_frames,
                      sampling=spec.sampling, clips=spec.clips, crops=spec.crops, size=spec.size,
                      interval=spec.interval)
    resized = resize_short_side_uint8(frames, spec.size)
    where = {index: k for k, index in enumerate(unique)}
    views = []
    for clip in plan.clips:
        chosen = resized[[where[i] for i in clip]]
        for crop in plan.crops:
            views.append(chosen[:, :, crop.top:crop.top + crop.size, crop.left:crop.left + crop.size])
    return torch.stack(views), plan


class ViewsDataset(Dataset):
    """Items ``{"frames": float32 [views, T, 3, size, size], "index", "ok", "error", "from_cache"}``
    for classification (every view of one video in one item). With a frame cache (as
    :class:`VideoDataset`'s) the cropped uint8 views are served from it instead of decoding: they
    are what every reducer and schedule of a sweep reads, and they need no video metadata to find."""

    def __init__(self, videos: Sequence[str | Path], spec: ViewSpec, skip_unreadable: bool = False, *,
                 frame_cache: Any = None):
        self.videos = [str(v) for v in videos]
        self.spec = spec
        self.num_frames = spec.num_frames
        self.skip_unreadable = bool(skip_unreadable)
        self.frame_cache = frame_cache
        self.errors_in_band = False

    def frames_key(self) -> dict:
        """Everything that changes the cached views besides the video file: the frames (count,
        sampling rule, interval, clips), the crops, the size, and how they are decoded and resized."""
        return {"layout": "views [clip x crop, T, 3, size, size]", **self.spec.describe(),
                "resize": "short-side-bilinear-no-antialias", "decoder": "decord"}

    def view_pixels(self, path: str) -> tuple[torch.Tensor, bool]:
        """(uint8 views, whether the frame cache served them)."""
        return through_cache(self.frame_cache, path, self.frames_key, lambda: read_view_pixels(path, self.spec)[0])

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            pixels, from_cache = self.view_pixels(self.videos[i])
        except VideoError as exc:
            if not (self.skip_unreadable or self.errors_in_band):
                raise
            spec = self.spec
            frames = torch.zeros(spec.clips * spec.crops, spec.num_frames, 3, spec.size, spec.size)
            return {"frames": frames, "index": i, "ok": False, "error": str(exc), "from_cache": False}
        return {"frames": normalize(pixels), "index": i, "ok": True, "error": "", "from_cache": from_cache}


class VideoLoader:
    """Iterates a DataLoader over a :class:`VideoDataset` and keeps ``skipped`` (main process)."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self.dataset: VideoDataset = loader.dataset
        self.skipped: list[SkippedVideo] = []
        self.from_cache = 0  # videos whose frames the frame cache served (the others were decoded)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped = []
        self.from_cache = 0
        self.close()
        self._iterator = iter(self.loader)
        try:
            for batch in self._iterator:
                self.from_cache += int(batch["from_cache"].sum()) if "from_cache" in batch else 0
                for idx, ok, err in zip(batch["index"].tolist(), batch["ok"].tolist(), batch["error"], strict=True):
                    if not ok and not self.dataset.skip_unreadable:
                        raise VideoError(err)
                    if not ok:
                        self.skipped.append(SkippedVideo(idx, self.dataset.videos[idx], err))
                yield batch
        finally:  # an error here, the loop left early (generator closed), or the end
            self.close()

    def close(self) -> None:
        """Stop the worker processes now. Call it when leaving the loop early (an error, an interrupt):
        a traceback keeps the iterator alive, and workers that ignore SIGTERM (ignore_stop_signals)
        would then block the interpreter's exit, which joins every child process."""
        iterator, self._iterator = getattr(self, "_iterator", None), None
        shutdown = getattr(iterator, "_shutdown_workers", None)  # the multi-process iterator only
        if shutdown is not None:
            shutdown()

    def __enter__(self) -> "VideoLoader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """DataLoader worker init: SIGINT / SIGTERM are the main process's to handle. A scheduler that
    signals the whole process group would otherwise kill a worker first (or run the main process's
    interrupt handler inside it), and the run would end as a worker failure instead of
    ``interrupted``; the main process shuts its workers down itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _init_worker(worker_id: int) -> None:
    ignore_stop_signals(worker_id)
    worker_init(worker_id)


# Batches each worker prepares ahead of the encoder (DataLoader's prefetch_factor): enough that the
# encoder never waits while decoding keeps up, few enough that decoded frames do not pile up in memory.
PREFETCH_BATCHES = 2


def make_loader(dataset: VideoDataset, batch_size: int = 1, num_workers: int = 0) -> VideoLoader:
    """Ordered, non-shuffled loader; batches are dicts of stacked tensors. A video that cannot be
    read raises VideoError (naming the file) unless the dataset skips unreadable videos. Workers
    (``num_workers > 0``) decode with one thread each (:func:`vidtldr.data.workers.worker_init`)."""
    dataset.errors_in_band = True
    parallel = num_workers > 0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        drop_last=False, persistent_workers=False, pin_memory=False,
                        worker_init_fn=_init_worker if parallel else None,
                        prefetch_factor=PREFETCH_BATCHES if parallel else None)
    return VideoLoader(loader)
