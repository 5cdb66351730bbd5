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
import os
from pathlib import Path
from typing import Any, Iterable

import torch

from vidtldr import jsonio
# atomic_write_text is re-exported for code written against this module before vidtldr.files existed.
from vidtldr.files import atomic_write_bytes, atomic_write_text  # noqa: F401

KEY_FILE = "key.json"
# Bytes read from each end of a video file for its content fingerprint (see file_identity).
FINGERPRINT_BYTES = 1 << 20
_identities: dict[tuple, str | None] = {}


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys), truncated; stable across runs."""
    text = jsonio.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def atomic_torch_save(path: Path, obj: Any) -> None:
    # Serialised in memory first (a shard is one video's tokens), so that every byte reaches the disk
    # through atomic_write_bytes and a full disk is reported as such, not as a torch zip-writer error.
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def file_identity(path: str | os.PathLike) -> str | None:
    """Identity of a source file for the cache: size, modification time and a blake2b fingerprint of
    its first and last MiB (the whole file when smaller). A file replaced under the same name gets
    a new identity even when size and mtime were preserved (``cp -p``, ``rsync -t``), unless the
    change is confined to the middle of a file larger than 2 MiB. Cost: one read of at most 2 MiB
    per video per process (remembered per process by inode/size/mtime/ctime). None when the file
    cannot be read (nothing cached for it is then trusted)."""
    try:
        st = os.stat(path)
        memo = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if memo in _identities:
            return _identities[memo]
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as handle:
            digest.update(handle.read(FINGERPRINT_BYTES))
            if st.st_size > FINGERPRINT_BYTES:
                handle.seek(max(FINGERPRINT_BYTES, st.st_size - FINGERPRINT_BYTES))
                digest.update(handle.read(FINGERPRINT_BYTES))
    except OSError:
        return None
    _identities[memo] = value = f"{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()}"
    return value


class FeatureCache:
    """Shards of tensors for one feature key.

    ``FeatureCache(root, key)`` owns ``root/<hash(key)>/``; ``key.json`` there records the key in
    full so that a human can tell cache directories apart. With ``enabled=False`` nothing is read or
    written (every item is a miss) but the key hash is still reported.

    Items bound to a source file (:meth:`bind_sources`) are stored under a name that includes the
    file's :func:`file_identity`, so a video replaced under the same name is a miss, never a stale
    hit; an item whose file cannot be read is always a miss.
    """

    def __init__(self, root: str | os.PathLike, key: dict, *, enabled: bool = True):
        self.key = key
        self.key_hash = stable_hash(key)
        self.enabled = enabled
        self.dir = Path(root) / self.key_hash
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._paths: dict[str, str] = {}
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            key_path = self.dir / KEY_FILE
            if not key_path.exists():
                atomic_write_text(key_path, jsonio.dumps(key, indent=1, sort_keys=True, default=str))

    def bind_sources(self, paths: dict[str, str]) -> None:
        """Tie items to the files they are computed from (item -> path)."""
        self._paths.update(paths)

    def source(self, item: str) -> str | None:
        """The bound file's identity, "" for an item without a file, None when the file is unreadable."""
        path = self._paths.get(item)
        return "" if path is None else file_identity(path)

    def shard_path(self, item: str) -> Path | None:
        # Item ids are relative video paths; hash them (with the source's identity) so that any
        # characters are safe as file names. None: the source file cannot be vouched for.
        source = self.source(item)
        if source is None:
            return None
        name = item if not source else f"{item}\0{source}"
        return self.dir / f"{hashlib.sha1(name.encode('utf-8')).hexdigest()[:20]}.pt"

    def has(self, item: str) -> bool:
        path = self.shard_path(item)
        return self.enabled and path is not None and path.is_file()

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
        if path is None or not path.is_file():
            self.misses += step
            return None
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any decoding failure means "recompute"
            with contextlib.suppress(OSError):
                path.unlink()
            self.misses += step
            return None
        if not isinstance(value, dict) or value.get("item") != item or value.get("source") != self.source(item):
            # A hash collision, a foreign file, or a source changed since the name was computed (every
            # shard this code writes records its source, "" for an item without a file).
            self.misses += step
            return None
        self.hits += step
        return value

    def save(self, item: str, tensors: dict) -> None:
        if not self.enabled:
            return
        path = self.shard_path(item)
        if path is None:  # the source vanished while it was being encoded: nothing to vouch for
            return
        payload = dict(tensors)
        payload["item"] = item
        payload["source"] = self.source(item)
        atomic_torch_save(path, payload)
        self.writes += 1

    def stats(self) -> dict:
        return {"key": self.key_hash, "dir": str(self.dir), "enabled": self.enabled,
                "hits": self.hits, "misses": self.misses, "writes": self.writes}
