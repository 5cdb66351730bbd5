"""On-disk cache of decoded frames: the sampled, resized uint8 frames the normalisation consumes.

Features depend on the model, the reducer and its schedule; the frames they are computed from do not.
So a sweep (none, vid-TLDR, ToMe, every tuned schedule) decodes each video once and every later run
reads its frames from here. An entry is named by the video file's identity
(:func:`vidtldr.run.cache.file_identity`: size, mtime and a fingerprint of the content) and by
everything that changes the frames (``frames_key``: frame count, sampling rule, trim, size, decoder,
views/crops); a video replaced under the same name is a miss.

Each entry is one file: a magic line, a JSON header (shape, key, source identity, blake2b digest of
the pixels), then the raw pixels. Writes are atomic; an entry whose header, length, key, source or
digest does not check out is a miss and is removed (the caller then decodes and rewrites it).

The cache is bounded: after a write that takes it over ``max_bytes``, the least recently used entries
(a hit refreshes the entry's modification time) are removed until it is under 90% of the bound. Each
process (DataLoader worker) keeps its own running total, re-counted from the folder when it passes
the bound, so several writers can overshoot by a few entries at most, briefly.

Only entries older than the run are evicted. A run whose own frames outgrow the bound (all of
Kinetics-400's 15 views per video do not fit in 16 GiB) would otherwise evict what it wrote itself a
moment before, rewriting the whole cache for nothing on every run; it stops writing instead, keeps
what it wrote, reads on, and says so in the record (``cache.frames.problems``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vidtldr.errors import DiskFullError
from vidtldr.jsonio import dumps
from vidtldr.files import atomic_write_bytes
from vidtldr.run.cache import file_identity, stable_hash

log = logging.getLogger(__name__)

MAGIC = b"vidtldr-frames 1\n"
SUFFIX = ".frames"
# After an eviction the cache is left at this share of its bound, so that eviction is not re-run
# (a folder scan) on every later write.
LOW_WATER = 0.9
GB = 1024 ** 3


@dataclass
class FrameCacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    damaged: int = 0
    evicted: int = 0
    problems: list = field(default_factory=list)

    def add(self, other: "FrameCacheStats") -> None:
        for name in ("hits", "misses", "writes", "damaged", "evicted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems.extend(p for p in other.problems if p not in self.problems)


class FrameCache:
    """``get(path, frames_key)`` -> uint8 tensor or None; ``put(path, frames_key, frames)``.

    Picklable (DataLoader workers each get a copy; their counters come back with the items)."""

    def __init__(self, root: str | os.PathLike, max_bytes: int, *, enabled: bool = True):
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.enabled = bool(enabled) and self.max_bytes > 0
        self.stats = FrameCacheStats()
        self._total: int | None = None  # bytes in the folder as this process last counted them
        self._last_touch = 0
        # Entries touched since (this run's reads and writes) are never evicted by this run; set once in
        # the main process, so the DataLoader workers' copies agree.
        self.run_started_ns = time.time_ns()

    # ------------------------------------------------------------------ naming

    def entry_path(self, video: str | os.PathLike, frames_key: dict) -> Path | None:
        """Where ``video``'s frames under ``frames_key`` live; None when the file cannot be read
        (nothing cached for it is trusted)."""
        source = file_identity(video)
        if source is None:
            return None
        return self.root / f"{stable_hash({'key': frames_key, 'source': source}, 32)}{SUFFIX}"

    def holds(self, video: str | os.PathLike, frames_key: dict) -> bool:
        """Whether an entry exists (not yet verified: :meth:`get` does that)."""
        path = self.entry_path(video, frames_key) if self.enabled else None
        return path is not None and path.is_file()

    # ------------------------------------------------------------------ read

    def get(self, video: str | os.PathLike, frames_key: dict) -> torch.Tensor | None:
        if not self.enabled:
            return None
        path = self.entry_path(video, frames_key)
        if path is None:
            self.stats.misses += 1
            return None
        try:
            data = path.read_bytes()
        except OSError:  # absent (the usual miss), or evicted by another process meanwhile
            self.stats.misses += 1
            return None
        frames = decode_entry(data, frames_key, file_identity(video))
        if frames is None:
            self.stats.damaged += 1
            self.stats.misses += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._touch(path)
        self.stats.hits += 1
        return frames

    def _touch(self, path: Path) -> None:
        # The modification time is the recency the eviction sorts by (access times are often not kept).
        # Strictly increasing within a process, so two hits in one clock tick still have an order.
        now = max(time.time_ns(), self._last_touch + 1)
        self._last_touch = now
        with contextlib.suppress(OSError):
            os.utime(path, ns=(now, now))

    # ------------------------------------------------------------------ write

    def put(self, video: str | os.PathLike, frames_key: dict, frames: torch.Tensor) -> None:
        if not self.enabled:
            return
        path = self.entry_path(video, frames_key)
        if path is None:
            return
        data = encode_entry(frames, frames_key, file_identity(video))
        try:
            atomic_write_bytes(path, data)
        except (DiskFullError, OSError) as exc:
            # The frames are only a shortcut: a full or read-only disk must not stop the evaluation.
            self.enabled = False
            problem = f"frame cache turned off for this run: cannot write {path}: {exc}"
            self.stats.problems.append(problem)
            log.warning(problem)
            return
        self._touch(path)
        self.stats.writes += 1
        if self._total is None:
            self._total = folder_bytes(self.root)
        else:
            self._total += len(data)
        if self._total > self.max_bytes:
            removed, self._total = evict(self.root, int(self.max_bytes * LOW_WATER), keep_since_ns=self.run_started_ns)
            self.stats.evicted += removed
            if self._total > self.max_bytes:  # what is left is this run's own: it does not fit
                self.enabled = False
                problem = (f"frame cache stopped writing: this run's frames outgrow cache.frames_max_gb="
                           f"{self.max_bytes / GB:g} (its entries so far take {self._total / GB:.2f} GiB, "
                           "kept for the next run); raise cache.frames_max_gb to cache all of them")
                self.stats.problems.append(problem)
                log.warning(problem)


def frames_digest(pixels: bytes) -> str:
    return hashlib.blake2b(pixels, digest_size=16).hexdigest()


def encode_entry(frames: torch.Tensor, frames_key: dict, source: str | None) -> bytes:
    """One entry's bytes: magic, one JSON header line, the raw uint8 pixels."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"the frame cache stores uint8 frames, got {frames.dtype}")
    pixels = frames.contiguous().numpy().tobytes()
    header = {"shape": list(frames.shape), "key": frames_key, "source": source, "digest": frames_digest(pixels)}
    return MAGIC + dumps(header, sort_keys=True).encode("utf-8") + b"\n" + pixels


def decode_entry(data: bytes, frames_key: dict, source: str | None) -> torch.Tensor | None:
    """The frames in ``data``, or None when it is not a complete, undamaged entry for this key and source."""
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        return None
    try:
        header = json.loads(data[len(MAGIC):end])
        shape = [int(n) for n in header["shape"]]
    except (ValueError, KeyError, TypeError):
        return None
    pixels = data[end + 1:]
    if (header.get("key") != json.loads(dumps(frames_key)) or header.get("source") != source
            or len(pixels) != int(np.prod(shape)) or header.get("digest") != frames_digest(pixels)):
        return None
    return torch.from_numpy(np.frombuffer(pixels, dtype=np.uint8).reshape(shape).copy())


def folder_bytes(root: Path) -> int:
    return sum(size for _, size, _ in _entries(root))


def _entries(root: Path) -> list[tuple[int, int, Path]]:
    """(mtime_ns, size, path) of every entry; files removed meanwhile are left out."""
    out = []
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as listing:
        for item in listing:
            if not item.name.endswith(SUFFIX):
                continue
            with contextlib.suppress(OSError):
                st = item.stat()
                out.append((st.st_mtime_ns, st.st_size, Path(item.path)))
    return out


def evict(root: Path, target_bytes: int, keep_since_ns: int | None = None) -> tuple[int, int]:
    """Remove least recently used entries until the folder holds at most ``target_bytes``, never one
    used at or after ``keep_since_ns``: (entries removed, bytes left)."""
    entries = sorted(_entries(root))
    total = sum(size for _, size, _ in entries)
    removed = 0
    for mtime_ns, size, path in entries:
        if total <= target_bytes or (keep_since_ns is not None and mtime_ns >= keep_since_ns):
            break
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
        total -= size
    return removed, total


def frame_cache_from(settings) -> FrameCache | None:
    """The run's frame cache from its resolved settings (:class:`vidtldr.run.settings.RunSettings`;
    None when turned off)."""
    if not settings.frames_cache:
        return None
    return FrameCache(settings.frames_dir, int(float(settings.frames_max_gb) * GB))
