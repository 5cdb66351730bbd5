"""Video and text features for a run, through the feature cache.

Videos are encoded in batches of the *missing* ones only; each video's features are written to its
own cache shard as soon as its batch is done, so an interrupted run loses at most the batch in
flight and a re-run decodes nothing that is already cached. The encoding itself is the task
modules' / model's (``encode_fn``); this module only decides what to decode and where results go.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from vidtldr.run import distributed as D
from vidtldr.run.cache import FeatureCache
from vidtldr.data.dataset import SkippedVideo, VideoDataset, make_loader
from vidtldr.errors import ConfigError, VidtldrError

log = logging.getLogger(__name__)

# Bump when a code change alters what is stored in a shard (invalidates every cache entry).
FEATURE_FORMAT = 1

EncodeFn = Callable[[torch.Tensor], list[dict]]  # frames [B,T,3,H,W] -> one dict of tensors per video


@dataclass
class VideoFeatures:
    by_key: dict[str, dict]  # cache item -> stored tensors (incl. "token_counts")
    skipped: list[SkippedVideo] = field(default_factory=list)
    decoded: int = 0  # videos encoded in this run (0 when everything came from the feature cache)
    cached: int = 0
    frames_from_cache: int = 0  # of the encoded videos, those whose frames the frame cache served (not decoded)
    num_workers: int = 0  # decode processes actually started (never more than the videos to decode)
    frames: dict = field(default_factory=dict)  # record["cache"]["frames"] (TaskJob.cached_videos fills it)


def all_ranks_outcome(videos: VideoFeatures, dist_ctx) -> tuple[list[SkippedVideo], int, int]:
    """(skipped videos, number decoded, number from the cache) over every rank of a data-parallel
    run (each rank encoded its own share), after a barrier so that every rank's shards are on disk;
    this rank's own numbers in a single-process run."""
    if not dist_ctx.enabled:
        return videos.skipped, videos.decoded, videos.cached
    shares = D.all_gather_objects((videos.skipped, videos.decoded, videos.cached), dist_ctx)
    D.barrier(dist_ctx)
    return ([s for share in shares for s in share[0]], sum(share[1] for share in shares),
            sum(share[2] for share in shares))


def unique_in_order(keys: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def first_path_of(keys: Sequence[str], paths: Sequence[str]) -> dict[str, str]:
    """Video key -> the file of its first record (records sharing a key share one encoding)."""
    path_of: dict[str, str] = {}
    for key, path in zip(keys, paths, strict=True):
        path_of.setdefault(key, path)
    return path_of


def video_features(paths: Sequence[str], keys: Sequence[str], encode_fn: EncodeFn, cache: FeatureCache, *,
                   num_frames: int, trimmed30: bool, size: int, batch_size: int, num_workers: int,
                   skip_unreadable: bool, progress: bool,
                   retain: Callable[[dict], dict] | None = None,
                   make_dataset: Callable[[list[str], bool], Any] | None = None, decoder: str = "decord",
                   frame_cache: Any = None) -> VideoFeatures:
    """Features of every distinct video ``keys[i]`` (read from ``paths[i]``).

    Two records naming the same file share one encoding (LSMDC repeats clips; QA asks several
    questions per video). Unreadable videos raise, or with ``skip_unreadable`` are reported in
    ``skipped`` (and never cached, so a later run tries them again). ``retain`` picks what of each
    video stays in memory (``by_key``) after its shard is written; the default keeps everything,
    the feature-store path keeps only the small fields so memory does not grow with the videos.
    ``make_dataset(paths, skip_unreadable, frame_cache)`` replaces the default one-clip
    :class:`VideoDataset` (action recognition decodes every test view of a video into one item).
    ``frame_cache`` (:class:`vidtldr.run.frame_cache.FrameCache`) serves the dataset the decoded frames
    of videos another run (another reducer or schedule) already decoded.
    """
    keep = retain or (lambda stored: stored)
    path_of = first_path_of(keys, paths)
    cache.bind_sources(path_of)  # a shard is valid for the file it was computed from, not for its name
    order = unique_in_order(keys)
    result = VideoFeatures(by_key={})
    todo = []
    for key in order:
        stored = cache.load(key)
        if stored is None:
            todo.append(key)
        else:
            result.by_key[key] = keep(stored)
    result.cached = len(order) - len(todo)
    if not todo:
        log.info("video features: all %d videos from the cache %s", len(order), cache.dir)
        return result
    log.info("video features: %d cached, %d to encode", result.cached, len(todo))
    paths_todo = [path_of[k] for k in todo]
    dataset = (make_dataset(paths_todo, skip_unreadable, frame_cache) if make_dataset is not None
               else VideoDataset(paths_todo, num_frames, trimmed30, size, skip_unreadable, decoder=decoder,
                                 frame_cache=frame_cache))
    # A worker process costs its start-up: never start more than there are videos to decode (frames
    # the frame cache holds are read faster in this process than a worker starts).
    result.num_workers = min(num_workers, len(todo) - _frames_held(dataset))
    loader = make_loader(dataset, batch_size=batch_size, num_workers=result.num_workers)
    bar = tqdm(total=len(todo), desc="video features", unit="video", disable=not progress, leave=False)
    try:
        with loader:  # workers stopped whatever happens in the loop
            for batch in loader:
                index = batch["index"].tolist()
                ok = batch["ok"].tolist()
                rows = [j for j, good in enumerate(ok) if good]
                if rows:
                    frames = batch["frames"][rows]
                    for j, stored in zip(rows, encode_fn(frames), strict=True):
                        key = todo[index[j]]
                        cache.save(key, stored)  # atomic, per video: resume point
                        result.by_key[key] = keep(stored)
                        result.decoded += 1
                bar.update(len(index))
    finally:
        bar.close()
    result.skipped.extend(loader.skipped)
    result.frames_from_cache = loader.from_cache
    if result.skipped:
        log.warning("skipped %d unreadable video(s), e.g. %s: %s", len(result.skipped), result.skipped[0].path,
                     result.skipped[0].reason)
    return result


def _frames_held(dataset: Any) -> int:
    frame_cache = getattr(dataset, "frame_cache", None)
    if frame_cache is None or not frame_cache.enabled:
        return 0
    key = dataset.frames_key()
    return sum(frame_cache.holds(path, key) for path in dataset.videos)


def stack(features: VideoFeatures, keys: Sequence[str], name: str) -> torch.Tensor:
    """``[len(keys), ...]`` tensor of one stored field, in ``keys`` order."""
    return torch.stack([features.by_key[k][name] for k in keys])


def token_counts_of(features: VideoFeatures) -> list[int]:
    """Per-block token counts (entering block 0, then after each block); identical for every video
    of a run because every schedule fixes the count per block."""
    for stored in features.by_key.values():
        counts = stored.get("token_counts")
        if counts is not None:
            return [int(c) for c in counts]  # a tensor or a list
    return []


def token_counts_by_video(features: VideoFeatures) -> dict[str, list[int]]:
    """Per-block token counts of every video held, when they differ between videos (a content-adaptive
    reducer, rlt's threshold form); empty when every video has the same counts."""
    counts = {key: [int(c) for c in stored["token_counts"]] for key, stored in features.by_key.items()
              if stored.get("token_counts") is not None}
    return counts if len({tuple(c) for c in counts.values()}) > 1 else {}


def exchange_cache(cache: FeatureCache, scratch: Optional[Path], needed: bool) -> FeatureCache:
    """The cache features pass through on disk when ``needed`` (the ranks of a data-parallel run
    exchange them; the token store is packed from shards): the feature cache itself, or, when the
    user turned it off (``cache.enabled=false``), a cache with the same key in ``scratch`` (the
    runner's ``<run folder>/.scratch_features``, removed at the end of the run)."""
    if not needed or cache.enabled:
        return cache
    if scratch is None:  # the runner always passes one: only a direct caller can get here
        raise ConfigError("cache.enabled=false: this run exchanges features on disk (several ranks, or "
                          "eval.token_store=disk) and was given no scratch folder; pass scratch=<a folder every "
                          "rank sees> or set cache.enabled=true")
    return FeatureCache(scratch, cache.key)


def load_shared_shard(cache: FeatureCache, key: str) -> dict:
    """Another rank's features for video ``key`` from the shared cache; a clear error if its shard is
    missing or unreadable (that rank failed, or the folder is not shared between ranks)."""
    shard = cache.load(key)
    if shard is None:
        raise VidtldrError(f"the features of video {key!r} are missing or unreadable in {cache.dir}: another "
                           "rank may have failed, or that folder is not on a disk all ranks see (the feature "
                           "cache, paths.cache=; with cache.enabled=false the run folder, hydra.run.dir=, which "
                           "every rank must be given)")
    return shard


def frames_entry(videos: VideoFeatures, frame_cache: Any, settings, dist_ctx) -> dict:
    """``record["cache"]["frames"]``: where the frame cache is, and how many of the encoded videos it
    served (over every rank) against how many were decoded; the worker count this rank used."""
    served, encoded = videos.frames_from_cache, videos.decoded
    if dist_ctx.enabled:
        shares = D.all_gather_objects((served, encoded), dist_ctx)
        served, encoded = sum(s for s, _ in shares), sum(e for _, e in shares)
    entry = {"enabled": frame_cache is not None and frame_cache.enabled, "served": served,
             "decoded": encoded - served, "decoder": settings.decoder,
             "num_workers": videos.num_workers}
    if frame_cache is not None:
        entry.update(dir=str(frame_cache.root), max_gb=settings.frames_max_gb)
        if frame_cache.stats.problems:
            entry["problems"] = list(frame_cache.stats.problems)
    return entry
