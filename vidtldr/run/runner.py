"""One evaluation run, end to end: resolve the config, make sure the inputs exist (generating the
tiny dataset when asked), build the model and reducer, run the task through the feature cache,
count GFLOPs, and write ``record.json`` into the run directory.

``run(cfg, run_dir)`` takes an already composed config, so tests can call it without Hydra's
command line; :mod:`vidtldr.eval` is the thin Hydra entry point around it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from vidtldr import jsonio
from vidtldr.run import adjust
from vidtldr.run import distributed as D
from vidtldr.config_values import check_settings
from vidtldr.config_utils import check_directory_path, plain as _plain
from vidtldr.errors import (ConfigError, DiskFullError, RunInterrupted, VidtldrError, is_disk_full,
                            one_line)
from vidtldr.run.record import (base_record, now_iso, protect_finished, write_record,
                                write_unless_complete)
from vidtldr.run.assemble import Assembly, assemble, ensure_tiny_data, load_tokenizer_for
from vidtldr.run.inputs import check_inputs
from vidtldr.run.runspec import RunSpec, resolve
from vidtldr.run.settings import RunSettings, resolve_settings

log = logging.getLogger(__name__)

# Run-scoped feature shards when the cache is off but the feature store or several ranks need them.
SCRATCH = ".scratch_features"


# ----------------------------------------------------------------------------- inputs


def gflops_entry(arch_cfg, spec: RunSpec, reducer, token_counts: list,
                 video_token_counts: Optional[dict] = None) -> Optional[dict]:
    """Vision-encoder GFLOPs (paper convention and true FLOPs) from the FLOPs module. Where a
    content-adaptive reducer gave the videos different token counts (``video_token_counts``), the
    GFLOPs are counted per video from what each ran and ``paper``/``true`` are their mean."""
    from vidtldr.cost.vision import reducer_cost, vision_dims

    dims = vision_dims(arch_cfg)
    if video_token_counts:
        return _per_video_gflops(dims, spec, reducer, video_token_counts)
    cost = reducer_cost(dims, spec.num_frames, reducer)
    base = reducer_cost(dims, spec.num_frames, None)
    entry = {"paper": round(cost.gflops_paper, 3), "true": round(cost.gflops_true, 3),
             "base_paper": round(base.gflops_paper, 3), "base_true": round(base.gflops_true, 3),
             "reduction_pct": round(100 * (1 - cost.paper / base.paper), 2),
             "convention": ("vision encoder only, batch 1, one multiply-add = 1 flop (fvcore, as the paper)"
                            if dims.norms_in_paper else "vision encoder only, batch 1, multiply-adds of the "
                            "convolution, linear layers and matmuls (the family's published convention)"),
             "tokens_per_layer_counted": list(cost.tokens_per_layer)}
    if spec.views is not None:  # the counts above are per view; a video costs them times its views
        entry.update(per="view", views=spec.views["views"],
                     paper_per_video=round(cost.gflops_paper * spec.views["views"], 3),
                     true_per_video=round(cost.gflops_true * spec.views["views"], 3))
    if token_counts and list(token_counts) != list(cost.tokens_per_layer):
        # The count assumes the schedule's token counts; say so if the run saw others.
        entry["warning"] = f"run token counts {token_counts} differ from the counted {cost.tokens_per_layer}"
    return entry


def _per_video_gflops(dims, spec: RunSpec, reducer, by_video: dict) -> dict:
    """GFLOPs of each video at its own token counts, and their mean / min / max."""
    from vidtldr.cost.vision import reducer_cost, vision_cost

    base = reducer_cost(dims, spec.num_frames, None)
    cache: dict = {}
    for counts in by_video.values():
        if tuple(counts) not in cache:
            cost = vision_cost(dims, spec.num_frames, token_counts=counts, reducer=reducer)
            cache[tuple(counts)] = (cost.paper, cost.true)
    paper = {key: cache[tuple(c)][0] / 1e9 for key, c in by_video.items()}
    true = [cache[tuple(c)][1] / 1e9 for c in by_video.values()]
    mean_paper = sum(paper.values()) / len(paper)
    return {"paper": round(mean_paper, 3), "true": round(sum(true) / len(true), 3),
            "base_paper": round(base.gflops_paper, 3), "base_true": round(base.gflops_true, 3),
            "reduction_pct": round(100 * (1 - mean_paper * 1e9 / base.paper), 2),
            "convention": "vision encoder only, batch 1, one multiply-add = 1 flop (fvcore, as the paper); "
                          "content-adaptive token counts: mean over the videos of each video's own count",
            "per_video": {"paper": {key: round(g, 4) for key, g in paper.items()},
                          "min_paper": round(min(paper.values()), 3), "max_paper": round(max(paper.values()), 3),
                          "videos": len(paper)}}


# ----------------------------------------------------------------------------- run


@contextlib.contextmanager
def signals_interrupt():
    """SIGTERM (a scheduler's time limit, ``kill``) ends a run exactly like Ctrl-C: a
    :class:`RunInterrupted` raised where the run is, so the record says ``interrupted`` and the
    finished cache shards stay. Only the main thread can own signal handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise RunInterrupted(signal.Signals(signum).name, signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def _ignore_signals() -> None:
    # While the final record is written: a second signal must not leave the first one unrecorded.
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def check_dirs(settings: RunSettings, run_dir: Path) -> None:
    """paths.cache, cache.dir and the run directory must be directories (or not exist yet)."""
    for key, value in (("paths.cache", settings.cache_root), ("cache.dir", settings.cache_dir),
                       ("run directory", run_dir)):
        check_directory_path(key, value, writable=True)


def run(cfg: DictConfig, run_dir: str | Path, *, progress: bool = True,
        dist_ctx: Optional[D.DistContext] = None, overrides: Optional[list[str]] = None) -> dict:
    """Run one evaluation and write ``run_dir/record.json``; returns the record.

    A run directory that holds a complete record is refused (``eval.overwrite=true`` moves it
    aside first). SIGTERM and SIGINT end the run as ``interrupted``, any error as ``failed`` with
    its one-line reason; a failed or interrupted run never replaces a complete record.

    With a data-parallel ``dist_ctx`` (:func:`vidtldr.run.distributed.init`) every rank calls this with
    the same ``run_dir``; the ranks share the work and only rank 0 writes anything into ``run_dir``.
    ``overrides``: the command-line overrides (default: Hydra's), to honour ``paths.data=`` /
    ``model.checkpoint=`` given with a model whose defaults would ignore them (:mod:`vidtldr.run.adjust`).
    """
    ctx = dist_ctx or D.SINGLE
    run_dir = Path(run_dir)
    check_settings(cfg)  # eval.overwrite=no must not reach protect_finished as "yes"
    settings = resolve_settings(cfg)  # how the run executes: resolved before anything is written
    check_dirs(settings, run_dir)
    explicit = adjust.explicit_keys(overrides)
    adjusted = adjust.implied_by_explicit(cfg, explicit)  # contradictions refused before anything is written
    aside = protect_finished(run_dir, overwrite=settings.overwrite, move=ctx.is_main)
    if aside is not None:
        log.warning("eval.overwrite=true: the complete record of %s was moved aside to %s", run_dir, aside)
    scratch = run_dir / SCRATCH
    writes = ctx.is_main
    t0 = time.perf_counter()
    record = base_record()
    record.update(status="running", run_dir=str(run_dir), config=_plain(cfg), pid=os.getpid(), adjusted=adjusted)
    if aside is not None:
        record["replaced"] = str(aside)
    with signals_interrupt():
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            if writes:
                write_record(run_dir, record)
            _execute(cfg, run_dir, record, progress, t0, ctx=ctx, scratch=scratch, explicit=explicit)
            D.barrier(ctx)  # nobody reads the scratch features any more
        except BaseException as exc:
            _ignore_signals()
            if is_disk_full(exc) and not isinstance(exc, DiskFullError):
                exc = DiskFullError(getattr(exc, "filename", None) or run_dir)
            if writes:
                _record_failure(run_dir, record, exc)
            if isinstance(exc, DiskFullError):
                raise exc from None
            raise
        finally:
            if writes and scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
    return record


def _record_failure(run_dir: Path, record: dict, exc: BaseException) -> None:
    record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    record["error"] = str(exc) if isinstance(exc, RunInterrupted) else one_line(exc)
    if "\n" in str(exc).strip():
        record["error_detail"] = str(exc)
    record["finished"] = now_iso()
    try:
        write_unless_complete(run_dir, record)
    except (OSError, VidtldrError) as problem:  # e.g. the disk is still full
        log.error("could not record status %s in %s: %s", record["status"], run_dir, problem)


# ----------------------------------------------------------------------------- the steps of a run


def _execute(cfg: DictConfig, run_dir: Path, record: dict, progress: bool, t0: float, *, ctx: D.DistContext,
             scratch: Path, explicit: set[str]) -> None:
    from vidtldr.data.annotations import load_split
    from vidtldr.models.precision import autocast_context, resolve_device, use_deterministic_kernels

    timings: dict[str, float] = {}
    spec = _resolve_spec(cfg, ctx, record, timings, explicit)
    # Below this line the run reads the resolved spec only (cfg is recorded, never consulted again).
    settings = spec.settings
    resolve_device(spec.device)  # a clear error when CUDA is asked for but absent
    if settings.deterministic:
        use_deterministic_kernels()
    autocast = autocast_context(spec.device, spec.precision)  # validates the precision now
    dataset_cfg = spec.dataset_config
    arch_cfg = spec.arch_config()
    tokenizer, tokenizer_name = _checked_inputs(spec, dataset_cfg, arch_cfg)
    _describe(record, spec)
    record["adjusted"].update(spec.adjusted)
    adjust.report(record["adjusted"])

    start = time.perf_counter()
    split = load_split(dataset_cfg, spec.data_root)
    _note_repeats(record, split)
    pieces = assemble(spec, arch_cfg)  # model, reducer, checksums, feature caches: vidtldr/run/assemble.py
    timings["setup_s"] = time.perf_counter() - start
    _provenance(record, pieces, tokenizer_name)
    model, reducer, video_cache, text_cache = pieces.model, pieces.reducer, pieces.video_cache, pieces.text_cache
    with autocast:
        result = _run_task(model, tokenizer, reducer, split, spec, video_cache, text_cache, arch_cfg, settings,
                           progress, ctx, scratch)
    if settings.save_predictions and ctx.is_main:
        from vidtldr.files import atomic_write_text
        from vidtldr.tasks.base import get_task

        for name, content in get_task(spec.task).outputs(result).items():  # QA: predictions.json
            atomic_write_text(run_dir / name, jsonio.dumps(content, indent=0))
    record["cache"] = result.cache or {"video": video_cache.stats()}
    if "feature_store" in result.extra:
        record["feature_store"] = result.extra["feature_store"]
    record["cost"] = result.extra.get("cost")  # whole-evaluation GFLOPs, ITM engine, seconds by stage
    timings.update(result.timings)
    _finish(record, spec, arch_cfg, reducer, result, timings, t0)
    if settings.wandb["enabled"] and ctx.is_main:
        from vidtldr.run.wandb_logger import log_to_wandb

        record["wandb"] = log_to_wandb(settings.wandb, record, run_dir)
    if ctx.is_main:
        write_record(run_dir, record)


def _note_repeats(record: dict, split) -> None:
    """An annotation listing one video (QA: one question id) in several records is scored as several
    items, as the official reader does: never silently (a warning, and ``record["repeated"]``)."""
    from vidtldr.data.annotations import describe_repeats, repeated_items

    what, repeated = repeated_items(split)
    if repeated:
        record["repeated"] = {"what": what, "extra": sum(n - 1 for n in repeated.values()), "items": repeated}
        log.warning("annotation: %s", describe_repeats(what, repeated))


def _resolve_spec(cfg: DictConfig, ctx: D.DistContext, record: dict, timings: dict, explicit: set[str]) -> RunSpec:
    """The run's settings (resolved before anything is generated or loaded; ``explicit``: the keys
    given on the command line), with the tiny dataset generated when the run reads it."""
    spec = resolve(cfg, explicit=explicit)
    if spec.data_source == "tiny":
        start = time.perf_counter()
        if ctx.is_main:  # generated once; the other ranks then find it complete
            ensure_tiny_data(spec.settings.cache_root, spec.dataset)
        D.barrier(ctx)
        data_root = ensure_tiny_data(spec.settings.cache_root, spec.dataset)
        timings["tiny_data_s"] = time.perf_counter() - start
        spec = dataclasses.replace(spec, data_root=str(data_root))
    if ctx.enabled:
        spec = dataclasses.replace(spec, device=D.device_for(ctx, spec.device))
        record["distributed"] = ctx.describe()
    return spec


def _checked_inputs(spec: RunSpec, dataset_cfg: dict, arch_cfg):
    """(tokenizer, its configured name) once every input file of the run is known to exist."""
    from vidtldr.tasks.base import get_task

    if not get_task(spec.task).uses_text:  # action recognition: no texts, no tokenizer
        check_inputs(spec, dataset_cfg, None)
        return None, None
    try:
        tokenizer, tokenizer_name, vocab_file = load_tokenizer_for(spec, arch_cfg)
        tokenizer_problem = None
    except ConfigError as exc:
        tokenizer, tokenizer_name, tokenizer_problem = None, None, str(exc).split(". ")[0]
    check_inputs(spec, dataset_cfg, tokenizer_problem)
    if tokenizer is not None:
        from vidtldr.models.tokenizer import check_vocab_size

        check_vocab_size(tokenizer, arch_cfg.text.vocab_size, vocab_file)
    return tokenizer, tokenizer_name


def _describe(record: dict, spec: RunSpec) -> None:
    record["run"] = {"task": spec.task, "dataset": spec.dataset, "dataset_base": spec.dataset_base,
                     "setting": spec.setting, "paper_row": spec.paper_row, "model": spec.model,
                     "backbone": spec.backbone, "merge": spec.merge, "schedule": list(spec.schedule),
                     **spec.schedule_described(), "data_source": spec.data_source}
    record["resolved"] = spec.to_dict()
    if spec.init == "random":
        record["note"] = (f"model={spec.model} has random weights generated deterministically from seed "
                          f"{spec.seed}; no checkpoint is used and the numbers only show the pipeline works.")
        log.info(record["note"])


def _provenance(record: dict, pieces: Assembly, tokenizer_name) -> None:
    """The checksums of the run's input files (also part of the cache keys), the tokenizer, the load report."""
    record["checksums"] = pieces.checksums
    record["tokenizer"] = tokenizer_name
    if pieces.load_report is not None:
        record["checkpoint_load"] = {k: v for k, v in vars(pieces.load_report).items()
                                     if isinstance(v, (int, str, float, bool))}


def _run_task(model, tokenizer, reducer, split, spec: RunSpec, video_cache, text_cache, arch_cfg, settings: RunSettings,
              progress: bool, ctx: D.DistContext, scratch: Path):
    from vidtldr.run.task_run import TaskJob, run_task
    from vidtldr.tasks.base import get_task

    job = TaskJob(task=get_task(spec.task, f"dataset {spec.dataset}: task"), model=model, tokenizer=tokenizer,
                  reducer=reducer, split=split, spec=spec, video_cache=video_cache, text_cache=text_cache,
                  img_size=arch_cfg.vision.img_size, settings=settings, progress=progress, dist_ctx=ctx,
                  scratch=scratch)
    return run_task(job)


def _finish(record: dict, spec: RunSpec, arch_cfg, reducer, result, timings: dict, t0: float) -> None:
    start = time.perf_counter()
    record["gflops"] = gflops_entry(arch_cfg, spec, reducer, result.token_counts,
                                    result.video_token_counts) if spec.settings.flops else None
    timings["flops_s"] = time.perf_counter() - start
    record["counts"] = result.counts
    record["skipped_videos"] = result.skipped
    from vidtldr.tasks.base import get_task

    limited = spec.limit is not None and get_task(spec.task).is_limited(result.counts)
    record["partial"] = bool(limited or result.skipped)
    record["partial_reason"] = ("data.limit" if limited else None) or ("skipped videos" if result.skipped else None)
    record["token_counts"] = result.token_counts
    record["metrics"] = result.metrics
    timings["total_s"] = time.perf_counter() - t0
    record["timings"] = {k: round(v, 3) for k, v in timings.items()}
    record["status"] = "complete"
    record["finished"] = now_iso()
