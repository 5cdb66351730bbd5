"""Feature cache: keying, round trip, stats, source files, atomic writes, damaged shards, disabled mode."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

import vidtldr.files as files_module
import vidtldr.run.cache as cache_module
from vidtldr.errors import DiskFullError
from vidtldr.run.cache import FeatureCache, atomic_write_text, file_identity, stable_hash


def test_key_hash_is_stable_and_order_independent():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_round_trip_and_separate_keys(tmp_path):
    a = FeatureCache(tmp_path, {"schedule": [48, 24]})
    b = FeatureCache(tmp_path, {"schedule": [40]})
    assert a.dir != b.dir and (a.dir / "key.json").is_file()
    tokens = torch.randn(5, 3)
    a.save("clips/v0.mp4", {"tokens": tokens, "token_counts": torch.tensor([5, 4])})
    assert a.has("clips/v0.mp4") and not b.has("clips/v0.mp4")
    got = a.load("clips/v0.mp4")
    assert torch.equal(got["tokens"], tokens) and got["item"] == "clips/v0.mp4"
    assert b.load("clips/v0.mp4") is None
    assert a.stats()["hits"] == 1 and a.stats()["writes"] == 1 and b.stats()["misses"] == 1
    assert a.missing(["clips/v0.mp4", "clips/v1.mp4"]) == ["clips/v1.mp4"]


def test_failed_write_leaves_no_shard_and_no_temp_file(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, {"k": 1})

    def interrupted_fsync(fd):
        raise KeyboardInterrupt  # the bytes sit in a partial file under the temporary name

    monkeypatch.setattr(cache_module.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        cache.save("v", {"x": torch.zeros(1)})
    assert not cache.has("v")
    assert [p.name for p in cache.dir.iterdir()] == ["key.json"]


def test_damaged_shard_is_a_miss_and_removed(tmp_path):
    cache = FeatureCache(tmp_path, {"k": 1})
    cache.save("v", {"x": torch.ones(2)})
    cache.shard_path("v").write_bytes(b"garbage")
    assert cache.load("v") is None
    assert not cache.shard_path("v").exists()


def test_disabled_cache_reads_and_writes_nothing(tmp_path):
    cache = FeatureCache(tmp_path / "c", {"k": 1}, enabled=False)
    cache.save("v", {"x": torch.ones(1)})
    assert cache.load("v") is None and not (tmp_path / "c").exists()


def test_atomic_text_write_replaces_whole_file(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_missing_shard_of_another_rank_is_named(tmp_path):
    from vidtldr.errors import VidtldrError
    from vidtldr.run.runner_features import load_shared_shard

    cache = FeatureCache(tmp_path, {"kind": "video"})
    with pytest.raises(VidtldrError, match=r"video 'clip7' are missing or unreadable in .*not on a disk all ranks"):
        load_shared_shard(cache, "clip7")


# ----------------------------------------------------------------------------- keys and key.json


def test_key_hash_is_the_sha256_of_the_canonical_json(tmp_path):
    # Cache folders made by earlier runs stay valid only if the canonical form never changes: sorted
    # keys, no spaces, non-JSON values (paths) as strings, the first 16 hex digits of the sha256.
    key = {"schedule": [48, 24], "ckpt": tmp_path / "m.pth", "arch": "umt-b"}
    canonical = '{"arch":"umt-b","ckpt":"%s","schedule":[48,24]}' % (tmp_path / "m.pth")
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert stable_hash(key) == expected
    cache = FeatureCache(tmp_path / "features", key)
    assert cache.dir.name == expected and cache.stats()["key"] == expected  # the record names the folder
    # key.json holds the key in full (paths as text) so that a human can tell the folders apart: sorted,
    # one field per line, as two folders' keys are compared side by side (diff)
    assert json.loads((cache.dir / "key.json").read_text()) == {"arch": "umt-b", "ckpt": str(tmp_path / "m.pth"),
                                                                "schedule": [48, 24]}
    assert (cache.dir / "key.json").read_text().splitlines() == [
        "{", ' "arch": "umt-b",', f' "ckpt": "{tmp_path / "m.pth"}",', ' "schedule": [', "  48,", "  24", " ]", "}"]
    # Another process opening a cache with this cache's key (a scratch copy for data-parallel ranks) gets the same name
    assert FeatureCache(tmp_path / "scratch", cache.key).dir.name == expected


# ----------------------------------------------------------------------------- hits, misses, writes


def test_stats_count_every_hit_miss_and_write(tmp_path):
    cache = FeatureCache(tmp_path, {"k": 1})
    for item in ("a", "b", "c"):
        cache.save(item, {"x": torch.ones(1)})
    assert cache.stats()["writes"] == 3
    assert cache.load("a") is not None and cache.load("b") is not None  # 2 hits
    assert cache.load("nothing") is None and cache.load("nothing") is None  # 2 misses (no shard)
    cache.shard_path("c").write_bytes(b"garbage")
    assert cache.load("c") is None  # 3rd miss: damaged
    torch.save({"item": "someone else", "source": "", "x": torch.ones(1)}, cache.shard_path("d"))
    assert cache.load("d") is None  # 4th miss: a foreign shard under this name
    assert cache.load("a", count=False) is not None and cache.load("zzz", count=False) is None  # not counted
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["writes"]) == (2, 4, 3)
    off = FeatureCache(tmp_path / "off", {"k": 1}, enabled=False)
    assert off.load("a") is None and off.load("b") is None and off.stats()["misses"] == 2


@pytest.mark.parametrize("content", ["tensor", "other item", "no source field"])
def test_a_shard_that_is_not_this_items_is_a_miss(tmp_path, content):
    cache = FeatureCache(tmp_path, {"k": 1})
    payload = {"tensor": torch.ones(3),  # not a dict at all
               "other item": {"item": "w", "source": "", "x": torch.ones(3)},  # a hash collision
               "no source field": {"item": "v", "x": torch.ones(3)}}[content]
    torch.save(payload, cache.shard_path("v"))
    assert cache.load("v") is None and cache.stats()["misses"] == 1


class _RunsCode:
    ran = []

    def __reduce__(self):
        return (_RunsCode.ran.append, ("unpickled",))


def test_a_shard_is_never_unpickled_beyond_tensors(tmp_path):
    # A cache folder may be shared; a file in it must not be able to run code when read.
    cache = FeatureCache(tmp_path, {"k": 1})
    torch.save({"item": "v", "source": "", "x": _RunsCode()}, cache.shard_path("v"))
    assert cache.load("v") is None and _RunsCode.ran == []
    assert not cache.shard_path("v").exists()  # treated as damaged: removed


def test_a_damaged_shard_that_cannot_be_removed_is_still_a_miss(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, {"k": 1})
    cache.shard_path("v").write_bytes(b"garbage")

    def read_only(self, missing_ok=False):
        raise PermissionError(13, "read-only cache", str(self))

    monkeypatch.setattr(Path, "unlink", read_only)
    assert cache.load("v") is None and cache.stats()["misses"] == 1


# ----------------------------------------------------------------------------- items bound to video files


def test_a_replaced_video_is_missing_and_an_unreadable_one_never_cached(tmp_path):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"first version")
    cache = FeatureCache(tmp_path / "c", {"k": 1})
    cache.bind_sources({"v": str(video), "gone": str(tmp_path / "gone.mp4")})
    cache.save("v", {"x": torch.ones(1)})
    assert cache.has("v") and cache.missing(["v"]) == []
    stat = video.stat()
    video.write_bytes(b"other version")  # same size, same modification time
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not cache.has("v") and cache.missing(["v"]) == ["v"] and cache.load("v") is None
    cache.save("v", {"x": torch.zeros(1)})
    assert torch.equal(cache.load("v")["x"], torch.zeros(1))
    # A bound file that cannot be read: nothing is trusted and nothing is written for it.
    assert not cache.has("gone") and cache.load("gone") is None
    cache.save("gone", {"x": torch.ones(1)})
    assert cache.load("gone") is None and cache.stats()["writes"] == 2
    assert cache.source("gone") is None and cache.source("unbound") == ""


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_file_identity_sees_the_first_and_last_mib_and_reads_at_most_2_mib(tmp_path, monkeypatch):
    mib = cache_module.FINGERPRINT_BYTES
    data = bytearray(torch.randint(0, 256, (3 * mib + 5,), generator=torch.Generator().manual_seed(0),
                                   dtype=torch.uint8).numpy().tobytes())
    video = _write(tmp_path / "v.mp4", bytes(data))
    stat = video.stat()
    original = file_identity(video)
    for where in (10, len(data) - 10):  # a change in the first MiB, then one in the last MiB
        changed = bytearray(data)
        changed[where] ^= 0xFF
        _write(video, bytes(changed))
        os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # `cp -p`: size and mtime preserved
        assert file_identity(video) != original
    read = []
    real_open = open

    class Counting:
        def __init__(self, handle):
            self.handle = handle

        def read(self, n=-1):
            out = self.handle.read(n)
            read.append(len(out))
            return out

        def seek(self, *args):
            return self.handle.seek(*args)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(cache_module, "open", lambda p, *a, **k: Counting(real_open(p, *a, **k)), raising=False)
    big = _write(tmp_path / "big.mp4", bytes(data) * 2)
    assert file_identity(big) is not None and sum(read) == 2 * mib  # a multi-GB video is not read whole


def test_a_change_in_the_middle_of_a_large_video_with_a_new_mtime_is_a_miss(tmp_path):
    # Re-encoding (or editing) a video rewrites it and gives it a new mtime; when the bytes that changed
    # lie beyond the first and the last MiB, the fingerprint cannot see them and the mtime must.
    mib = cache_module.FINGERPRINT_BYTES
    data = bytearray(torch.randint(0, 256, (3 * mib,), generator=torch.Generator().manual_seed(1),
                                   dtype=torch.uint8).numpy().tobytes())
    video = _write(tmp_path / "v.mp4", bytes(data))
    cache = FeatureCache(tmp_path / "c", {"k": 1})
    cache.bind_sources({"v": str(video)})
    cache.save("v", {"x": torch.ones(1)})
    assert cache.has("v")
    before = video.stat()
    data[len(data) // 2] ^= 0xFF  # byte 1.5 MiB: outside both fingerprinted MiBs
    _write(video, bytes(data))
    os.utime(video, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))  # one second later
    assert video.stat().st_size == before.st_size
    assert not cache.has("v") and cache.missing(["v"]) == ["v"] and cache.load("v") is None
    cache.save("v", {"x": torch.zeros(1)})  # encoded again from the new file
    assert torch.equal(cache.load("v")["x"], torch.zeros(1))


def test_file_identities_of_different_files_differ_in_one_process(tmp_path, monkeypatch):
    a, b = _write(tmp_path / "a.mp4", b"one video"), _write(tmp_path / "b.mp4", b"another")
    assert file_identity(a) != file_identity(b)
    # Files on two disks can share inode number, size and times; the path still tells them apart.
    same = os.stat(a)
    c, d = _write(tmp_path / "c.mp4", b"first disk"), _write(tmp_path / "d.mp4", b"other disk")
    with monkeypatch.context() as patch:
        patch.setattr(cache_module.os, "stat", lambda path: same)
        assert file_identity(c) != file_identity(d)
    assert file_identity(tmp_path / "none.mp4") is None


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_creates_missing_folders(tmp_path):
    atomic_write_text(tmp_path / "a" / "b" / "r.json", "x")
    assert (tmp_path / "a" / "b" / "r.json").read_text() == "x"


def test_a_write_killed_before_cleanup_leaves_only_a_hidden_temp_file_that_is_never_read(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, {"k": 1})
    shard = cache.shard_path("v")
    with monkeypatch.context() as patch:
        def interrupted_fsync(fd):
            raise KeyboardInterrupt

        def no_cleanup(path):  # as after kill -9: the partial temp file stays
            raise PermissionError(13, "cannot remove", path)

        patch.setattr(cache_module.os, "fsync", interrupted_fsync)
        patch.setattr(cache_module.os, "unlink", no_cleanup)
        with pytest.raises(KeyboardInterrupt):  # still the interruption, not the failed cleanup
            cache.save("v", {"x": torch.ones(4)})
    left = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "key.json"]
    assert len(left) == 1 and left[0].parent == shard.parent  # next to the target: renaming it is atomic
    assert left[0].name.startswith(f".{shard.name}.") and left[0].name.endswith(".tmp")  # hidden, not a .pt
    assert not cache.has("v") and cache.load("v") is None
    cache.save("v", {"x": torch.ones(4)})  # the re-run writes the shard in full
    assert torch.equal(cache.load("v")["x"], torch.ones(4))


@pytest.mark.parametrize("where", ["creating the temp file", "writing"])
def test_a_full_disk_is_a_disk_full_error_naming_the_file(tmp_path, monkeypatch, where):
    target = tmp_path / "shard.pt"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "writing":
        monkeypatch.setattr(files_module.os, "fsync", full)
    else:
        monkeypatch.setattr(files_module.os, "open", full)
    with pytest.raises(DiskFullError, match=f"no space left on the device holding {target}"):
        atomic_write_text(target, "data")
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temp file
