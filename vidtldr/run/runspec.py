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
from typing import Any, Iterable, Optional

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from vidtldr.config_utils import plain as _plain
from vidtldr.errors import ConfigError
from vidtldr.run.dataset_spec import (DatasetSettings, count_value, dataset_settings, opt_int, refuse_text_key,
                                      resolve_task, resolve_views, setting_value, text_length)
from vidtldr.run.settings import RunSettings, required, resolve_settings, run_device


@dataclass(kw_only=True)
class ModelSpec:
    """What a config resolves to at the model level: no data paths, no checkpoint. Every tool that
    reads a run config (evaluation, flops, bench, visualize, ...) gets these from
    :func:`resolve_model`, so they agree on the frames, k_test, text lengths and schedule."""

    task: str                      # a registered task (vidtldr/tasks/): retrieval | qa | ...
    heads: str                     # the head set the task needs the model built with
    dataset: str                   # config name, e.g. msrvtt_zs
    dataset_base: str              # table row name, e.g. msrvtt (dataset key `base`)
    setting: str                   # finetuned | zeroshot (dataset key `setting`)
    paper_row: bool                # whether its records can fill a paper-table row (dataset key `paper_row`)
    checkpoint_key: str            # model.checkpoints entry, published-schedule key (dataset key `checkpoint_key`)
    model: str                     # umt_b | umt_l | tiny
    family: str                    # backbone family adapter (vidtldr/models/family.py), e.g. umt
    backbone: str
    arch: str                      # architecture json name
    num_frames: int
    k_test: Optional[int]          # None for a task that ranks no texts (action recognition)
    max_txt_l: Optional[int]
    max_q_len: Optional[int]
    max_a_len: Optional[int]
    trimmed30: bool
    merge: str
    merge_args: dict = field(default_factory=dict)
    schedule_spec: Any = None      # merge.r as given (published -> umt_fractions where the model's default is that)
    schedule: list = field(default_factory=list)  # resolved, one entry per block
    schedule_note: Optional[str] = None  # where a named schedule that is not a published one comes from
    # Test views of tasks that declare them (action recognition): sampling, frame_interval, clips,
    # crops and their product ``views``; None for every other task.
    views: Optional[dict] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def arch_config(self, heads: Optional[str] = None):
        """The architecture at this spec's frame count (from its backbone family), with the head set
        its task needs or the one given (the analysis commands build the retrieval heads)."""
        from vidtldr.models.family import get_family

        return get_family(self.family).architecture(self.arch, heads or self.heads, num_frames=self.num_frames)

    def umt_config(self, task: Optional[str] = None):
        """:meth:`arch_config` under its former name (``task`` = the head set)."""
        return self.arch_config(task)

    def schedule_described(self) -> dict:
        """``schedule_spec`` and, for a schedule that is not a published one (``umt_fractions``), its
        ``schedule_note``: what a record or report says about where the schedule comes from."""
        out = {"schedule_spec": self.schedule_spec}
        if self.schedule_note:
            out["schedule_note"] = self.schedule_note
        return out

    def reducer(self):
        """A fresh reducer running this spec's schedule (None for merge=none)."""
        from vidtldr.reduce import build_reducer

        return None if self.merge == "none" else build_reducer(self.merge, list(self.schedule), **self.merge_args)


@dataclass(kw_only=True)
class RunSpec(ModelSpec):
    """The resolved settings of one evaluation run (everything a record needs to say what ran)."""

    init: str                      # checkpoint | random
    seed: int
    checkpoint: Optional[str]      # path, or None for random init
    checkpoint_kind: Optional[str]  # finetuned | pretrained
    checkpoint_from_zoo: bool      # the file comes from model.checkpoints (a UMT model-zoo name), not model.checkpoint
    data_source: str               # real | tiny
    data_root: str
    limit: Optional[int]
    device: str
    precision: str
    tokenizer: Optional[str]       # model.tokenizer as given (None: the architecture's)
    settings: RunSettings          # how the run executes (vidtldr/run/settings.py)
    dataset_config: dict = field(repr=False)  # the dataset section, for its reader
    # Values the resolution changed from what was asked (data.source / model.init implied by an explicit
    # paths.data= / model.checkpoint=, caps, clamped schedule entries): the record's "adjusted"
    # (vidtldr/run/adjust.py).
    adjusted: dict = field(repr=False)

    def to_dict(self) -> dict:
        """The record's ``resolved`` (the dataset section and the adjustments are recorded elsewhere)."""
        out = dataclasses.asdict(self)
        out.pop("dataset_config")
        out.pop("adjusted")
        return out


def _merge_r(cfg: DictConfig) -> Any:
    try:
        r = cfg.merge.r
    except MissingMandatoryValue:
        raise ConfigError(f"merge={cfg.merge.name} has no default schedule: give one, e.g. merge.r=100 "
                          "(every block) or merge.r=[600,200,100] (first blocks)") from None
    return _plain(r)


def resolve_schedule(cfg: DictConfig, depth: int, dataset: str, settings: DatasetSettings
                     ) -> tuple[Any, list, Optional[str]]:
    """(merge.r as resolved, per-block list of ``depth`` entries, a note on where the schedule comes
    from or None) for dataset config ``dataset``. ``merge.r=published`` stays ``published`` unless
    the model's own ``published_schedule`` is ``umt_fractions`` (VideoMAE, where none was published):
    then it reads ``umt_fractions``, with its note."""
    from vidtldr.reduce.schedule import UMT_FRACTIONS, parse_schedule

    setting = settings.setting
    name = cfg.merge.name
    r = _merge_r(cfg)
    if name == "none" or ("+" in str(name) and (r is None or r == [])):
        # a composition with no in-block schedule still reduces: its input-level part(s) run at their own
        # settings (compare and tune fit merge.r=[] where that part alone meets the budget)
        return r, parse_schedule(None, depth), None
    if r is None or r == [] or r == {}:  # would run the baseline while the record says merge=<name>
        raise ConfigError(f"merge={name} merge.r={'null' if r is None else r} removes no tokens: use merge=none for the baseline, "
                          "or give a schedule, e.g. merge.r=[48,24]")
    inner = str(name).split("+")[-1]  # a composition's merge.r belongs to its in-block part
    own = _plain(cfg.model.get("published_schedule"))
    if r == "published" and own is not None:
        if inner != "vidtldr":
            hint = f" (e.g. merge.r={UMT_FRACTIONS})" if own == UMT_FRACTIONS else ""
            raise ConfigError(f"merge={name} merge.r=published: model={cfg.model.name} only has a vid-TLDR "
                              f"schedule; pass merge.r explicitly{hint}")
        if own != UMT_FRACTIONS:
            return r, parse_schedule(list(own), depth), None
        r = UMT_FRACTIONS
    if r == UMT_FRACTIONS:
        return r, *_umt_fractions(cfg, depth, dataset, settings)
    if r == "published" and setting == "zeroshot":
        raise ConfigError(f"merge.r=published: no schedule was published for zero-shot runs "
                          f"(dataset={dataset}); pass merge.r=[...] explicitly (see README)")
    # The published schedules are per dataset, whatever the split (didemo_val uses didemo's).
    return r, parse_schedule(r, depth, dataset=settings.checkpoint_key, backbone=cfg.model.backbone,
                             reducer=inner), None


def _umt_fractions(cfg: DictConfig, depth: int, dataset: str, settings: DatasetSettings) -> tuple[list, str]:
    """``merge.r=umt_fractions``: vid-TLDR's UMT schedule of the dataset's ``schedule_source`` and the
    model's ``schedule_backbone`` (a UMT model: its own backbone), as fractions, with its note."""
    from vidtldr.reduce.schedule import VIDTLDR_PRESETS, parse_schedule, umt_fractions_note

    backbone = str(cfg.model.get("schedule_backbone") or cfg.model.backbone)
    schedule = parse_schedule("umt_fractions", depth, dataset=settings.schedule_source, backbone=backbone)
    published_here = settings.setting == "finetuned" and cfg.model.get("published_schedule") is None \
        and (settings.checkpoint_key, str(cfg.model.backbone)) in VIDTLDR_PRESETS
    note = umt_fractions_note(settings.schedule_source, backbone, published_here,
                              f"model={cfg.model.name} dataset={dataset}")
    return schedule, note


def published_schedule(cfg: DictConfig, depth: int) -> Optional[list]:
    """The vid-TLDR schedule ``merge.r=published`` resolves to for this dataset and model (the
    model's own for ``tiny``), or None when there is none (tune and compare's reference point):
    ``umt_fractions`` is borrowed from UMT, not published for the model, so it is None too."""
    from omegaconf import OmegaConf

    probe = OmegaConf.create({"merge": {"name": "vidtldr", "r": "published"}, "model": _plain(cfg.model)})
    try:
        spec, schedule, _ = resolve_schedule(probe, depth, str(cfg.dataset.name), dataset_settings(cfg.dataset))
    except ConfigError:
        return None
    return list(schedule) if spec == "published" else None


def check_numbers(cfg: DictConfig) -> None:
    """The numeric settings given on the command line: batch sizes, worker count, and where set,
    data.limit, eval.k_test and eval.num_frames (cheap, so a run checks them before anything else)."""
    for key, minimum in (("eval.itm_batch", 1), ("eval.text_batch", 1), ("data.batch_size", 1)):
        section, name = key.split(".")
        count_value(key, cfg[section].get(name), minimum)
    workers = cfg.data.get("num_workers")
    if workers != "auto":  # an integer >= 0, or auto (vidtldr.data.workers)
        try:
            count_value("data.num_workers", workers, 0)
        except ConfigError:
            raise ConfigError(f"data.num_workers={workers}: accepted values: auto, or an integer >= 0") from None
    for key in ("data.limit", "eval.k_test", "eval.num_frames", "eval.itm_group_batch"):
        section, name = key.split(".")
        if cfg[section].get(name) is not None:
            count_value(key, cfg[section][name], 1)


def resolve_model(cfg: DictConfig) -> ModelSpec:
    """The model-level resolution of a composed config (groups ``model``, ``dataset``, ``merge`` and
    the keys ``eval.num_frames`` / ``eval.k_test``): frames, k_test and text lengths from the
    dataset (capped by the model), the architecture, and ``merge.r`` as a per-block schedule
    (``published`` = the model's own preset if it has one, else the published schedule of the
    dataset and backbone; refused for zero-shot)."""
    from vidtldr.models.family import get_family
    from vidtldr.reduce import reducer_class
    from vidtldr.config_values import check_settings

    check_settings(cfg)  # booleans, numbers, options, stray keys: before anything is built
    ds, model = cfg.dataset, cfg.model
    name, task = str(ds.name), str(ds.task)
    task_def = resolve_task(ds)
    if not model.get("family"):
        raise ConfigError(f"model={model.name}: no 'family' key; name its backbone family, e.g. family: umt")
    family = get_family(str(model.family), f"model={model.name}: family")
    heads = family.check_heads(task_def.heads, f"dataset={name} (task {task}) with model={model.name}")
    settings = dataset_settings(ds)
    caps = _plain(model.get("caps")) or {}
    num_frames = setting_value(cfg, "num_frames", ds.num_frames, caps.get("num_frames"))
    k_test = setting_value(cfg, "k_test", ds.k_test, caps.get("k_test")) if task_def.uses_text else \
        refuse_text_key(cfg, task)
    check_merge_args(reducer_class(str(cfg.merge.name)), cfg)  # unknown reducers / keys are refused first
    depth = family.architecture(str(model.arch), heads, num_frames=num_frames).vision.depth
    schedule_spec, schedule, schedule_note = resolve_schedule(cfg, depth, name, settings)
    return ModelSpec(
        task=task, heads=heads, dataset=name, dataset_base=settings.base, setting=settings.setting,
        paper_row=settings.paper_row, checkpoint_key=settings.checkpoint_key,
        model=str(model.name), family=family.name, backbone=str(model.backbone), arch=str(model.arch),
        num_frames=num_frames, k_test=k_test, max_txt_l=text_length(ds, str(model.backbone)),
        max_q_len=opt_int(ds.get("max_q_len")), max_a_len=opt_int(ds.get("max_a_len")),
        trimmed30=task_def.trimmed30(bool(ds.get("trimmed30", False))),
        merge=str(cfg.merge.name), merge_args=merge_args(cfg), schedule_spec=schedule_spec, schedule=schedule,
        schedule_note=schedule_note, views=resolve_views(cfg, ds, task_def.views))


def merge_args(cfg: DictConfig) -> dict:
    """The merge group's keys besides ``name`` and ``r``: keyword arguments of the reducer."""
    return {k: _plain(cfg.merge[k]) for k in cfg.merge.keys() if k not in ("name", "r")}


def check_merge_args(cls: type, cfg: DictConfig) -> None:
    """Every merge key besides ``name`` and ``r`` must be a keyword of the reducer (``+merge.rr=3``
    is a typo, not a TypeError deep inside the run)."""
    import inspect

    name = str(cfg.merge.name)
    if "+" in name:  # a composition: the in-block part's keys, one dict per input-level part
        from vidtldr.reduce import reducer_class
        from vidtldr.reduce.chain import check_chain_args

        check_chain_args(name, [reducer_class(part) for part in name.split("+")], merge_args(cfg))
        return
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "schedule")]
    unknown = sorted(set(merge_args(cfg)) - set(accepted))
    if unknown:
        raise ConfigError(f"merge={cfg.merge.name}: unknown key(s) {', '.join('merge.' + k for k in unknown)}; "
                          f"this reducer takes merge.r{''.join(', merge.' + k for k in accepted)}")


def with_merge(cfg: DictConfig, name: str, r: Any) -> DictConfig:
    """A copy of ``cfg`` that runs reducer ``name`` at schedule ``r`` (as ``merge=<name> merge.r=<r>``
    would; the current merge's other keys are kept when it is the same reducer)."""
    from omegaconf import OmegaConf, open_dict

    out = cfg.copy()
    merge = merge_args(cfg) if cfg.merge.name == name else {}
    with open_dict(out):
        out.merge = OmegaConf.create({"name": name, "r": r, **merge})
    return out


def resolve_checkpoint(cfg: DictConfig, dataset: str, setting: str, key: str,
                       init: Optional[str] = None) -> tuple[Optional[str], Optional[str], bool]:
    """(checkpoint path or None for random init, its kind, whether it is a model-zoo file); ``key``:
    the dataset's ``checkpoint_key`` into ``model.checkpoints``; ``init``: the effective
    ``model.init`` where the resolution changed it (default: the config's)."""
    model = cfg.model
    init = str(model.init) if init is None else init
    if init == "random":
        return None, None, False
    if init != "checkpoint":
        raise ConfigError(f"model.init must be 'checkpoint' or 'random', got {init!r}")
    kind = "pretrained" if setting == "zeroshot" else "finetuned"
    if model.get("checkpoint"):
        return str(model.checkpoint), kind, False
    files = _plain(model.get("checkpoints")) or {}
    if key not in files:
        raise ConfigError(f"model={model.name} has no checkpoint for dataset={dataset} "
                          f"(model.checkpoints has {sorted(files)}); set model.checkpoint=/path/to/file.pth")
    path = Path(cfg.paths.checkpoints) / files[key]
    if not path.exists():  # a family may know another local place for it (VideoMAE: the Hugging Face cache)
        from vidtldr.models.family import get_family

        locate = getattr(get_family(str(model.family)), "locate_checkpoint", None)
        found = locate(str(files[key])) if locate is not None else None
        path = Path(found) if found else path
    return str(path), kind, True


def resolve(cfg: DictConfig, *, data_root: Optional[str] = None, explicit: Iterable[str] = ()) -> RunSpec:
    """The evaluation's resolution: :func:`resolve_model` plus checkpoint, data, device and the
    run-level numbers. ``data_root`` overrides where the data is (the tiny dataset). ``explicit``: the
    keys given on the command line; ``paths.data`` / ``model.checkpoint`` among them take effect with a
    model whose own default would ignore them (``data.source`` / ``model.init`` as effective values,
    recorded in ``adjusted``; :func:`vidtldr.run.adjust.implied_by_explicit`). ``cfg`` is never edited."""
    from vidtldr.run.adjust import implied_by_explicit, spec_adjustments

    check_numbers(cfg)
    implied = implied_by_explicit(cfg, explicit)

    def effective(key: str) -> str:
        return str(implied[key]["effective"] if key in implied else required(cfg, key))

    base = resolve_model(cfg)
    settings = resolve_settings(cfg)
    check_adaptive(settings, base)
    check_view_decoder(settings, base)
    init = effective("model.init")
    checkpoint, kind, from_zoo = resolve_checkpoint(cfg, base.dataset, base.setting, base.checkpoint_key, init)
    limit = required(cfg, "data.limit")
    tokenizer = required(cfg, "model.tokenizer")
    spec = RunSpec(
        **{f.name: getattr(base, f.name) for f in dataclasses.fields(ModelSpec)},
        init=init, seed=int(required(cfg, "model.seed")), checkpoint=checkpoint,
        checkpoint_kind=kind, checkpoint_from_zoo=from_zoo, data_source=effective("data.source"),
        data_root=str(data_root if data_root is not None else required(cfg, "paths.data")),
        limit=int(limit) if limit is not None else None, device=run_device(cfg),
        precision=str(required(cfg, "precision")), tokenizer=str(tokenizer) if tokenizer else None,
        settings=settings, dataset_config=_plain(cfg.dataset), adjusted={},
    )
    from vidtldr.cost.vision import vision_dims

    dims = vision_dims(spec.arch_config())
    spec.adjusted = {**implied, **spec_adjustments(cfg, spec, dims.num_tokens(spec.num_frames),
                                                   per_step=(dims.img_size // dims.patch_size) ** 2)}
    return spec


def check_view_decoder(settings: RunSettings, spec: ModelSpec) -> None:
    """A task with test views (action recognition) decodes each video's distinct frames at frame
    indices of its own plan, which only decord's reader does here; another data.decoder would be
    ignored, so it is refused."""
    if spec.views is not None and settings.decoder != "decord":
        raise ConfigError(f"data.decoder={settings.decoder}: dataset={spec.dataset} ({spec.task}, test views) is "
                          "decoded with decord only; use data.decoder=decord")


def check_adaptive(settings: RunSettings, spec: ModelSpec) -> None:
    """A content-adaptive reducer (rlt's threshold form) gives each video its own token count: one
    video per encoder forward, and retrieval reads the tokens from the disk store (the memory store
    stacks every video's tokens into one tensor)."""
    if spec.merge == "none" or not getattr(spec.reducer(), "adaptive", False):
        return
    if settings.batch_size != 1:
        raise ConfigError(f"merge={spec.merge} with merge.threshold is content-adaptive (each video keeps its own "
                          f"token count): set data.batch_size=1 (got {settings.batch_size})")
    if spec.views is not None:  # a task's views of one video are encoded together and stacked
        raise ConfigError(f"merge={spec.merge} with merge.threshold (content-adaptive) runs on retrieval and QA "
                          f"datasets; dataset={spec.dataset} is a {spec.task} task: use the fixed budget "
                          "(merge.threshold=null)")
    if spec.task == "retrieval" and settings.token_store != "disk":
        raise ConfigError(f"merge={spec.merge} with merge.threshold gives videos different token counts: "
                          f"eval.token_store=disk is needed (got {settings.token_store})")
