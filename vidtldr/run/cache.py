"""On-disk feature cache: one shard per video (or one per text set), written atomically.

A cache directory is named by a hash of *everything that changes the features* (checkpoint hash,
model architecture, reducer and its resolved schedule, frame count, image size, dataset split...);
the caller builds that key. Inside it, each item (a video's relative path) is one ``.pt`` file.
Because every shard is written to a temporary file and then renamed, an interrupted run leaves only
complete shards behind, and a re-run computes just the missing ones. Things that do not change the
features (k_test, table layout, logging) must stay out of the key so that changing them re-uses the
cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

import torch

from vidtldr.errors import DiskFullError, is_disk_full

KEY_FILE = "key.json"


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), truncated; stable across runs."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one.
    A full disk is a :class:`DiskFullError` naming ``path``, with the temporary file removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(path) from None
        raise
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        # Whatever happened (including KeyboardInterrupt), never leave a half-written temp file.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise DiskFullError(path) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(path: Path, obj: Any) -> None:
    # Serialised in memory first (a shard is one video's tokens), so that every byte reaches the disk
    # through atomic_write_bytes and a full disk is reported as such, not as a torch zip-writer error.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class FeatureCache:
    """Shards of tensors for one feature key.

    ``FeatureCache(root, key)`` owns ``root/<hash(key)>/``; ``key.json`` there records the key in
    full so that a human can tell cache directories apart. With ``enabled=False`` nothing is read or
    written (every item is a miss) but the key hash is still reported.
    """

    def __init__(self, root: str | os.PathLike, key: dict, *, enabled: bool = True):
        self.key = key
        self.key_hash = stable_hash(key)
        self.enabled = enabled
        self.dir = Path(root) / self.key_hash
        self.hits = 0
        self.misses = 0
        self.writes = 0
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            key_path = self.dir / KEY_FILE
            if not key_path.exists():
                atomic_write_text(key_path, json.dumps(key, indent=1, sort_keys=True, default=str))

    def shard_path(self, item: str) -> Path:
        # Item ids are relative video paths; hash them so any characters are safe as file names.
        return self.dir / f"{hashlib.sha1(item.encode('utf-8')).hexdigest()[:20]}.pt"

    def has(self, item: str) -> bool:
        return self.enabled and self.shard_path(item).is_file()

    def missing(self, items: Iterable[str]) -> list[str]:
        return [item for item in items if not self.has(item)]

    def load(self, item: str, *, count: bool = True) -> dict | None:
        """The stored tensors for ``item``, or None (a miss). An unreadable shard counts as a miss
        and is removed, so a damaged file cannot poison later runs. ``count=False`` re-reads a shard
        (e.g. to pack the feature store) without counting it again in the run's hit/miss stats."""
        step = 1 if count else 0
        if not self.enabled:
            self.misses += step
            return None
        path = self.shard_path(item)
        if not path.is_file():
            self.misses += step
            return None
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any decoding failure means "recompute"
            with contextlib.suppress(OSError):
                path.unlink()
            self.misses += step
            return None
        if not isinstance(value, dict) or value.get("item") != item:
            # A hash collision or a foreign file: treat as absent.
            self.misses += step
            return None
        self.hits += step
        return value

    def save(self, item: str, tensors: dict) -> None:
        if not self.enabled:
            return
        payload = dict(tensors)
        payload["item"] = item
        atomic_torch_save(self.shard_path(item), payload)
        self.writes += 1

    def stats(self) -> dict:
        return {"key": self.key_hash, "dir": str(self.dir), "enabled": self.enabled,
                "hits": self.hits, "misses": self.misses, "writes": self.writes}
