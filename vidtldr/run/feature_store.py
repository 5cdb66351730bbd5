"""Disk-backed store of the vision tokens that ITM re-ranking cross-attends to.

Keeping every video's final tokens in one in-memory tensor makes a run's memory grow with the
number of videos (UMT-L, 5k ActivityNet videos: tens of GB). The store instead packs the tokens of
the run's videos into one flat file, read one video at a time through a memory map:

    <dir>/tokens.bin   all videos' tokens, row after row ([sum of N_i, C] in ``dtype``)
    <dir>/feat.npy     the small ITC projections [V, E] (float32), loaded whole
    <dir>/index.json   keys in order, per-video row offset and token count, dims, dtype, the
                       sha256 of tokens.bin and feat.npy and the source identity of every shard

Token counts may differ between videos (a reducer need not remove the same number everywhere), so
each video has its own offset and length. A store is built from the per-video cache shards after
extraction (by one process), in a temporary folder renamed into place, so a reader sees a complete
store or none. Before a store is used its files are checked against the checksums in its index; a
store that fails (damaged, truncated or overwritten) is rebuilt from the shards. ``dtype="fp32"`` (the default) stores the encoder's float32 output unchanged, so
re-ranking from the store is bit-for-bit the in-memory path; ``"fp16"`` halves the file but rounds
the ITM inputs.

Reading maps the file and copies out one video's rows. Mapped pages that were touched count towards
the process's resident memory until unmapped, so the reader re-maps after every ``window_mb`` read:
resident memory stays bounded by the window whatever the number of videos (the OS page cache still
keeps hot pages, outside the process).
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import shutil
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from vidtldr import jsonio
from vidtldr.errors import CacheError, DiskFullError, VidtldrError, is_disk_full
from vidtldr.files import atomic_write_text, temp_dir_beside
from vidtldr.run.cache import FeatureCache, stable_hash
from vidtldr.run.record import sha256_file

log = logging.getLogger(__name__)
STORE_FORMAT = 2  # 2: index.json carries checksums and source identities
DTYPES = {"fp32": np.float32, "fp16": np.float16}
INDEX = "index.json"
TOKENS = "tokens.bin"
FEAT = "feat.npy"


def store_dir(cache: FeatureCache, keys: Sequence[str], dtype: str) -> Path:
    """Where the store of ``keys`` (in this order) lives: inside the feature cache directory, whose
    name already hashes everything that changes the features; the store adds the video list, the
    identity of each video's file (its shard) and the dtype."""
    return cache.dir / "stores" / stable_hash({"format": STORE_FORMAT, "keys": list(keys), "dtype": dtype,
                                               "sources": [cache.source(k) for k in keys]})


def file_sha256(path: Path, memo: bool = False) -> str:
    """The file's sha256; with ``memo`` remembered inside its store folder until the file changes
    (any write changes its ctime), so an unchanged multi-GB store is not re-read on every run."""
    return sha256_file(path, memo_dir=path.parent if memo else None)


def clear_command(path: Path) -> str:
    return f"rm -r '{path}'"


def verify_store(path: Path, sources: Optional[Sequence] = None) -> Optional[str]:
    """None when the store at ``path`` is complete and its files match the checksums (and source
    identities) in its index; otherwise what is wrong with it."""
    index, problem = _checked_index(path)
    if problem:
        return problem
    for name in (TOKENS, FEAT):
        if file_sha256(path / name, memo=True) != index["sha256"][name]:
            return f"{path / name} does not match its checksum in {path / INDEX}"
    if sources is not None and index.get("sources") != list(sources):  # None: built without them
        return f"{path / INDEX} was built from other versions of the videos"
    return None


def _discard(path: Path) -> None:
    """Move a damaged store out of the way (atomically) and delete it; another process may do the same."""
    trash = path.with_name(f".{path.name}.damaged-{os.getpid()}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def build_store(out: str | os.PathLike, keys: Sequence[str], load: Callable[[str], Optional[dict]],
                dtype: str = "fp32", sources: Optional[Sequence] = None) -> Path:
    """Write the store of ``keys`` to ``out`` from ``load(key) -> {"tokens": [N, C], "feat": [1, E] or
    [E], "token_counts": ...}`` (a cache shard), holding one video's tokens in memory at a time.
    An existing store at ``out`` that passes :func:`verify_store` is kept (another process built the
    same thing); one that fails is rebuilt. A full disk is a DiskFullError with nothing left behind."""
    if dtype not in DTYPES:
        raise VidtldrError(f"feature store dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out = Path(out)
    if out.exists():
        problem = verify_store(out, sources)
        if problem is None:
            return out
        log.warning("feature store: %s; rebuilding it from the cached shards", problem)
        _discard(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return _build(out, keys, load, dtype, sources)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(out) from None
        raise


def _build(out: Path, keys: Sequence[str], load: Callable[[str], Optional[dict]], dtype: str,
           sources: Optional[Sequence]) -> Path:
    tmp = temp_dir_beside(out)
    try:
        offsets, lengths, feats, by_video = [], [], [], []
        dim, counts, row = None, None, 0
        with open(tmp / TOKENS, "wb") as handle:
            for key in keys:
                stored = load(key)
                if stored is None:
                    raise VidtldrError(f"feature store: no cached features for {key!r} (was extraction complete?)")
                tokens = stored["tokens"].float()
                if tokens.dim() != 2 or (dim is not None and tokens.shape[1] != dim):
                    raise VidtldrError(f"feature store: tokens of {key!r} have shape {tuple(tokens.shape)}")
                dim = int(tokens.shape[1])
                handle.write(tokens.numpy().astype(DTYPES[dtype], copy=False).tobytes())
                offsets.append(row)
                lengths.append(int(tokens.shape[0]))
                row += int(tokens.shape[0])
                feats.append(stored["feat"].float().reshape(-1).numpy())
                if stored.get("token_counts") is not None:
                    by_video.append([int(c) for c in stored["token_counts"].tolist()])
                    counts = by_video[0] if counts is None else counts
            handle.flush()
            os.fsync(handle.fileno())
        feat = np.stack(feats) if feats else np.zeros((0, 0), np.float32)
        with open(tmp / FEAT, "wb") as handle:
            np.save(handle, feat.astype(np.float32, copy=False))
            handle.flush()
            os.fsync(handle.fileno())
        index = {"format": STORE_FORMAT, "dtype": dtype, "dim": dim or 0, "rows": row, "keys": list(keys),
                 "offsets": offsets, "lengths": lengths, "token_counts": counts or [],
                 # per video, where a content-adaptive reducer (rlt's threshold form) makes them differ
                 "token_counts_by_video": by_video if any(c != counts for c in by_video) else [],
                 "bytes": row * (dim or 0) * np.dtype(DTYPES[dtype]).itemsize,
                 "sha256": {TOKENS: file_sha256(tmp / TOKENS), FEAT: file_sha256(tmp / FEAT)},
                 "sources": list(sources) if sources is not None else None}
        # The index is the completion marker: written last, inside the folder that is renamed.
        atomic_write_text(tmp / INDEX, jsonio.dumps(index))
        try:
            os.rename(tmp, out)
        except OSError:
            if _checked_index(out)[1]:  # lost a race to an identical store: fine; anything else is not
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def build_from_cache(cache: FeatureCache, keys: Sequence[str], dtype: str = "fp32") -> Path:
    return build_store(store_dir(cache, keys, dtype), keys, lambda k: cache.load(k, count=False), dtype,
                       sources=[cache.source(k) for k in keys])


def _checked_index(path: Path) -> tuple[dict, Optional[str]]:
    """The store's parsed index and what makes the store at ``path`` unusable without reading its
    data (None: looks complete; the index is then usable, read once)."""
    try:
        index = json.loads((path / INDEX).read_text())
    except FileNotFoundError:
        return {}, f"{path / INDEX} is missing"
    except (OSError, ValueError):
        return {}, f"{path / INDEX} is damaged (not JSON)"
    return index, _index_problem(path, index)


def _index_problem(path: Path, index) -> Optional[str]:
    try:
        if not isinstance(index, dict) or index.get("format") != STORE_FORMAT:
            return f"{path / INDEX} has another format than {STORE_FORMAT}"
        if (path / TOKENS).stat().st_size != index["bytes"]:
            return f"{path / TOKENS} has {(path / TOKENS).stat().st_size} bytes, its index says {index['bytes']}"
        if not (path / FEAT).is_file() or set(index["sha256"]) != {TOKENS, FEAT}:
            return f"{path / FEAT} is missing"
        if len(index["offsets"]) != len(index["keys"]) or len(index["lengths"]) != len(index["keys"]):
            return f"{path / INDEX} is inconsistent"
    except (OSError, KeyError, TypeError) as exc:
        return f"{path} is incomplete ({type(exc).__name__}: {exc})"
    return None


class TokenStore:
    """Read side: ``store.tokens(key)`` -> float32 ``[N, C]``; ``store.view(keys)`` is an indexable
    sequence for :func:`vidtldr.tasks.retrieval.itm_rerank`; ``store.feats(keys)`` the ITC inputs."""

    def __init__(self, path: str | os.PathLike, window_mb: float = 16):
        self.path = Path(path)
        index, problem = _checked_index(self.path)
        if problem:
            raise CacheError(f"feature store: {problem}; remove it with `{clear_command(self.path)}` and re-run "
                             "(it is rebuilt from the cached shards)")
        self.dtype = index["dtype"]
        self._np_dtype = np.dtype(DTYPES[self.dtype])
        self.dim = int(index["dim"])
        self.keys: list[str] = index["keys"]
        self.position = {k: i for i, k in enumerate(self.keys)}
        self.offsets = index["offsets"]
        self.lengths = index["lengths"]
        self.token_counts: list[int] = index["token_counts"]
        # key -> per-block counts, only when they differ between videos (stores built before: none)
        self.token_counts_by_video: dict[str, list[int]] = dict(zip(self.keys, index.get("token_counts_by_video") or [],
                                                                    strict=False))
        self.nbytes = int(index["bytes"])
        try:
            self._feat = torch.from_numpy(np.load(self.path / FEAT, allow_pickle=False))
        except (OSError, ValueError, EOFError) as exc:
            raise CacheError(f"feature store: {self.path / FEAT} is damaged ({exc}); remove it with "
                             f"`{clear_command(self.path)}` and re-run") from None
        self._window = max(1, int(window_mb * 2**20))
        self._file = None
        self._map: Optional[mmap.mmap] = None
        self._since_map = 0

    def __len__(self) -> int:
        return len(self.keys)

    def _mapping(self) -> mmap.mmap:
        if self._map is not None and self._since_map >= self._window:
            # Unmapping drops the touched pages from this process's resident set.
            self._map.close()
            self._map = None
        if self._map is None:
            if self._file is None:
                self._file = open(self.path / TOKENS, "rb")
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self._since_map = 0
        return self._map

    def tokens(self, key: str) -> torch.Tensor:
        i = self.position[key]
        count = self.lengths[i] * self.dim
        if count == 0:
            return torch.zeros(self.lengths[i], self.dim)
        item = self._np_dtype.itemsize
        view = np.frombuffer(self._mapping(), dtype=self._np_dtype, count=count, offset=self.offsets[i] * self.dim * item)
        array = view.astype(np.float32)  # a copy: nothing keeps the mapping alive
        del view
        self._since_map += count * item
        return torch.from_numpy(array).view(self.lengths[i], self.dim)

    def feats(self, keys: Sequence[str]) -> torch.Tensor:
        """``[len(keys), 1, E]`` ITC projections (the clip axis the ITC einsum expects)."""
        rows = torch.tensor([self.position[k] for k in keys], dtype=torch.long)
        return self._feat[rows][:, None]

    def view(self, keys: Sequence[str]) -> "TokenView":
        return TokenView(self, list(keys))

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "TokenStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TokenView:
    """``view[i]`` = tokens of ``keys[i]``, read on demand (one row per split video, so clips that
    several records share are stored once)."""

    def __init__(self, store: TokenStore, keys: list[str]):
        self.store, self.keys = store, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.store.tokens(self.keys[int(i)])
