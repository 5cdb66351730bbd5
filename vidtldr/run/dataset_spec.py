"""What a dataset config resolves to, for the resolver (:mod:`vidtldr.run.runspec`): the keys that
say what it stands for (setting, table row, checkpoint key), its registered task checked against it,
its frame count / k_test / text lengths with ``eval.*`` overrides and the model's caps, and the test
views of a task that declares them. Pure functions of the composed config; a mistake is one
ConfigError naming the dataset and the key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import DictConfig

from vidtldr.config_utils import plain as _plain
from vidtldr.errors import ConfigError


SETTINGS = ("finetuned", "zeroshot")


@dataclass(frozen=True)
class DatasetSettings:
    """The keys of a dataset config that say what it stands for (never read from its name)."""

    setting: str          # finetuned | zeroshot
    base: str             # the dataset it stands for in the tables
    paper_row: bool       # whether its records can fill a row of a paper table
    checkpoint_key: str   # model.checkpoints entry (zero-shot: pretrained); key of the published schedules
    schedule_source: str  # whose published UMT schedule merge.r=umt_fractions takes (default: checkpoint_key)


def dataset_settings(ds: Any) -> DatasetSettings:
    """A dataset config's ``setting``, ``base``, ``paper_row``, ``checkpoint_key`` and
    ``schedule_source`` (optional: the checkpoint_key); a ConfigError
    names the dataset and the key that is missing or wrong. A copy of ``msrvtt_zs.yaml`` under any
    name is zero-shot: these keys say so, not the name."""
    where = f"dataset {ds.get('name')}"
    missing = [k for k in ("setting", "base", "paper_row", "checkpoint_key") if ds.get(k) is None]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)} (e.g. setting: finetuned, base: msrvtt, "
                          "paper_row: true, checkpoint_key: msrvtt; see docs/architecture.md, 'A new dataset')")
    setting, paper_row = ds.get("setting"), ds.get("paper_row")
    if setting not in SETTINGS:
        raise ConfigError(f"{where}: setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    if not isinstance(paper_row, bool):
        raise ConfigError(f"{where}: paper_row must be true or false, got {paper_row!r}")
    return DatasetSettings(setting=str(setting), base=str(ds.get("base")), paper_row=paper_row,
                           checkpoint_key=str(ds.get("checkpoint_key")),
                           schedule_source=str(ds.get("schedule_source") or ds.get("checkpoint_key")))


def cap_value(value: Optional[int], cap: Optional[int]) -> Optional[int]:
    """``value`` lowered to the model's ``cap`` (either may be None: nothing to cap)."""
    if value is None or cap is None:
        return value
    return min(int(value), int(cap))


def count_value(key: str, value: Any, minimum: int) -> int:
    """``value`` of config key ``key`` as an int >= ``minimum``, else a ConfigError naming both
    (a zero k_test would "complete" with meaningless ITM metrics; zero batches crash deep inside)."""
    if isinstance(value, bool):
        value = str(value)
    try:
        number = int(value)
        exact = float(value) == number
    except (TypeError, ValueError):
        exact = False
    if not exact:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    if number < minimum:
        raise ConfigError(f"{key} must be >= {minimum}, got {number}")
    return number


def setting_value(cfg: DictConfig, key: str, dataset_value: Any, cap: Optional[int]) -> int:
    """``eval.<key>`` if set, else the dataset's value; then capped by the model."""
    given = cfg.get("eval", {}).get(key)
    value = (count_value(f"eval.{key}", given, 1) if given is not None
             else count_value(f"dataset {cfg.dataset.name}: {key}", dataset_value, 1))
    return cap_value(value, cap)


def refuse_text_key(cfg: DictConfig, task: str) -> None:
    if cfg.get("eval", {}).get("k_test") is not None:
        raise ConfigError(f"eval.k_test={cfg.eval.k_test}: task {task!r} ranks no texts or answers; drop eval.k_test")
    return None


def resolve_views(cfg: DictConfig, ds: Any, has_views: bool) -> Optional[dict]:
    """The test views (``eval.clips`` / ``eval.crops`` if set, else the dataset's ``test_clips`` /
    ``test_crops``; sampling and frame interval from the dataset) of a task that declares views;
    ``eval.clips`` / ``eval.crops`` are refused for any other task."""
    from vidtldr.data.views import SAMPLINGS

    given = {k: cfg.get("eval", {}).get(k) for k in ("clips", "crops")}
    if not has_views:
        for key, value in given.items():
            if value is not None:
                raise ConfigError(f"eval.{key}={value}: dataset {ds.get('name')} (task {ds.get('task')}) has no "
                                  "test views; eval.clips / eval.crops are for action recognition")
        return None
    sampling = str(ds.get("sampling"))
    if sampling not in SAMPLINGS:
        raise ConfigError(f"dataset {ds.get('name')}: sampling {sampling!r}; expected one of {', '.join(SAMPLINGS)}")
    interval = ds.get("frame_interval")
    if sampling == "interval":
        interval = count_value(f"dataset {ds.get('name')}: frame_interval", interval, 1)
    clips = setting_value(cfg, "clips", ds.get("test_clips"), None)
    crops = setting_value(cfg, "crops", ds.get("test_crops"), None)
    return {"sampling": sampling, "frame_interval": interval if sampling == "interval" else None,
            "clips": clips, "crops": crops, "views": clips * crops}


def resolve_task(ds: Any):
    """The registered task of a dataset config (vidtldr/tasks/), checked against the dataset: its
    reader must be one the task scores, and ``trimmed30: true`` is refused for a task that reads
    whole videos (the official QA evaluation never trims; a silent ignore would hide the mistake)."""
    from vidtldr.tasks.base import get_task

    name = ds.get("name")
    task = get_task(str(ds.task), f"dataset {name}: task")
    reader = str(ds.get("reader"))
    if reader not in task.readers:
        raise ConfigError(f"dataset {name}: reader {reader!r} does not fit task {task.name!r} "
                          f"(it reads {', '.join(task.readers)})")
    if bool(ds.get("trimmed30", False)) and not task.trims_videos:
        raise ConfigError(f"dataset {name}: trimmed30: true, but task {task.name!r} reads whole videos "
                          "(as the official evaluation does); set trimmed30: false")
    return task


def text_length(ds: Any, backbone: str) -> Optional[int]:
    """The dataset's ``max_txt_l``, or its ``max_txt_l_by_backbone[backbone]`` where the official
    configs use another length for that backbone (zero-shot LSMDC: 64 for B/16, 96 for L/16)."""
    by_backbone = _plain(ds.get("max_txt_l_by_backbone")) or {}
    if not isinstance(by_backbone, dict):
        raise ConfigError(f"dataset {ds.get('name')}: max_txt_l_by_backbone must map a backbone to a length, "
                          f"got {by_backbone!r}")
    if backbone in by_backbone:
        return count_value(f"dataset {ds.get('name')}: max_txt_l_by_backbone.{backbone}", by_backbone[backbone], 1)
    return opt_int(ds.get("max_txt_l"))


def opt_int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


__all__ = ["SETTINGS", "DatasetSettings", "dataset_settings", "cap_value", "count_value", "setting_value",
           "refuse_text_key", "resolve_views", "resolve_task", "text_length", "opt_int"]
