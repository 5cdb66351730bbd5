"""How the runner runs a task: the assembled pieces of one run (a :class:`TaskJob`) handed to the
task's runner, found by the task's name.

Two kinds of runners, one lookup (:func:`run_task`):

* a runner in ``vidtldr/run/`` registered with ``@register_runner("<task>")``, for a task that needs
  the run layer's machinery beyond the feature cache (retrieval: the memory-mapped token store and
  the distributed ITM; QA: the grouped question encoding over the shared shards);
* otherwise the task's own :meth:`vidtldr.tasks.base.Task.run`, which reads its video features
  through :meth:`TaskJob.cached_videos` (the feature cache, decoding workers, skipped videos and
  data-parallel ranks handled here), so that a new task is one module of ``vidtldr/tasks/``.

The task layer never imports this module (tasks sit below run); the job is passed to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from vidtldr.run import distributed as D
from vidtldr.run.cache import FeatureCache
from vidtldr.run.settings import RunSettings
from vidtldr.tasks.base import Task, TaskResult

RUNNERS: dict[str, Callable[["TaskJob"], TaskResult]] = {}
# The run-layer modules that register runners (imported on lookup).
RUNNER_MODULES = ("vidtldr.run.runner_retrieval", "vidtldr.run.runner_qa")


@dataclass
class TaskJob:
    """Everything a task's run needs, assembled by the runner from the resolved spec."""

    task: Task
    model: Any
    tokenizer: Any
    reducer: Any
    split: Any
    spec: Any                          # vidtldr.run.runspec.RunSpec
    video_cache: FeatureCache
    text_cache: FeatureCache
    img_size: int
    settings: RunSettings              # how the run executes (vidtldr/run/settings.py)
    progress: bool = True
    dist_ctx: D.DistContext = D.SINGLE
    scratch: Optional[Path] = None

    def cached_videos(self, names: Sequence[str], paths: Sequence[str], encode: Callable,
                      make_dataset: Optional[Callable] = None):
        """Per-video features of the distinct videos ``names`` (files ``paths``, same order; repeats
        are encoded once): ``encode(frames [B,T,3,H,W]) -> [dict per video]`` runs on a cache miss, the
        results are cached by the video file's identity. Returns ``(features, skipped, decoded,
        from_cache)``: ``features.by_key[name]`` is the dict ``encode`` made for it (every rank's
        videos under torch.distributed), ``features.frames`` the record's ``cache.frames`` entry, ``skipped``
        the unreadable videos (``data.on_error=skip``). ``make_dataset(paths, skip_unreadable, frame_cache)``
        replaces the one-clip dataset (it is handed the run's frame cache)."""
        from vidtldr.run.frame_cache import frame_cache_from
        from vidtldr.run.runner_features import (all_ranks_outcome, exchange_cache, first_path_of, frames_entry,
                                                 load_shared_shard, unique_in_order, video_features)

        shared = exchange_cache(self.video_cache, self.scratch, needed=self.dist_ctx.enabled)
        order = unique_in_order(list(names))
        path_of = first_path_of(list(names), list(paths))
        shared.bind_sources(path_of)
        mine = D.shard(order, self.dist_ctx)
        settings = self.settings
        frame_cache = frame_cache_from(settings)
        videos = video_features([path_of[k] for k in mine], mine, encode, shared, num_frames=self.spec.num_frames,
                                trimmed30=self.spec.trimmed30, size=self.img_size,
                                batch_size=settings.batch_size, num_workers=settings.num_workers,
                                skip_unreadable=settings.skip_unreadable, progress=self.progress,
                                make_dataset=make_dataset, decoder=settings.decoder, frame_cache=frame_cache)
        skipped, decoded, cached = all_ranks_outcome(videos, self.dist_ctx)
        videos.frames = frames_entry(videos, frame_cache, settings, self.dist_ctx)
        if self.dist_ctx.enabled:
            bad = {s.path for s in skipped}
            for key in order:
                if key not in videos.by_key and path_of[key] not in bad:
                    videos.by_key[key] = load_shared_shard(shared, key)
        return videos, skipped, decoded, cached


def register_runner(task: str):
    """Function decorator: ``fn(job) -> TaskResult`` runs the task registered as ``task``."""

    def wrap(fn):
        RUNNERS[task] = fn
        return fn

    return wrap


def runner_for(task: Task) -> Callable[[TaskJob], TaskResult]:
    """The run-layer runner registered under the task's name, else the task's own ``run``."""
    import importlib

    for module in RUNNER_MODULES:
        importlib.import_module(module)
    return RUNNERS.get(task.name, task.run)


def run_task(job: TaskJob) -> TaskResult:
    return runner_for(job.task)(job)


__all__ = ["TaskJob", "register_runner", "runner_for", "run_task", "RUNNERS"]
