"""From a composed Hydra config to the concrete settings of one run (a :class:`RunSpec`).

Everything that is decided by *combining* config groups lives here, in one pure function, so it is
testable without running anything: which checkpoint file a (backbone, dataset) pair needs, whether
the dataset is a zero-shot variant, which frame count / text length / k_test apply once the model's
caps are taken into account, and which per-block schedule ``merge.r`` resolves to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from vidtldr.config_utils import plain as _plain
from vidtldr.errors import ConfigError, MissingFilesError

ZOO_URL = "https://pjlab-gvm-data.oss-cn-shanghai.aliyuncs.com/umt/multi_modality/"
DATA_HELP = ("annotations: the VINDLU/Singularity JSON files (UMT's DATASET.md) under "
             "<paths.data>/anno_downstream/; videos: the original datasets under <paths.data>/videos/<video_dir>/ "
             "(see README, 'Bringing datasets')")


def dataset_setting(name: str) -> str:
    """``zeroshot`` for the zero-shot variants (configs named ``<dataset>_zs...``), else ``finetuned``."""
    return "zeroshot" if "_zs" in name else "finetuned"


def dataset_base(name: str) -> str:
    """The dataset a config stands for in the paper's tables: ``msrvtt_zs`` -> ``msrvtt``. Configs that mirror a quirk (``*_official``) or another split
    (``didemo_val``) keep their own name so they never fill a paper row."""
    if name.endswith("_official") or name.endswith("_val"):
        return name
    return name.split("_zs")[0]


def checkpoint_key(name: str) -> str:
    """Key into ``model.checkpoints``: the pre-trained file for zero-shot, else the dataset."""
    if dataset_setting(name) == "zeroshot":
        return "pretrained"
    return name[: -len("_val")] if name.endswith("_val") else name


@dataclass
class RunSpec:
    """The resolved settings of one run (everything a record needs to say what ran)."""

    task: str                      # retrieval | qa
    dataset: str                   # config name, e.g. msrvtt_zs
    dataset_base: str              # table row name, e.g. msrvtt
    setting: str                   # finetuned | zeroshot
    model: str                     # umt_b | umt_l | tiny
    backbone: str
    arch: str                      # architecture json name
    init: str                      # checkpoint | random
    seed: int
    checkpoint: Optional[str]      # path, or None for random init
    checkpoint_kind: Optional[str]  # finetuned | pretrained
    checkpoint_from_zoo: bool      # the file comes from model.checkpoints (a UMT model-zoo name), not model.checkpoint
    data_source: str               # real | tiny
    data_root: str
    num_frames: int
    k_test: int
    max_txt_l: Optional[int]
    max_q_len: Optional[int]
    max_a_len: Optional[int]
    trimmed30: bool
    merge: str
    merge_args: dict = field(default_factory=dict)
    schedule_spec: Any = None      # merge.r as given
    schedule: list = field(default_factory=list)  # resolved, one entry per block
    limit: Optional[int] = None
    device: str = "cpu"
    precision: str = "fp32"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _merge_r(cfg: DictConfig) -> Any:
    try:
        r = cfg.merge.r
    except MissingMandatoryValue:
        raise ConfigError(f"merge={cfg.merge.name} has no default schedule: give one, e.g. merge.r=100 "
                          "(every block) or merge.r=[600,200,100] (first blocks)") from None
    return _plain(r)


def resolve_schedule(cfg: DictConfig, depth: int, dataset: str, setting: str) -> tuple[Any, list]:
    """(merge.r as given, per-block list of ``depth`` entries)."""
    from vidtldr.reduce.schedule import parse_schedule

    name = cfg.merge.name
    r = _merge_r(cfg)
    if name == "none":
        return r, parse_schedule(None, depth)
    own = cfg.model.get("published_schedule")
    if r == "published" and own is not None:
        if name != "vidtldr":
            raise ConfigError(f"merge={name} merge.r=published: model={cfg.model.name} only has a vid-TLDR "
                              "schedule; pass merge.r explicitly")
        return r, parse_schedule(list(_plain(own)), depth)
    if r == "published" and setting == "zeroshot":
        raise ConfigError(f"merge.r=published: no schedule was published for zero-shot runs "
                          f"(dataset={dataset}); pass merge.r=[...] explicitly (see README)")
    # The published schedules are per dataset, whatever the split (didemo_val uses didemo's).
    return r, parse_schedule(r, depth, dataset=checkpoint_key(dataset), backbone=cfg.model.backbone, reducer=name)


def _cap(value: Optional[int], cap: Optional[int]) -> Optional[int]:
    if value is None or cap is None:
        return value
    return min(int(value), int(cap))


def _count(key: str, value: Any, minimum: int) -> int:
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


def check_numbers(cfg: DictConfig) -> None:
    """The numeric settings given on the command line: batch sizes, worker count, and where set,
    data.limit, eval.k_test and eval.num_frames (cheap, so a run checks them before anything else)."""
    for key, minimum in (("eval.itm_batch", 1), ("eval.text_batch", 1), ("data.batch_size", 1),
                         ("data.num_workers", 0)):
        section, name = key.split(".")
        _count(key, cfg[section].get(name), minimum)
    for key in ("data.limit", "eval.k_test", "eval.num_frames"):
        section, name = key.split(".")
        if cfg[section].get(name) is not None:
            _count(key, cfg[section][name], 1)


def resolve(cfg: DictConfig, *, data_root: Optional[str] = None) -> RunSpec:
    """Resolve a composed config. ``data_root`` overrides where the data is (the tiny dataset)."""
    from vidtldr.models.config import load_architecture

    ds, model = cfg.dataset, cfg.model
    name = str(ds.name)
    task = str(ds.task)
    setting = dataset_setting(name)
    caps = _plain(model.get("caps")) or {}
    ev = cfg.eval
    check_numbers(cfg)
    num_frames = (_count("eval.num_frames", ev.num_frames, 1) if ev.get("num_frames") is not None
                  else _count(f"dataset {name}: num_frames", ds.num_frames, 1))
    num_frames = _cap(num_frames, caps.get("num_frames"))
    k_test = (_count("eval.k_test", ev.k_test, 1) if ev.get("k_test") is not None
              else _count(f"dataset {name}: k_test", ds.k_test, 1))
    k_test = _cap(k_test, caps.get("k_test"))
    arch_cfg = load_architecture(str(model.arch), task=task, num_frames=num_frames)

    checkpoint = kind = None
    from_zoo = False
    if model.init == "checkpoint":
        kind = "pretrained" if setting == "zeroshot" else "finetuned"
        if model.get("checkpoint"):
            checkpoint = str(model.checkpoint)
        else:
            files = _plain(model.get("checkpoints")) or {}
            key = checkpoint_key(name)
            if key not in files:
                raise ConfigError(f"model={model.name} has no checkpoint for dataset={name} "
                                  f"(model.checkpoints has {sorted(files)}); set model.checkpoint=/path/to/file.pth")
            checkpoint = str(Path(cfg.paths.checkpoints) / files[key])
            from_zoo = True
    elif model.init != "random":
        raise ConfigError(f"model.init must be 'checkpoint' or 'random', got {model.init!r}")

    schedule_spec, schedule = resolve_schedule(cfg, arch_cfg.vision.depth, name, setting)
    merge_args = {k: _plain(v) for k, v in cfg.merge.items() if k not in ("name", "r")}
    limit = cfg.data.get("limit")
    return RunSpec(
        task=task, dataset=name, dataset_base=dataset_base(name), setting=setting, model=str(model.name),
        backbone=str(model.backbone), arch=str(model.arch), init=str(model.init), seed=int(model.get("seed", 0)),
        checkpoint=checkpoint, checkpoint_kind=kind, checkpoint_from_zoo=from_zoo, data_source=str(cfg.data.source),
        data_root=str(data_root if data_root is not None else cfg.paths.data), num_frames=num_frames,
        k_test=k_test, max_txt_l=text_length(ds, str(model.backbone)), max_q_len=_opt_int(ds.get("max_q_len")),
        max_a_len=_opt_int(ds.get("max_a_len")),
        trimmed30=bool(ds.get("trimmed30", False)) and task != "qa",
        merge=str(cfg.merge.name), merge_args=merge_args, schedule_spec=schedule_spec, schedule=schedule,
        limit=int(limit) if limit is not None else None, device=str(cfg.device),
        precision=str(cfg.get("precision", "fp32")),
    )


def text_length(ds: Any, backbone: str) -> Optional[int]:
    """The dataset's ``max_txt_l``, or its ``max_txt_l_by_backbone[backbone]`` where the official
    configs use another length for that backbone (zero-shot LSMDC: 64 for B/16, 96 for L/16)."""
    by_backbone = _plain(ds.get("max_txt_l_by_backbone")) or {}
    if not isinstance(by_backbone, dict):
        raise ConfigError(f"dataset {ds.get('name')}: max_txt_l_by_backbone must map a backbone to a length, "
                          f"got {by_backbone!r}")
    if backbone in by_backbone:
        return _count(f"dataset {ds.get('name')}: max_txt_l_by_backbone.{backbone}", by_backbone[backbone], 1)
    return _opt_int(ds.get("max_txt_l"))


def _opt_int(value: Any) -> Optional[int]:
    return None if value is None else int(value)


def missing_inputs(spec: RunSpec, dataset_cfg: Any, tokenizer_problem: Optional[str] = None
                   ) -> tuple[list[str], dict[str, str]]:
    """(one line per missing input: checkpoint, tokenizer vocabulary, annotation, answer list,
    video folder; where to get each kind of input that is missing)."""
    from vidtldr.data.annotations import annotation_path, answer_list_path, video_root

    missing: list[str] = []
    help_lines: dict[str, str] = {}
    if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
        missing.append(f"checkpoint   {spec.checkpoint}")
        if spec.checkpoint_from_zoo:
            help_lines["checkpoint"] = (f"checkpoint: {ZOO_URL}{Path(spec.checkpoint).name} (UMT model zoo, spec §5.5); "
                                        "put it in paths.checkpoints (env VIDTLDR_CHECKPOINTS) or set model.checkpoint=/path")
        else:  # a file the user named: the zoo may not have it under that name, so no URL is guessed
            help_lines["checkpoint"] = ("checkpoint: model.checkpoint names a file that does not exist; "
                                        "check the path (or leave model.checkpoint unset to use the model-zoo file)")
    if tokenizer_problem:
        missing.append(f"tokenizer    {tokenizer_problem}")
        help_lines["tokenizer"] = ("tokenizer: the vocab.txt of bert-base-uncased (UMT-B) / bert-large-uncased (UMT-L) "
                                   "from Hugging Face; set model.tokenizer=/path/to/vocab.txt")
    ann = annotation_path(dataset_cfg, spec.data_root)
    if not ann.is_file():
        missing.append(f"annotation   {ann}")
    ans = answer_list_path(dataset_cfg, spec.data_root)
    if ans is not None and not ans.is_file():
        missing.append(f"answer list  {ans}")
    vroot = video_root(dataset_cfg, spec.data_root)
    if not vroot.is_dir():
        missing.append(f"video folder {vroot}/")
    if len(missing) > len(help_lines):
        help_lines["data"] = DATA_HELP
    return missing, help_lines


def format_missing(missing: list[str], help_lines: dict[str, str], what: str) -> str:
    return (f"{len(missing)} input(s) of {what} are missing:\n  " + "\n  ".join(missing)
            + "\nwhere to get them:\n  " + "\n  ".join(help_lines.values()))


def check_inputs(spec: RunSpec, dataset_cfg: Any, tokenizer_problem: Optional[str] = None) -> None:
    """Raise one :class:`MissingFilesError` listing every missing input of this run and where to
    get each kind."""
    missing, help_lines = missing_inputs(spec, dataset_cfg, tokenizer_problem)
    if missing:
        raise MissingFilesError(format_missing(missing, help_lines, f"dataset={spec.dataset} model={spec.model}"))
