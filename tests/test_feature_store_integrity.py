"""Feature store integrity: what names a store, when a store is reused or rebuilt, every index problem
named with its file, races and full disks while building, and the reader's bounded re-mapping."""

from __future__ import annotations

import errno
import hashlib
import re
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import vidtldr.run.feature_store as fs
from vidtldr.errors import CacheError, DiskFullError, VidtldrError
from vidtldr.run.cache import FeatureCache, file_identity
from vidtldr.run.record import file_entry
from vidtldr.run.feature_store import (FEAT, INDEX, TOKENS, TokenStore, build_from_cache, build_store, store_dir,
                                       verify_store)


def _videos(lengths=(5, 3, 8, 1), dim=6, seed=0) -> dict[str, dict]:
    gen = torch.Generator().manual_seed(seed)
    return {f"clip{i}.mp4": {"tokens": torch.randn(n, dim, generator=gen), "feat": torch.randn(1, 4, generator=gen),
                             "token_counts": torch.tensor([n + 4, n])}
            for i, n in enumerate(lengths)}


def _cache_with_files(tmp_path, videos) -> FeatureCache:
    """A feature cache holding ``videos``, each bound to a real file (as the runner binds them)."""
    cache = FeatureCache(tmp_path / "features", {"k": 1})
    files = {}
    for key in videos:
        files[key] = tmp_path / "videos" / key
        files[key].parent.mkdir(exist_ok=True)
        files[key].write_bytes(key.encode() * 10)
    cache.bind_sources({k: str(p) for k, p in files.items()})
    for key, stored in videos.items():
        cache.save(key, stored)
    return cache


# ----------------------------------------------------------------------------- what names a store


def test_each_input_of_the_store_key_gives_another_store(tmp_path):
    videos = _videos()
    cache = _cache_with_files(tmp_path, videos)
    keys = list(videos)
    base = store_dir(cache, keys, "fp32")
    assert base.parent == cache.dir / "stores"
    assert store_dir(cache, keys, "fp16") != base  # dtype
    assert store_dir(cache, keys[::-1], "fp32") != base  # order of the videos (row i is video i)
    assert store_dir(cache, keys[:3], "fp32") != base  # which videos
    video = tmp_path / "videos" / keys[1]
    stat = video.stat()
    video.write_bytes(b"X" * stat.st_size)  # the same file name, other content, mtime kept
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert store_dir(cache, keys, "fp32") != base  # the version of each video file


def test_the_index_records_each_videos_file_identity(tmp_path):
    videos = _videos()
    cache = _cache_with_files(tmp_path, videos)
    out = build_from_cache(cache, list(videos))
    index = json.loads((out / INDEX).read_text())
    assert index["sources"] == [file_identity(tmp_path / "videos" / k) for k in videos]
    assert verify_store(out, index["sources"]) is None


def test_a_verified_store_is_reused_and_one_of_other_video_versions_rebuilt(tmp_path, caplog):
    videos = _videos()
    keys = list(videos)
    loads = []

    def load(key):
        loads.append(key)
        return videos[key]

    out = build_store(tmp_path / "s", keys, load, sources=["v1"] * 4)
    assert loads == keys
    assert build_store(tmp_path / "s", keys, load, sources=["v1"] * 4) == out and loads == keys  # reused
    assert verify_store(out, ["v2"] * 4) == f"{out / INDEX} was built from other versions of the videos"
    newer = _videos(seed=1)
    with caplog.at_level(logging.WARNING, logger=fs.__name__):
        build_store(tmp_path / "s", keys, newer.get, sources=["v2"] * 4)
    assert [r.getMessage() for r in caplog.records] == [
        f"feature store: {out / INDEX} was built from other versions of the videos; rebuilding it from the cached shards"]
    with TokenStore(out) as store:
        assert torch.equal(store.tokens(keys[0]), newer[keys[0]]["tokens"])  # not the stale tokens
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # the replaced store is gone


def test_a_store_built_without_sources_is_rebuilt_when_they_are_asked_for(tmp_path):
    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    assert verify_store(out, ["v1"] * 4) == f"{out / INDEX} was built from other versions of the videos"
    build_store(out, list(videos), videos.get, sources=["v1"] * 4)
    assert verify_store(out, ["v1"] * 4) is None


# ----------------------------------------------------------------------------- what a store holds


def test_empty_and_zero_token_videos(tmp_path):
    empty = build_store(tmp_path / "empty", [], lambda k: None)
    with TokenStore(empty) as store:
        assert len(store) == 0 and store.feats([]).shape == (0, 1, 0)
    videos = {"none.mp4": {"tokens": torch.zeros(0, 1), "feat": torch.ones(1, 2)},  # every token dropped
              "one.mp4": {"tokens": torch.tensor([[7.5]]), "feat": torch.ones(1, 2)}}
    out = build_store(tmp_path / "s", list(videos), videos.get)
    with TokenStore(out) as store:
        assert store.tokens("none.mp4").shape == (0, 1)
        assert torch.equal(store.tokens("one.mp4"), torch.tensor([[7.5]]))
        assert store.feats([]).shape == (0, 1, 2)


@pytest.mark.parametrize("bad", ["3-d", "other width"])
def test_tokens_of_the_wrong_shape_are_named(tmp_path, bad):
    videos = _videos(lengths=(2, 3))
    key = "clip1.mp4"
    videos[key]["tokens"] = torch.zeros(3, 2, 6) if bad == "3-d" else torch.zeros(3, 5)
    shape = (3, 2, 6) if bad == "3-d" else (3, 5)
    with pytest.raises(VidtldrError, match=rf"feature store: tokens of '{key}' have shape {re.escape(str(shape))}"):
        build_store(tmp_path / "s", list(videos), videos.get)
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_dtype_is_refused_by_name(tmp_path):
    with pytest.raises(VidtldrError, match=r"dtype must be one of \['fp16', 'fp32'\], got 'bf16'"):
        build_store(tmp_path / "s", [], lambda k: None, dtype="bf16")


# ----------------------------------------------------------------------------- building: folders, races, full disk


def test_the_build_happens_in_a_hidden_folder_beside_the_store(tmp_path):
    videos = _videos()
    out = tmp_path / "deep" / "stores" / "s"  # parent folders are created
    seen = []

    def load(key):
        seen.append(sorted(p.name for p in out.parent.iterdir()))
        return videos[key]

    build_store(out, list(videos), load)
    assert len(seen[0]) == 1 and seen[0][0].startswith(".s-")  # same disk as the store: the rename is atomic
    assert sorted(p.name for p in out.parent.iterdir()) == ["s"]


def test_losing_the_race_to_an_identical_store_is_fine(tmp_path, monkeypatch):
    videos = _videos()
    keys = list(videos)
    out = tmp_path / "s"
    real_rename = os.rename

    def other_process_first(src, dst):
        shutil.copytree(src, dst)  # another run finished the same store meanwhile
        return real_rename(src, dst)  # a non-empty target: OSError

    monkeypatch.setattr(fs.os, "rename", other_process_first)
    assert build_store(out, keys, videos.get) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # our temporary copy is removed
    with TokenStore(out) as store:
        assert torch.equal(store.tokens(keys[2]), videos[keys[2]]["tokens"])


def test_a_failed_rename_onto_an_incomplete_store_is_an_error(tmp_path, monkeypatch):
    videos = _videos()

    def blocked(src, dst):
        Path(dst).mkdir()
        (Path(dst) / "junk").write_text("x")
        raise OSError(errno.ENOTEMPTY, "Directory not empty", str(dst))

    monkeypatch.setattr(fs.os, "rename", blocked)
    with pytest.raises(OSError, match="Directory not empty"):
        build_store(tmp_path / "s", list(videos), videos.get)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]  # no temporary folder left


def test_a_full_disk_while_building_names_the_store_and_leaves_nothing(tmp_path, monkeypatch):
    videos = _videos()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs.os, "fsync", full)
    out = tmp_path / "stores" / "s"
    with pytest.raises(DiskFullError, match=f"no space left on the device holding {out}"):
        build_store(out, list(videos), videos.get)
    assert list((tmp_path / "stores").iterdir()) == []


def test_a_damaged_store_is_rebuilt_without_leaving_its_remains(tmp_path):
    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    (out / TOKENS).write_bytes(b"\0" * (out / TOKENS).stat().st_size)  # same size, wrong bytes
    assert verify_store(out) == f"{out / TOKENS} does not match its checksum in {out / INDEX}"
    build_store(out, list(videos), videos.get)
    assert verify_store(out) is None and sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """Overwrite ``path``'s bytes through the same inode and put its mtime back (a tool that restores
    timestamps); only the ctime, which no program can set, tells that the file was written."""
    before = path.stat()
    assert len(data) == before.st_size
    for _ in range(100):  # file times are kept at the kernel clock's tick: write again until it has moved
        with open(path, "r+b") as handle:
            handle.write(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = path.stat()
        if after.st_ctime_ns != before.st_ctime_ns:
            break
        time.sleep(0.01)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert after.st_ctime_ns != before.st_ctime_ns


def test_a_store_file_rewritten_in_place_with_its_mtime_kept_is_hashed_again_and_rebuilt(tmp_path):
    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    assert verify_store(out) is None  # its checksum is now remembered beside it
    tokens = (out / TOKENS).read_bytes()
    _rewrite_in_place(out / TOKENS, bytes(b ^ 0xFF for b in tokens))
    assert verify_store(out) == f"{out / TOKENS} does not match its checksum in {out / INDEX}"
    build_store(out, list(videos), videos.get)
    assert (out / TOKENS).read_bytes() == tokens and verify_store(out) is None
    with TokenStore(out) as store:
        assert torch.equal(store.tokens("clip2.mp4"), videos["clip2.mp4"]["tokens"])


def test_a_recorded_checksum_follows_a_file_rewritten_in_place_with_its_mtime_kept(tmp_path):
    # the record's checksums of the checkpoint and the annotation are remembered the same way
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"weights, first version")
    memo = tmp_path / "cache"
    assert file_entry(checkpoint, memo_dir=memo)["sha256"] == hashlib.sha256(b"weights, first version").hexdigest()
    _rewrite_in_place(checkpoint, b"weights, other version")
    assert file_entry(checkpoint, memo_dir=memo) == {
        "path": str(checkpoint), "bytes": 22, "sha256": hashlib.sha256(b"weights, other version").hexdigest()}


def _undeletable(monkeypatch, marker: str) -> list:
    """Folders whose name contains ``marker`` cannot be removed (a busy NFS folder); the attempts."""
    attempts, real_rmdir = [], os.rmdir

    def rmdir(path, *args, **kwargs):
        if marker in os.fspath(path):
            attempts.append(os.fspath(path))
            raise OSError(errno.EBUSY, "Device or resource busy", os.fspath(path))
        return real_rmdir(path, *args, **kwargs)

    monkeypatch.setattr(fs.os, "rmdir", rmdir)
    return attempts


def test_a_temporary_folder_that_cannot_be_removed_does_not_hide_the_real_error(tmp_path, monkeypatch):
    videos = _videos()
    attempts = _undeletable(monkeypatch, ".s-")
    with pytest.raises(VidtldrError, match="no cached features for 'clip1.mp4'"):
        build_store(tmp_path / "s", list(videos), lambda k: None if k == "clip1.mp4" else videos[k])
    assert attempts  # the cleanup was tried, and its failure did not replace the error


def test_a_damaged_store_that_cannot_be_removed_is_still_replaced(tmp_path, monkeypatch):
    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    (out / INDEX).write_text("{")
    attempts = _undeletable(monkeypatch, ".damaged-")
    assert build_store(out, list(videos), videos.get) == out and verify_store(out) is None
    assert attempts


# ----------------------------------------------------------------------------- every index problem is named


def _break(out: Path, how: str) -> str:
    """Damage the store at ``out``; the problem the error must name."""
    index = json.loads((out / INDEX).read_text())
    if how == "not a dict":
        (out / INDEX).write_text("[]")
        return f"{out / INDEX} has another format than {fs.STORE_FORMAT}"
    if how == "old format":
        index["format"] = 1
    elif how == "tokens size":
        with open(out / TOKENS, "ab") as handle:
            handle.write(b"\0" * 8)
        return f"{out / TOKENS} has {index['bytes'] + 8} bytes, its index says {index['bytes']}"
    elif how == "feat missing":
        (out / FEAT).unlink()
        return f"{out / FEAT} is missing"
    elif how == "offsets":
        index["offsets"] = index["offsets"][:-1]
    elif how == "lengths":
        index["lengths"] = index["lengths"][:-1]
    elif how == "no bytes field":
        del index["bytes"]
        (out / INDEX).write_text(json.dumps(index))
        return f"{out} is incomplete (KeyError: 'bytes')"
    elif how == "not json":
        (out / INDEX).write_text("{")
        return f"{out / INDEX} is damaged (not JSON)"
    (out / INDEX).write_text(json.dumps(index))
    return {"old format": f"{out / INDEX} has another format than {fs.STORE_FORMAT}"}.get(
        how, f"{out / INDEX} is inconsistent")


@pytest.mark.parametrize("how", ["not a dict", "old format", "tokens size", "feat missing", "offsets", "lengths",
                                 "no bytes field", "not json"])
def test_every_index_problem_is_named_with_its_file(tmp_path, how):
    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    problem = _break(out, how)
    with pytest.raises(CacheError) as error:
        TokenStore(out)
    assert str(error.value) == (f"feature store: {problem}; remove it with `rm -r '{out}'` and re-run "
                                "(it is rebuilt from the cached shards)")
    assert verify_store(out) == problem


@pytest.mark.parametrize("content", ["garbage", "pickled objects"])
def test_a_damaged_feat_file_is_named(tmp_path, content):
    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    if content == "garbage":
        (out / FEAT).write_bytes(b"not numpy")
    else:  # an object array: loading it would unpickle
        np.save(out / FEAT, np.array([{"x": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(CacheError, match=rf"feature store: {re.escape(str(out / FEAT))} is damaged \(.*\); "
                                         rf"remove it with `rm -r '{re.escape(str(out))}'` and re-run"):
        TokenStore(out)


# ----------------------------------------------------------------------------- the reader's window


def _maps(monkeypatch) -> list:
    made = []
    real = fs.mmap.mmap

    def counting(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(fs.mmap, "mmap", counting)
    return made


@pytest.mark.parametrize("window_bytes, maps", [(2 * 4096, 4), (2 * 4096 + 1, 3), (4 * 4096, 2), (10**9, 1)])
def test_the_reader_remaps_after_each_window(tmp_path, monkeypatch, window_bytes, maps):
    # 8 videos of 4096 bytes each (16 tokens x 64 float32); a window of 2 videos re-maps before videos
    # 3, 5 and 7; one byte more only before 4 and 7.
    videos = _videos(lengths=(16,) * 8, dim=64)
    out = build_store(tmp_path / "s", list(videos), videos.get)
    made = _maps(monkeypatch)
    with TokenStore(out, window_mb=window_bytes / 2**20) as store:
        for key in videos:
            assert torch.equal(store.tokens(key), videos[key]["tokens"])
    assert len(made) == maps


def test_close_releases_the_file_and_the_mapping(tmp_path):
    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    before = fds()
    store = TokenStore(out)
    store.close()  # never read: nothing to release, and no error
    store = TokenStore(out)
    store.tokens("clip0.mp4")
    assert fds() > before
    store.close()
    assert fds() == before
