"""The frame cache (run/frame_cache.py): decoded, resized frames shared by every reducer and schedule.
A second schedule over the same videos decodes nothing, its metrics equal a decoding run's, a damaged
entry is a miss that gets rewritten, a replaced video file is a miss, and the least recently used
entries go first when the bound is passed."""

from __future__ import annotations

import os
import threading
from fractions import Fraction

import pytest
import torch

import vidtldr.data.dataset as dataset_module
import vidtldr.run.runner_features as rf
from vidtldr.data.dataset import VideoDataset
from vidtldr.data.tiny import write_clip
from vidtldr.run.cache import FeatureCache
from vidtldr.run.frame_cache import MAGIC, FrameCache, decode_entry, encode_entry
from vidtldr.run.runner_features import video_features

FRAMES, SIZE = 4, 16
# One entry: 4 frames x 3 x 16 x 16 pixels plus its header (a few hundred bytes).
PIXELS = FRAMES * 3 * SIZE * SIZE


@pytest.fixture(autouse=True)
def _tqdm_lock_of_this_process(monkeypatch):
    monkeypatch.setattr(rf.tqdm, "_lock", threading.RLock(), raising=False)
    monkeypatch.setattr(rf.tqdm, "monitor_interval", 0)


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    return [str(write_clip(folder / f"c{i}.mp4", 6, Fraction(5), 32, 32, clip_index=i)) for i in range(3)]


@pytest.fixture
def decoder_calls(monkeypatch):
    """Every call of the decoder the dataset uses (in this process: the tests use num_workers=0)."""
    calls: list[str] = []
    real = dataset_module.read_frames

    def counting(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "read_frames", counting)
    return calls


def _encoder(frames: torch.Tensor) -> list[dict]:
    return [{"tokens": frames[i].mean(dim=(0, 2, 3))[None], "token_counts": torch.tensor([9, 1])}
            for i in range(frames.shape[0])]


def _features(clips, schedule: str, root, frame_cache):
    # Each schedule has its own feature cache (the key differs), the frames are shared.
    cache = FeatureCache(root / "features", {"schedule": schedule})
    keys = [os.path.basename(c) for c in clips]
    return video_features(clips, keys, _encoder, cache, num_frames=FRAMES, trimmed30=False, size=SIZE, batch_size=2,
                          num_workers=0, skip_unreadable=False, progress=False, frame_cache=frame_cache)


def test_two_schedules_over_the_same_videos_decode_once(clips, tmp_path, decoder_calls):
    frames = FrameCache(tmp_path / "frames", 1 << 30)
    first = _features(clips, "r=[2]", tmp_path, frames)
    assert sorted(decoder_calls) == ["c0.mp4", "c1.mp4", "c2.mp4"]
    second = _features(clips, "r=[5]", tmp_path, frames)
    assert len(decoder_calls) == 3  # nothing decoded for the second schedule
    assert (first.frames_from_cache, second.frames_from_cache) == (0, 3)
    assert second.decoded == 3 and second.num_workers == 0  # encoded again (new schedule), no worker started
    for key in first.by_key:
        assert torch.equal(first.by_key[key]["tokens"], second.by_key[key]["tokens"])


def test_cached_frames_equal_decoded_frames(clips, tmp_path, decoder_calls):
    plain = VideoDataset(clips, FRAMES, size=SIZE)
    cached = VideoDataset(clips, FRAMES, size=SIZE, frame_cache=FrameCache(tmp_path, 1 << 30))
    for i in range(len(clips)):
        cached[i]  # fills the cache
        item = cached[i]
        assert item["from_cache"] is True
        assert torch.equal(item["frames"], plain[i]["frames"])
    assert len(decoder_calls) == 2 * len(clips)  # plain: every time; cached: once per video


def test_a_damaged_entry_is_a_miss_and_is_rewritten(clips, tmp_path, decoder_calls):
    cache = FrameCache(tmp_path, 1 << 30)
    ds = VideoDataset(clips[:1], FRAMES, size=SIZE, frame_cache=cache)
    good = ds[0]["frames"]
    entry = cache.entry_path(clips[0], ds.frames_key())
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF  # one pixel flipped: the digest no longer matches
    entry.write_bytes(bytes(data))
    item = ds[0]
    assert item["from_cache"] is False and torch.equal(item["frames"], good)
    assert cache.stats.damaged == 1 and len(decoder_calls) == 2
    assert ds[0]["from_cache"] is True  # rewritten whole
    entry.write_bytes(entry.read_bytes()[: len(MAGIC) + 20])  # cut short (header incomplete)
    assert ds[0]["from_cache"] is False and cache.stats.damaged == 2


def test_entry_format_checks_key_source_and_length():
    frames = torch.arange(2 * 3 * 2 * 2, dtype=torch.uint8).view(2, 3, 2, 2)
    data = encode_entry(frames, {"num_frames": 2}, "id-1")
    assert torch.equal(decode_entry(data, {"num_frames": 2}, "id-1"), frames)
    assert decode_entry(data, {"num_frames": 3}, "id-1") is None
    assert decode_entry(data, {"num_frames": 2}, "id-2") is None
    assert decode_entry(data[:-1], {"num_frames": 2}, "id-1") is None
    assert decode_entry(b"x" + data, {"num_frames": 2}, "id-1") is None


def test_a_changed_video_file_is_a_miss(clips, tmp_path, decoder_calls):
    cache = FrameCache(tmp_path / "frames", 1 << 30)
    ds = VideoDataset(clips[:1], FRAMES, size=SIZE, frame_cache=cache)
    before = ds[0]["frames"]
    stat = os.stat(clips[0])
    # Another clip written under the same name, with the old modification time (as `cp -p` would).
    write_clip(clips[0], 6, Fraction(5), 32, 32, clip_index=2)
    os.utime(clips[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    item = ds[0]
    assert item["from_cache"] is False and len(decoder_calls) == 2
    assert not torch.equal(item["frames"], before)


def test_least_recently_used_entries_are_evicted_first(clips, tmp_path):
    # Room for two entries: the third write evicts down to 90% of the bound, i.e. one entry goes.
    bound = int(2.5 * (PIXELS + 400))
    key = VideoDataset(clips, FRAMES, size=SIZE).frames_key()
    frames = torch.zeros(FRAMES, 3, SIZE, SIZE, dtype=torch.uint8)
    earlier = FrameCache(tmp_path, bound)  # a previous run
    earlier.put(clips[0], key, frames)
    earlier.put(clips[1], key, frames)
    cache = FrameCache(tmp_path, bound)
    assert cache.get(clips[0], key) is not None  # c0 is now more recent than c1
    cache.put(clips[2], key, frames)
    assert cache.stats.evicted == 1 and cache.enabled and not cache.stats.problems
    assert [cache.holds(c, key) for c in clips] == [True, False, True]


def test_a_run_whose_frames_outgrow_the_bound_stops_writing_instead_of_evicting_its_own(clips, tmp_path):
    # Room for two entries, one run writing three: evicting would drop a frame this run wrote a
    # moment ago (every later run would rewrite them all); it keeps them and stops writing.
    key = VideoDataset(clips, FRAMES, size=SIZE).frames_key()
    frames = torch.zeros(FRAMES, 3, SIZE, SIZE, dtype=torch.uint8)
    cache = FrameCache(tmp_path, int(2.5 * (PIXELS + 400)))
    for clip in clips[:3]:
        cache.put(clip, key, frames)
    assert cache.stats.writes == 3 and cache.stats.evicted == 0 and not cache.enabled
    assert [problem.split(":")[0] for problem in cache.stats.problems] == ["frame cache stopped writing"]
    assert "raise cache.frames_max_gb" in cache.stats.problems[0]
    later = FrameCache(tmp_path, int(2.5 * (PIXELS + 400)))  # the next run reads every one of them
    assert all(later.get(clip, key) is not None for clip in clips[:3])


def test_a_disk_that_refuses_writes_turns_the_cache_off_with_a_reason(clips, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = FrameCache(blocker / "frames", 1 << 30)
    ds = VideoDataset(clips[:1], FRAMES, size=SIZE, frame_cache=cache)
    assert ds[0]["ok"] is True  # the evaluation goes on
    assert cache.enabled is False and "cannot write" in cache.stats.problems[0]
