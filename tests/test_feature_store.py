"""Disk-backed token store: ragged layout, exact fp32 round trip, fp16 rounding, bounded re-mapping,
atomic build; and the runner's two token paths (disk store vs one in-memory tensor) agree exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidtldr.run.cache import FeatureCache
from vidtldr.errors import VidtldrError
from vidtldr.run.feature_store import INDEX, TOKENS, TokenStore, build_from_cache, build_store, store_dir
from vidtldr.run.runner import SCRATCH, run

from _eval_helpers import make_cfg, stable_view


def _videos(lengths=(5, 3, 8, 1), dim=6, seed=0) -> dict[str, dict]:
    gen = torch.Generator().manual_seed(seed)
    return {f"clip{i}.mp4": {"tokens": torch.randn(n, dim, generator=gen) * 10,
                             "feat": torch.randn(1, 4, generator=gen),
                             "token_counts": torch.tensor([n + 4, n])}
            for i, n in enumerate(lengths)}


def test_ragged_round_trip_is_exact_in_fp32(tmp_path):
    videos = _videos()
    keys = list(videos)
    out = build_store(tmp_path / "s", keys, videos.get)
    with TokenStore(out) as store:
        assert len(store) == 4 and store.dim == 6 and store.lengths == [5, 3, 8, 1]
        assert store.offsets == [0, 5, 8, 16]  # rows, one video after the other
        assert (out / TOKENS).stat().st_size == 17 * 6 * 4
        for key in reversed(keys):  # any order, any number of times
            assert torch.equal(store.tokens(key), videos[key]["tokens"])
        assert torch.equal(store.feats(keys[::-1]), torch.stack([videos[k]["feat"].reshape(-1) for k in keys[::-1]])[:, None])
        assert store.token_counts == [9, 5]  # the first video's, as token_counts_of reports
        # A view maps split rows to stored videos; a clip named twice is stored once.
        view = store.view([keys[2], keys[0], keys[2]])
        assert len(view) == 3 and torch.equal(view[2], videos[keys[2]]["tokens"]) and torch.equal(view[0], view[2])


def test_fp16_store_rounds_like_half(tmp_path):
    videos = _videos()
    out = build_store(tmp_path / "h", list(videos), videos.get, dtype="fp16")
    with TokenStore(out) as store:
        assert (out / TOKENS).stat().st_size == 17 * 6 * 2
        for key, stored in videos.items():
            got = store.tokens(key)
            assert got.dtype == torch.float32
            assert torch.equal(got, stored["tokens"].half().float())
            assert not torch.equal(got, stored["tokens"])  # it does round: fp16 is not exact
            assert torch.equal(store.feats([key])[0, 0], stored["feat"].reshape(-1))  # ITC inputs stay fp32


def test_small_window_remaps_and_reads_the_same(tmp_path):
    videos = _videos(lengths=(40, 7, 33, 12, 50), dim=16)
    out = build_store(tmp_path / "w", list(videos), videos.get)
    with TokenStore(out, window_mb=1e-4) as tiny, TokenStore(out) as big:  # ~100 bytes: re-map on every read
        for _ in range(3):
            for key in videos:
                assert torch.equal(tiny.tokens(key), big.tokens(key))
                assert torch.equal(tiny.tokens(key), videos[key]["tokens"])


def test_build_is_atomic_and_reuses_a_complete_store(tmp_path):
    videos = _videos()
    keys = list(videos)

    def broken(key):
        return None if key == keys[2] else videos[key]

    with pytest.raises(VidtldrError, match="no cached features"):
        build_store(tmp_path / "s", keys, broken)
    assert list(tmp_path.iterdir()) == []  # no half-written store, no temporary folder left behind
    with pytest.raises(VidtldrError, match="index.json is missing"):
        TokenStore(tmp_path / "s")
    out = build_store(tmp_path / "s", keys, videos.get)
    calls = []
    assert build_store(tmp_path / "s", keys, lambda k: calls.append(k)) == out and calls == []
    (out / INDEX).write_text("{")  # a damaged index is not a store: a clear message, and the build replaces it
    with pytest.raises(VidtldrError, match=r"index.json is damaged .*remove it with `rm -r"):
        TokenStore(out)
    assert build_store(tmp_path / "s", keys, videos.get) == out
    with TokenStore(out) as store:
        assert torch.equal(store.tokens(keys[1]), videos[keys[1]]["tokens"])


def test_built_from_cache_shards_without_counting_hits(tmp_path):
    videos = _videos()
    cache = FeatureCache(tmp_path / "features", {"k": 1})
    for key, stored in videos.items():
        cache.save(key, stored)
    before = cache.stats()
    keys = list(videos)[::-1]
    out = build_from_cache(cache, keys)
    assert out == store_dir(cache, keys, "fp32") and out.parent.parent == cache.dir
    assert store_dir(cache, keys, "fp16") != out and store_dir(cache, keys[::-1], "fp32") != out
    assert cache.stats() == before
    with TokenStore(out) as store:
        assert store.keys == keys and torch.equal(store.tokens(keys[0]), videos[keys[0]]["tokens"])


# ----------------------------------------------------------------------------- through the runner


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("store_cache")


def test_disk_store_and_in_memory_tokens_give_identical_records(cache, tmp_path):
    disk = run(make_cfg(cache, "data.batch_size=3"), tmp_path / "disk", progress=False)
    memory = run(make_cfg(cache, "eval.token_store=memory"), tmp_path / "memory", progress=False)
    assert disk["feature_store"]["mode"] == "disk" and disk["feature_store"]["dtype"] == "fp32"
    assert disk["feature_store"]["videos"] == 7 and disk["feature_store"]["bytes"] == 7 * 124 * 64 * 4
    assert memory["feature_store"] == {"mode": "memory"}
    assert memory["counts"]["videos_from_cache"] == 7  # the second run decoded nothing
    a, b = stable_view(disk), stable_view(memory)
    a.pop("feature_store"), b.pop("feature_store")
    assert a == b  # metrics, counts, token counts: bit-for-bit the same
    # One fp32 store for these videos (the memory run builds none). Other tests of this module share
    # the cache and may add an fp16 one: counted by dtype so the test holds in any order.
    stores = (Path(disk["cache"]["video"]["dir"]) / "stores").iterdir()
    fp32 = [s for s in stores if json.loads((s / INDEX).read_text())["dtype"] == "fp32"]
    assert len(fp32) == 1


def test_cache_off_uses_a_scratch_store_that_is_removed(cache, tmp_path):
    off = run(make_cfg(cache, "cache.enabled=false"), tmp_path / "off", progress=False)
    on = run(make_cfg(cache), tmp_path / "on", progress=False)
    assert off["cache"]["video"]["enabled"] is False and off["cache"]["video"]["writes"] == 0
    assert off["metrics"] == on["metrics"]
    assert not (tmp_path / "off" / SCRATCH).exists()


def test_fp16_store_is_an_option(cache, tmp_path):
    record = run(make_cfg(cache, "eval.token_store_dtype=fp16"), tmp_path, progress=False)
    assert record["status"] == "complete" and record["feature_store"]["dtype"] == "fp16"
    assert record["feature_store"]["bytes"] == 7 * 124 * 64 * 2


def test_verified_store_is_not_read_again_until_a_file_changes(tmp_path, monkeypatch):
    from vidtldr.run import record
    from vidtldr.run.feature_store import verify_store

    videos = _videos()
    out = build_store(tmp_path / "s", list(videos), videos.get)
    assert verify_store(out) is None  # hashes the files once and remembers them
    reads = []
    real_open = open
    monkeypatch.setattr(record, "open", lambda p, *a, **k: reads.append(Path(p).name) or real_open(p, *a, **k),
                        raising=False)
    assert verify_store(out) is None and TOKENS not in reads
    data = bytearray((out / TOKENS).read_bytes())
    data[0] ^= 0xFF
    (out / TOKENS).write_bytes(bytes(data))  # same size; a write changes the ctime
    assert "does not match its checksum" in verify_store(out) and TOKENS in reads
