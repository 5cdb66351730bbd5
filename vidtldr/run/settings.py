"""How an evaluation executes, resolved once from the composed config into a typed :class:`RunSettings`.

These settings never change which model, data or schedule is evaluated (that is the
:class:`vidtldr.run.runspec.ModelSpec`); they say how the work is done and what is written: the
attention execution, deterministic kernels, batch sizes and workers, the ITM engine, the token store,
the feature cache, what happens to an unreadable video, the record's extras. Each is read here and
only here, from the key ``configs/config.yaml`` gives it (the default lives in the YAML, never in
code: a key deleted from the config is a one-line error, not a silent fallback), and checked
strictly (:mod:`vidtldr.config_values`). Below the resolver the runner and the tasks read these fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from vidtldr.config_utils import plain
from vidtldr.config_values import CHOICES, choice, flag, integer, lookup, number
from vidtldr.errors import ConfigError


@dataclass(frozen=True)
class RunSettings:
    """The execution settings of one evaluation (module docstring); ``key`` names in comments."""

    attention: str              # eval.attention: fused | materialized
    deterministic: bool         # deterministic: CUDA's deterministic kernels
    batch_size: int             # data.batch_size: videos per encoder forward
    num_workers: int            # data.num_workers: decoding workers (auto resolved to a count)
    decoder: str                # data.decoder: decord | pyav | torchcodec
    on_error: str               # data.on_error: raise | skip
    text_batch: int             # eval.text_batch: texts per text-encoder forward
    itm_engine: str             # eval.itm_engine: grouped | pairwise
    itm_batch: int              # eval.itm_batch: pairs per ITM forward (pairwise)
    itm_group_batch: int        # eval.itm_group_batch: texts per fusion forward against one video (grouped)
    token_store: str            # eval.token_store: disk | memory
    token_store_dtype: str      # eval.token_store_dtype: fp32 | fp16
    token_store_window_mb: float  # eval.token_store_window_mb
    flops: bool                 # eval.flops: the vision encoder's GFLOPs in the record
    overwrite: bool             # eval.overwrite: move a complete record aside instead of refusing
    save_predictions: bool      # save_predictions: the task's output files (QA: predictions.json)
    cache_enabled: bool         # cache.enabled
    cache_dir: str              # cache.dir: per-video feature shards
    cache_root: str             # paths.cache: tiny data, checksum memos
    frames_cache: bool          # cache.frames (and cache.frames_max_gb > 0): decoded frames shared by runs
    frames_dir: str             # cache.frames_dir
    frames_max_gb: float        # cache.frames_max_gb
    wandb: dict                 # logger.wandb (enabled, project, entity, mode, dir, tags)

    @property
    def skip_unreadable(self) -> bool:
        return self.on_error == "skip"

    @property
    def itm_chunk(self) -> int:
        """Texts per ITM forward of the chosen engine."""
        return self.itm_batch if self.itm_engine == "pairwise" else self.itm_group_batch

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_MISSING = object()
WANDB_KEYS = ("enabled", "project", "entity", "mode", "dir", "tags")


def required(cfg: Any, key: str) -> Any:
    value = lookup(cfg, key, _MISSING)
    if value is _MISSING:
        raise ConfigError(f"{key}: missing from the configuration (configs/config.yaml sets it; "
                          "was it removed with ~?)")
    return value


def run_device(cfg: Any) -> str:
    """The evaluation's device (key ``device``: ``cpu``, ``cuda`` or ``cuda:N``), read here only: the
    resolver's ``RunSpec.device``, the decoding workers' default and the data-parallel setup
    (``vidtldr.eval``, which needs it before the resolver runs) all take it from this function."""
    return str(required(cfg, "device"))


def resolve_settings(cfg: Any) -> RunSettings:
    """Every execution setting of the evaluation config ``cfg``, checked (one ConfigError per mistake)."""
    def options(key):
        return choice(key, required(cfg, key), CHOICES[key])

    def flag_of(key):
        return flag(key, required(cfg, key))

    def count(key, low):
        return integer(key, required(cfg, key), low=low)

    from vidtldr.data.workers import resolve_num_workers

    device_type = run_device(cfg).split(":")[0]
    max_gb = number("cache.frames_max_gb", required(cfg, "cache.frames_max_gb"), low=0)
    cache_root = str(required(cfg, "paths.cache"))
    wandb = {key: plain(required(cfg, f"logger.wandb.{key}")) for key in WANDB_KEYS}
    flag("logger.wandb.enabled", wandb["enabled"])
    options("logger.wandb.mode")
    return RunSettings(
        attention=options("eval.attention"), deterministic=flag_of("deterministic"),
        batch_size=count("data.batch_size", 1),
        num_workers=resolve_num_workers(required(cfg, "data.num_workers"), device_type),
        decoder=options("data.decoder"),
        on_error=options("data.on_error"), text_batch=count("eval.text_batch", 1),
        itm_engine=options("eval.itm_engine"), itm_batch=count("eval.itm_batch", 1),
        itm_group_batch=count("eval.itm_group_batch", 1), token_store=options("eval.token_store"),
        token_store_dtype=options("eval.token_store_dtype"),
        token_store_window_mb=number("eval.token_store_window_mb", required(cfg, "eval.token_store_window_mb"),
                                     low=0, low_open=True),
        flops=flag_of("eval.flops"), overwrite=flag_of("eval.overwrite"), save_predictions=flag_of("save_predictions"),
        cache_enabled=flag_of("cache.enabled"), cache_dir=str(required(cfg, "cache.dir")),
        cache_root=cache_root, frames_cache=flag_of("cache.frames") and max_gb > 0,
        frames_dir=str(required(cfg, "cache.frames_dir") or f"{cache_root}/frames"), frames_max_gb=max_gb,
        wandb=wandb)


__all__ = ["RunSettings", "resolve_settings", "required", "run_device"]
