"""Video features through the cache (runner_features): each distinct video encoded once, cached per
video as soon as its batch is done, an interrupted run resumed without decoding again, unreadable
videos skipped (never cached) or named, and the small helpers the runners share."""

from __future__ import annotations

import logging
import shutil
import threading
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import vidtldr.run.runner_features as rf
from vidtldr.data.tiny import write_clip
from vidtldr.errors import VideoError, VidtldrError
from vidtldr.run.cache import FeatureCache
from vidtldr.run.runner_features import (VideoFeatures, all_ranks_outcome, first_path_of, frames_entry, load_shared_shard,
                                         stack, token_counts_by_video, token_counts_of, unique_in_order, video_features)

FRAMES, SIZE = 4, 16


@pytest.fixture(autouse=True)
def _tqdm_lock_of_this_process(monkeypatch):
    # tqdm's default lock is shared by forked processes and its monitor thread may hold it at a fork:
    # mutation testing forks one process per mutant, and one killed while holding it blocked the rest.
    monkeypatch.setattr(rf.tqdm, "_lock", threading.RLock(), raising=False)
    monkeypatch.setattr(rf.tqdm, "monitor_interval", 0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return [str(write_clip(folder / f"c{i}.mp4", 6, Fraction(5), 32, 32, clip_index=i)) for i in range(3)]


class Encoder:
    """A stand-in model: one feature per video from its frames (so videos differ); records every batch."""

    def __init__(self, fail_on_batch: int | None = None):
        self.batches: list[int] = []
        self.fail_on_batch = fail_on_batch

    def __call__(self, frames: torch.Tensor) -> list[dict]:
        assert frames.shape[1:] == (FRAMES, 3, SIZE, SIZE)
        if self.fail_on_batch == len(self.batches):
            raise KeyboardInterrupt
        self.batches.append(frames.shape[0])
        return [{"tokens": frames[i].mean(dim=(0, 2, 3))[None], "feat": frames[i].std()[None],
                 "token_counts": torch.tensor([9, 1])} for i in range(frames.shape[0])]


def _run(paths, keys, encoder, cache, **kw):
    args = dict(num_frames=FRAMES, trimmed30=False, size=SIZE, batch_size=2, num_workers=0, skip_unreadable=False,
                progress=False)
    return video_features(paths, keys, encoder, cache, **{**args, **kw})


def test_first_path_of_and_unique_in_order():
    assert first_path_of(["a", "b", "a"], ["p1", "p2", "p3"]) == {"a": "p1", "b": "p2"}
    assert unique_in_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    with pytest.raises(ValueError):
        first_path_of(["a", "b"], ["p1"])  # records and files must pair up


def test_each_distinct_video_is_encoded_once_then_read_from_the_cache(clips, tmp_path, caplog):
    keys = ["x", "y", "x", "z", "y"]  # several records per video (QA questions, repeated clips)
    paths = [clips[0], clips[1], clips[2], clips[2], clips[0]]  # a repeated key keeps its first file
    cache = FeatureCache(tmp_path, {"k": 1})
    encoder = Encoder()
    with caplog.at_level(logging.INFO, logger=rf.__name__):
        first = _run(paths, keys, encoder, cache)
        second = _run(paths, keys, Encoder(), cache)
    assert [r.getMessage() for r in caplog.records] == ["video features: 0 cached, 3 to encode",
                                                        f"video features: all 3 videos from the cache {cache.dir}"]
    assert encoder.batches == [2, 1] and (first.decoded, first.cached) == (3, 0)
    assert list(first.by_key) == ["x", "y", "z"] and cache.stats()["writes"] == 3
    own = Encoder()
    alone = _run([clips[0]], ["x"], own, FeatureCache(tmp_path / "other", {"k": 1}))
    assert torch.equal(first.by_key["x"]["tokens"], alone.by_key["x"]["tokens"])  # x is clips[0]
    assert not torch.equal(first.by_key["x"]["tokens"], first.by_key["y"]["tokens"])
    again = Encoder()
    second = _run(paths, keys, again, cache)
    assert again.batches == [] and (second.decoded, second.cached) == (0, 3) and second.skipped == []
    partly = _run(paths + [clips[1]], keys + ["w"], Encoder(), cache)
    assert (partly.decoded, partly.cached) == (1, 3)
    for key in ("x", "y", "z"):
        assert torch.equal(second.by_key[key]["tokens"], first.by_key[key]["tokens"])


def test_an_interrupted_run_resumes_where_it_stopped(clips, tmp_path):
    keys = ["a", "b", "c"]
    cache = FeatureCache(tmp_path, {"k": 1})
    with pytest.raises(KeyboardInterrupt):
        _run(clips, keys, Encoder(fail_on_batch=1), cache, batch_size=1)  # stops while encoding "b"
    assert cache.load("a", count=False) is not None and cache.load("b", count=False) is None
    encoder = Encoder()
    resumed = _run(clips, keys, encoder, cache, batch_size=1)
    assert encoder.batches == [1, 1] and (resumed.decoded, resumed.cached) == (2, 1)
    assert list(resumed.by_key) == ["a", "b", "c"]  # the cached one first, then the encoded ones


def test_retain_keeps_a_part_in_memory_and_the_whole_in_the_cache(clips, tmp_path):
    cache = FeatureCache(tmp_path, {"k": 1})
    small = lambda stored: {"feat": stored["feat"]}  # noqa: E731
    first = _run(clips[:2], ["a", "b"], Encoder(), cache, retain=small)
    second = _run(clips[:2], ["a", "b"], Encoder(), cache, retain=small)
    for result in (first, second):  # from the encoder and from the cache alike
        assert all(set(stored) == {"feat"} for stored in result.by_key.values())
    assert {"tokens", "feat", "token_counts"} <= set(cache.load("a"))


def test_an_unreadable_video_is_skipped_and_not_cached_or_named(clips, tmp_path, caplog):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    paths, keys = [clips[0], str(broken), clips[1]], ["a", "bad", "b"]
    cache = FeatureCache(tmp_path / "c", {"k": 1})
    with caplog.at_level(logging.WARNING, logger=rf.__name__):
        result = _run(paths, keys, Encoder(), cache, skip_unreadable=True)
    assert set(result.by_key) == {"a", "b"} and result.decoded == 2
    assert [(s.path, bool(s.reason)) for s in result.skipped] == [(str(broken), True)]
    assert [r.getMessage() for r in caplog.records] == [
        f"skipped 1 unreadable video(s), e.g. {broken}: {result.skipped[0].reason}"]
    assert cache.load("bad") is None  # a later run tries it again
    shutil.copy(clips[2], broken)  # the file was fixed
    encoder = Encoder()
    fixed = _run(paths, keys, encoder, cache, skip_unreadable=True)
    assert encoder.batches == [1] and fixed.skipped == [] and fixed.cached == 2
    broken.write_bytes(b"broken again")
    with pytest.raises(VideoError, match=str(broken)):
        _run([str(broken)], ["bad"], Encoder(), FeatureCache(tmp_path / "d", {"k": 1}))


def test_a_video_replaced_under_its_name_is_encoded_again(clips, tmp_path):
    video = tmp_path / "v.mp4"
    shutil.copy(clips[0], video)
    cache = FeatureCache(tmp_path / "c", {"k": 1})
    before = _run([str(video)], ["v"], Encoder(), cache).by_key["v"]["tokens"]
    shutil.copy(clips[1], video)
    encoder = Encoder()
    after = _run([str(video)], ["v"], encoder, cache)
    assert encoder.batches == [1] and not torch.equal(after.by_key["v"]["tokens"], before)


def test_stack_and_token_counts():
    feats = VideoFeatures(by_key={"a": {"t": torch.tensor([1.0]), "token_counts": torch.tensor([9, 4])},
                                  "b": {"t": torch.tensor([2.0]), "token_counts": torch.tensor([9, 4])}})
    assert torch.equal(stack(feats, ["b", "a", "b"], "t"), torch.tensor([[2.0], [1.0], [2.0]]))
    assert token_counts_of(feats) == [9, 4]
    assert token_counts_of(VideoFeatures(by_key={"a": {"token_counts": [5, 3]}})) == [5, 3]
    assert token_counts_of(VideoFeatures(by_key={"a": {"t": torch.ones(1)}})) == []
    assert token_counts_of(VideoFeatures(by_key={"a": {"token_counts": None}, "b": {"token_counts": [7]}})) == [7]


def test_all_ranks_outcome_sums_every_ranks_share(monkeypatch):
    mine = VideoFeatures(by_key={}, skipped=["s0"], decoded=2, cached=1)
    assert all_ranks_outcome(mine, SimpleNamespace(enabled=False)) == (["s0"], 2, 1)
    waited = []
    gathered = []
    monkeypatch.setattr(rf.D, "all_gather_objects", lambda obj, ctx: gathered.append(ctx) or [obj, (["s1", "s2"], 3, 7)])
    monkeypatch.setattr(rf.D, "barrier", lambda ctx: waited.append(ctx))
    ctx = SimpleNamespace(enabled=True)
    assert all_ranks_outcome(mine, ctx) == (["s0", "s1", "s2"], 5, 8) and waited == [ctx] and gathered == [ctx]


def test_a_shard_of_another_rank_is_read_or_its_absence_named(tmp_path):
    cache = FeatureCache(tmp_path, {"k": 1})
    cache.save("clip1", {"tokens": torch.ones(2, 3)})
    assert torch.equal(load_shared_shard(cache, "clip1")["tokens"], torch.ones(2, 3))
    with pytest.raises(VidtldrError) as error:
        load_shared_shard(cache, "clip7")
    # the folder may be the feature cache or, with cache.enabled=false, the run's scratch folder:
    # both settings are named (ranks given different run folders meet this)
    assert str(error.value) == (f"the features of video 'clip7' are missing or unreadable in {cache.dir}: another "
                                "rank may have failed, or that folder is not on a disk all ranks see (the feature "
                                "cache, paths.cache=; with cache.enabled=false the run folder, hydra.run.dir=, which "
                                "every rank must be given)")


def test_an_encoder_returning_fewer_videos_than_it_was_given_is_an_error(clips, tmp_path):
    def loses_one(frames):
        return Encoder()(frames)[:-1]

    with pytest.raises(ValueError):
        _run(clips[:2], ["a", "b"], loses_one, FeatureCache(tmp_path, {"k": 1}))


def test_trimmed30_reaches_the_decoder(tmp_path):
    # A 40 s clip, dark for its first 30 s and bright after: only the untrimmed sampling (4 frames, one
    # from each quarter) sees a bright frame.
    def frame(_clip, i, width, height):
        return np.full((height, width, 3), 20 if i < 150 else 230, dtype=np.uint8)

    video = str(write_clip(tmp_path / "long.mp4", 200, Fraction(5), 32, 32, frame_fn=frame))
    means = {trim: _run([video], ["v"], Encoder(), FeatureCache(tmp_path / "c", {"trimmed30": trim}),
                        trimmed30=trim).by_key["v"]["tokens"] for trim in (False, True)}
    assert (means[False] > means[True] + 0.5).all()  # a quarter of the frames far brighter


def test_the_progress_bar_counts_videos_and_is_cleared_when_done(clips, tmp_path, capsys):
    _run(clips, ["a", "b", "c"], Encoder(), FeatureCache(tmp_path / "quiet", {"k": 1}))
    assert capsys.readouterr().err == ""  # progress=False: nothing on the terminal
    _run(clips, ["a", "b", "c"], Encoder(), FeatureCache(tmp_path / "shown", {"k": 1}), progress=True)
    err = capsys.readouterr().err
    assert "video features:" in err and "0/3 " in err and "video/s" in err  # of 3 videos to encode
    assert not err.endswith("\n")  # leave=False: the bar is erased, not left in the log


def test_ranks_exchange_features_through_the_cache_or_the_runs_scratch_folder(tmp_path):
    from vidtldr.errors import ConfigError
    from vidtldr.run.distributed import DistContext
    from vidtldr.run.runner_features import exchange_cache
    from vidtldr.run.task_run import TaskJob

    key = {"model": "tiny", "merge": "none"}
    on, off = FeatureCache(tmp_path / "cache", key), FeatureCache(tmp_path / "cache", key, enabled=False)
    assert exchange_cache(on, tmp_path / "scratch", needed=True) is on  # the user's cache is shared already
    assert exchange_cache(off, None, needed=False) is off  # one process, nothing exchanged
    scratch = exchange_cache(off, tmp_path / "scratch", needed=True)
    assert scratch.enabled and scratch.key == key and scratch.dir.parent == tmp_path / "scratch"
    # without a scratch folder (the runner always gives <run folder>/.scratch_features): one line,
    # before any video is decoded or any rank waits for another
    job = TaskJob(task=None, model=None, tokenizer=None, reducer=None, split=None, spec=None, video_cache=off,
                  text_cache=off, img_size=32, settings=None, dist_ctx=DistContext(rank=0, world_size=2))
    with pytest.raises(ConfigError) as err:
        job.cached_videos(["v0", "v1"], [str(tmp_path / "v0.mp4"), str(tmp_path / "v1.mp4")], encode=None)
    assert str(err.value) == ("cache.enabled=false: this run exchanges features on disk (several ranks, or "
                              "eval.token_store=disk) and was given no scratch folder; pass scratch=<a folder every "
                              "rank sees> or set cache.enabled=true")


def test_token_counts_per_video_only_when_the_videos_differ():
    def held(**counts):
        return VideoFeatures(by_key={k: {"feat": torch.zeros(1)} if v is None else {"token_counts": v}
                                     for k, v in counts.items()})

    # a content-adaptive reducer: each video its own counts (a video stored without counts is left out)
    adaptive = token_counts_by_video(held(a=torch.tensor([196, 138, 90]), b=[196, 120, 80], c=None))
    assert adaptive == {"a": [196, 138, 90], "b": [196, 120, 80]}
    assert all(type(n) is int for counts in adaptive.values() for n in counts)
    # a fixed schedule gives every video the same counts, and one video cannot differ: nothing to list
    assert token_counts_by_video(held(a=[196, 98], b=torch.tensor([196, 98]))) == {}
    assert token_counts_by_video(held(a=[196, 98])) == {} and token_counts_by_video(held()) == {}


def test_frames_entry_counts_what_the_frame_cache_served_on_every_rank(monkeypatch):
    settings = SimpleNamespace(decoder="pyav", frames_max_gb=16)
    cache = SimpleNamespace(enabled=True, root="/c/frames", stats=SimpleNamespace(problems=[]))
    one = SimpleNamespace(enabled=False)
    videos = VideoFeatures(by_key={}, decoded=5, frames_from_cache=2, num_workers=3)  # 5 encoded, 2 of them served
    assert frames_entry(videos, cache, settings, one) == {
        "enabled": True, "served": 2, "decoded": 3, "decoder": "pyav", "num_workers": 3, "dir": "/c/frames",
        "max_gb": 16}
    plain = VideoFeatures(by_key={}, decoded=5, num_workers=1)
    assert frames_entry(plain, None, settings, one) == {"enabled": False, "served": 0, "decoded": 5, "decoder": "pyav",
                                                        "num_workers": 1}
    problems = ["frames folder not writable: cache turned off"]
    off = SimpleNamespace(enabled=False, root="/c/frames", stats=SimpleNamespace(problems=problems))
    entry = frames_entry(plain, off, settings, one)
    assert entry["enabled"] is False and entry["dir"] == "/c/frames" and entry["problems"] == problems
    # two ranks: both shares are summed (this rank 2 of 5, the other 1 of 4)
    ranks = SimpleNamespace(enabled=True)
    monkeypatch.setattr(rf.D, "all_gather_objects", lambda obj, ctx: [obj, (1, 4)] if ctx is ranks else None)
    both = frames_entry(videos, cache, settings, ranks)
    assert (both["served"], both["decoded"]) == (3, 6)


def test_videos_to_encode_go_to_the_tasks_own_dataset(clips, tmp_path):
    from vidtldr.data.dataset import VideoDataset

    from vidtldr.run.frame_cache import FrameCache

    cache = FeatureCache(tmp_path / "c", {"k": 1})
    _run(clips[:1], ["a"], Encoder(), cache)  # a is in the feature cache
    frames = FrameCache(tmp_path / "frames", 1 << 30)
    made = []

    def make_dataset(paths, skip_unreadable, frame_cache):
        made.append((list(paths), skip_unreadable, frame_cache))
        return VideoDataset(paths, FRAMES, False, SIZE, skip_unreadable, frame_cache=frame_cache)

    out = _run(clips, ["a", "b", "c"], Encoder(), cache, make_dataset=make_dataset, skip_unreadable=True,
               frame_cache=frames)
    # only the videos to encode, with the run's skip setting and its frame cache
    assert made == [(clips[1:], True, frames)]
    assert (out.cached, out.decoded, sorted(out.by_key)) == (1, 2, ["a", "b", "c"])


def test_frames_held_by_the_frame_cache_start_no_worker_and_the_decoder_setting_is_used(clips, tmp_path,
                                                                                          monkeypatch):
    import vidtldr.data.dataset as dataset_module
    from vidtldr.run.frame_cache import FrameCache

    here = []  # videos decoded in this process (a worker's calls stay in the worker)
    real = dataset_module.read_frames
    monkeypatch.setattr(dataset_module, "read_frames",
                        lambda path, *a, **k: here.append((Path(path).name, k.get("decoder"))) or real(path, *a, **k))
    frames = FrameCache(tmp_path / "frames", 1 << 30)
    first = _run(clips[:1], ["a"], Encoder(), FeatureCache(tmp_path / "one", {"k": 1}), frame_cache=frames,
                 decoder="pyav")
    assert here == [("c0.mp4", "pyav")] and first.frames_from_cache == 0
    # another schedule (feature cache): a's frames are held, so 2 workers for b and c, not 3 (nor 5)
    second = _run(clips, ["a", "b", "c"], Encoder(), FeatureCache(tmp_path / "two", {"k": 2}), frame_cache=frames,
                  decoder="pyav", num_workers=5)
    assert (second.decoded, second.frames_from_cache, second.num_workers) == (3, 1, 2)
    assert here == [("c0.mp4", "pyav")]  # b and c were decoded by the workers
    # without a frame cache: never more workers than videos to decode
    alone = _run(clips[:1], ["a"], Encoder(), FeatureCache(tmp_path / "three", {"k": 3}), num_workers=2)
    assert alone.num_workers == 1 and alone.frames_from_cache == 0
    # a task's own dataset may have no frame cache at all: it holds nothing
    assert rf._frames_held(SimpleNamespace(videos=clips)) == 0
