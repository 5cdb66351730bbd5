"""Feature cache: keying, round trip, atomic writes, damaged shards, disabled mode."""

from __future__ import annotations

import pytest
import torch

import vidtldr.run.cache as cache_module
from vidtldr.run.cache import FeatureCache, atomic_write_text, stable_hash


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
