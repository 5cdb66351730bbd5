"""Every registered reducer at one GFLOPs budget: ``python -m vidtldr.compare``.

Steps, in order, so that a mistake costs nothing:

1. every option is checked (types, ranges, reducer names, the budget and that it needs a
   reduction) and every reducer's schedule is fitted to the budget analytically
   (:mod:`vidtldr.analysis.compare.fit`) -- before any model is built or video decoded;
2. each fitted reducer is evaluated as ``vidtldr eval merge=<name> merge.r=<fit>`` would (the same
   runner, run records and feature cache), a stochastic reducer (``Reducer.stochastic``) once per
   seed; the dataset's headline metric is read from each record (retrieval: ITM mean recall, and
   R@1; QA and classification: accuracy). With ``videos=DIR`` (no labels) the metric is the
   fidelity to the unreduced model, measured as ``tune`` does;
3. the encoder time per clip of each fitted schedule is measured (batch 1, interleaved repeats,
   fused and, with ``compare.time.materialized``, the official materialized execution);
4. ``compare.json``, ``compare.md``/``.csv`` and the plot are written
   (:mod:`vidtldr.analysis.compare.report`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import statistics
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from vidtldr import jsonio
from vidtldr.analysis.compare.fit import FAMILIES, TOLERANCE, Fit, family, fit_input_level, fit_reducer
from vidtldr.analysis.search.schedules import as_override
from vidtldr.config_utils import CONFIG_DIR, plain
from vidtldr.errors import ConfigError

log = logging.getLogger(__name__)

FIDELITY_METRICS = ("embedding_cosine_mean", "itc_top1_agreement", "itc_top5_overlap", "itc_top10_overlap",
                    "spearman_mean", "kendall_mean")
MODES = ("fused", "materialized")


# ----------------------------------------------------------------------------- options


def registered_reducers() -> list[str]:
    """Every registered reducer but the identity, in name order."""
    from vidtldr.reduce import discover_reducers

    return sorted(name for name in discover_reducers() if name != "none")


def options(cfg: DictConfig) -> dict:
    """``compare.*`` as checked plain values (one-line ConfigError naming the key otherwise)."""
    from vidtldr.config_values import check_settings, choice, flag, integer
    from vidtldr.reduce import reducer_class

    check_settings(cfg)  # the evaluation's keys, as every command checks them
    opts = plain(cfg.get("compare")) or {}
    known = {"reducers", "seeds", "schedule", "fidelity_metric", "time", "plot"}
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join('compare.' + k for k in unknown)}; "
                          f"accepted: {', '.join('compare.' + k for k in sorted(known))}")
    names = opts.get("reducers", "all")
    if names == "all":
        names = registered_reducers()
    elif not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"compare.reducers={names!r}: expected all or a list of reducer names, e.g. [tome,random]")
    known = registered_reducers()
    for name in names:
        if name == "none":
            raise ConfigError("compare.reducers: none is the unreduced reference, always shown; list reducers only")
        if "+" in name:  # a composition: its parts and their order are checked by the chain's rules
            try:
                reducer_class(name)
            except ConfigError as exc:
                raise ConfigError(f"compare.reducers: {exc}") from None
        elif name not in known:
            raise ConfigError(f"compare.reducers={names}: unknown reducer {name!r}; accepted: {', '.join(known)}, "
                              "or a composition A+B (e.g. rlt+vidtldr)")
    if len(set(names)) != len(names):
        raise ConfigError(f"compare.reducers={names}: a reducer is listed twice")
    schedule = choice("compare.schedule", opts.get("schedule", "shape"), FAMILIES)
    metric = choice("compare.fidelity_metric", opts.get("fidelity_metric", "embedding_cosine_mean"), FIDELITY_METRICS)
    timing = opts.get("time") or {}
    bad = sorted(set(timing) - {"repeats", "materialized"})
    if bad:
        raise ConfigError(f"unknown key(s) {', '.join('compare.time.' + k for k in bad)}; "
                          "accepted: compare.time.repeats, compare.time.materialized")
    return {"reducers": list(names), "seeds": integer("compare.seeds", opts.get("seeds", 3), low=1),
            "schedule": schedule, "fidelity_metric": metric,
            "repeats": integer("compare.time.repeats", timing.get("repeats", 5), low=0),
            "materialized": flag("compare.time.materialized", timing.get("materialized", True)),
            "plot": flag("compare.plot", opts.get("plot", True))}


# ----------------------------------------------------------------------------- the budget


def model_level(cfg: DictConfig, explicit: Iterable[str] = ()):
    """(RunSpec with no reduction, architecture config) of the compared model: the evaluation's own
    resolution (``explicit``: the keys given on the command line, so that e.g. ``model.checkpoint=``
    with ``model=tiny`` loads that checkpoint here as in every row's evaluation); device, precision
    and weights are read from it, never from the config."""
    from vidtldr.run.runspec import resolve

    spec = resolve(with_merge_node(cfg, "none", None), explicit=explicit)
    return spec, spec.arch_config()


def encoder_gflops(arch_cfg, num_frames: int, reducer) -> float:
    from vidtldr.cost.vision import reducer_cost, vision_dims

    return reducer_cost(vision_dims(arch_cfg), num_frames, reducer).gflops_paper


def published_schedule(cfg: DictConfig, depth: int) -> Optional[list]:
    """The vid-TLDR schedule ``merge.r=published`` resolves to here, or None (the resolver's)."""
    from vidtldr.run import runspec

    return runspec.published_schedule(cfg, depth)


def resolve_budget(cfg: DictConfig, spec, arch_cfg, published: Optional[list]) -> tuple[float, str]:
    """(budget GFLOPs, how it was given) from ``budget=published``, ``budget.gflops`` or ``budget.ratio``
    (``cfg``: compare's own keys; ``spec``: the resolved run)."""
    from vidtldr.config_values import number
    from vidtldr.reduce import build_reducer

    num_frames = spec.num_frames
    unreduced = encoder_gflops(arch_cfg, num_frames, None)
    node = plain(cfg.get("budget"))
    if node == "published":
        if published is None:
            raise ConfigError(f"budget=published: no vid-TLDR schedule was published for dataset={spec.dataset} "
                              f"model={spec.model}; give budget.gflops=<GFLOPs> or budget.ratio=<fraction>")
        budget = encoder_gflops(arch_cfg, num_frames, build_reducer("vidtldr", published))
        how = f"published: vid-TLDR's schedule {[r for r in published if r] or published}"
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"budget={node}: accepted: budget=published, budget.gflops=<GFLOPs> or "
                              "budget.ratio=<fraction of the unreduced GFLOPs>")
        gflops, ratio = node.get("gflops"), node.get("ratio")
        if (gflops is None) == (ratio is None):
            raise ConfigError("give exactly one of budget=published, budget.gflops=<GFLOPs> or budget.ratio=<fraction "
                              f"of the unreduced {unreduced:.4f} GFLOPs>")
        if ratio is not None:
            ratio = number("budget.ratio", ratio, low=0, low_open=True)
            budget, how = ratio * unreduced, f"ratio {ratio:g} of the unreduced model"
        else:
            budget, how = number("budget.gflops", gflops, low=0, low_open=True), "gflops"
    if budget >= unreduced:
        raise ConfigError(f"budget of {budget:.4f} GFLOPs needs no reduction: the unreduced model costs "
                          f"{unreduced:.4f}; give a smaller budget.gflops or a budget.ratio below 1")
    return budget, how


# ----------------------------------------------------------------------------- reducers


def merge_defaults(name: str) -> dict:
    """The keys of ``configs/merge/<name>.yaml`` besides ``name`` and ``r`` (a reducer without one: none).
    A composition ``A+B`` takes the in-block part's (its input-level parts default to their own)."""
    name = name.split("+")[-1]
    path = CONFIG_DIR / "merge" / f"{name}.yaml"
    if not path.is_file():
        return {}
    node = plain(OmegaConf.load(path)) or {}
    return {k: v for k, v in node.items() if k not in ("name", "r")}


def with_merge_node(cfg: DictConfig, name: str, r: Any, **extra) -> DictConfig:
    """A copy of ``cfg`` running ``merge=<name> merge.r=<r>`` with the reducer's own default keys."""
    out = cfg.copy()
    with open_dict(out):
        out.merge = OmegaConf.create({"name": name, "r": r, **merge_defaults(name), **extra})
    return out


def is_stochastic(name: str) -> bool:
    """The reducer draws from ``merge.seed`` (in a composition, its in-block part, which that key reaches)."""
    from vidtldr.reduce import reducer_class

    return bool(getattr(reducer_class(name.split("+")[-1]), "stochastic", False))


def check_seedable(name: str) -> None:
    """A stochastic reducer must take ``seed`` (compare runs it once per seed)."""
    import inspect

    from vidtldr.reduce import reducer_class

    if is_stochastic(name) and "seed" not in inspect.signature(reducer_class(name.split("+")[-1]).__init__).parameters:
        raise ConfigError(f"reducer {name} declares stochastic = True but takes no seed keyword; "
                          "compare cannot vary its draws")


def fit_all(names: list[str], arch_cfg, num_frames: int, budget: float, kind: str,
            published: Optional[list]) -> tuple[list[Fit], str]:
    """Every reducer's fit (analytic); the family in words."""
    from vidtldr.analysis.search.schedules import canonical
    from vidtldr.cost.vision import vision_dims
    from vidtldr.reduce import build_reducer, reducer_class

    depth = arch_cfg.vision.depth
    num_tokens = vision_dims(arch_cfg).num_tokens(num_frames)
    shape = canonical(published, num_tokens, depth) if published else None
    make, described = family(kind, depth, shape)
    dims = vision_dims(arch_cfg)
    per_step = (dims.img_size // dims.patch_size) ** 2  # tokens of one tubelet step
    fits = []
    for name in names:
        args = merge_defaults(name)

        def cost(schedule, name=name, args=args):
            return encoder_gflops(arch_cfg, num_frames, build_reducer(name, list(schedule), **args))

        if "+" in name:  # a composition: its input-level parts at their own settings, merge.r fitted
            entering = num_tokens - build_reducer(name, [0], **args).input_removed(num_tokens, per_step)
            fit = fit_reducer(name, cost, entering, depth, budget, make)
            fit.note = (f"its input-level part(s) at their own settings ({entering} of {num_tokens} tokens enter "
                        "block 0); merge.r = the in-block part's schedule")
            fits.append(fit)
        elif getattr(reducer_class(name), "input_level", False):
            fits.append(fit_input_level(name, lambda n, cost=cost: cost([n]), budget, num_tokens - per_step))
        else:
            fits.append(fit_reducer(name, cost, num_tokens, depth, budget, make))
    return fits, described


# ----------------------------------------------------------------------------- evaluation


def headline(metrics: dict, task: Optional[str] = None) -> dict:
    """The dataset's headline numbers from an evaluation record's ``metrics``, as the task declares
    them (``Task.headline_metrics`` / ``Task.headline``: retrieval ITM mean recall and R@1, QA
    accuracy, classification top-1 and top-5); without ``task``, the first registered task whose
    headline these metrics hold."""
    from vidtldr.tasks.base import discover_tasks, get_task

    tasks = [get_task(task)] if task is not None else [cls() for _, cls in sorted(discover_tasks().items())]
    for candidate in tasks:
        numbers = candidate.headline(metrics)
        if numbers is not None:
            return numbers
    raise ConfigError(f"the evaluation records no headline metric compare knows (got {sorted(metrics)})")


def mean_std(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (None for one value: no spread was measured)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def evaluate_labelled(cfg: DictConfig, run_dir: Path, name: str, merge_r: Optional[list], seeds: list[int],
                      task: Optional[str] = None, overrides: Optional[list[str]] = None) -> list[dict]:
    """One evaluation record per seed (one for a deterministic reducer) under ``run_dir/rows``, its
    ``task``'s headline read from each; ``overrides``: the command line's (default: Hydra's)."""
    from vidtldr.run.runner import run

    out = []
    for seed in seeds:
        extra = {"seed": seed} if is_stochastic(name) else {}
        row_cfg = with_merge_node(cfg, name, merge_r if merge_r else None, **extra)
        where = run_dir / "rows" / (f"{name}_seed{seed}" if extra else name)
        record = finished_row(where, name, merge_r, extra.get("seed"))
        if record is None:
            record = run(row_cfg, where, progress=False, overrides=overrides)
        out.append({"seed": seed if extra else None, "record": str(where / "record.json"),
                    "metrics": headline(record["metrics"], task), "gflops_record": (record.get("gflops") or {}).get("paper")})
    return out


def finished_row(where: Path, name: str, merge_r: Optional[list], seed: Optional[int]) -> Optional[dict]:
    """The complete record of this very row left by an interrupted comparison in the same run
    directory (``make table-reducers`` resumes row by row), else None."""
    from vidtldr.run.record import is_complete, read_existing

    record = read_existing(where)
    if not is_complete(record):
        return None
    ran = record.get("run") or {}
    merge = (record.get("config") or {}).get("merge") or {}
    if ran.get("merge") != name or as_override(tuple(ran.get("schedule") or ())) != list(merge_r or []) \
            or merge.get("seed") != seed:
        return None
    log.info("%s: reusing the finished evaluation %s", name, where)
    return record


def evaluate_fidelity(session, name: str, merge_r: Optional[list], seeds: list[int], metric: str) -> list[dict]:
    from vidtldr.analysis.search.fidelity import gflops_of
    from vidtldr.reduce import build_reducer

    out = []
    for seed in seeds:
        extra = {"seed": seed} if is_stochastic(name) else {}
        reducer = None if name == "none" else build_reducer(name, list(merge_r), **{**merge_defaults(name), **extra})
        m = session.measure(reducer, tokens=False, gflops=gflops_of(session, reducer))
        value = m.get(metric)
        if value is None or not math.isfinite(value):
            raise ConfigError(f"compare.fidelity_metric={metric} is undefined on {len(session.keys)} videos; "
                              "choose embedding_cosine_mean or give more videos")
        out.append({"seed": seed if extra else None, "metrics": {metric: float(value)}})
    return out


# ----------------------------------------------------------------------------- timing


@contextlib.contextmanager
def quiet_after_first(index: int):
    """The evaluation's log lines (capped settings, cache counts) once, for the first row; the
    later rows repeat them (each row's record.json keeps its own)."""
    logger = logging.getLogger("vidtldr.run")
    level = logger.level
    if index > 0:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def time_rows(spec, arch_cfg, rows: list[dict], repeats: int, modes: tuple, device: str, precision: str) -> None:
    """Encoder milliseconds per clip of every row (batch 1, a seeded random clip, the backbone
    family's model with seeded random weights: time does not depend on the weights), the fastest of
    ``repeats`` forwards interleaved across rows and modes after one warm-up each (other work on the
    machine only ever adds time, so minima compare like with like); written into each row's
    ``encoder_ms`` ({mode: ms})."""
    import time

    import torch
    from tqdm import tqdm

    from vidtldr.models.precision import autocast_context
    from vidtldr.reduce import build_reducer
    from vidtldr.run.assemble import build_model

    if repeats < 1:
        return
    model, _ = build_model(spec, arch_cfg, seed=0, device=device)  # the assembler every tool builds through
    size = arch_cfg.vision.img_size
    videos = torch.randn(1, spec.num_frames, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def forward(row: dict, mode: str) -> float:
        reducer = None if row["merge"] == "none" else build_reducer(row["merge"], list(row["merge_r"]),
                                                                    **merge_defaults(row["merge"]))
        model.set_attention(mode)
        with torch.inference_mode(), autocast_context(device, precision):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            model.encode_vision(videos, reducer=reducer)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - start

    todo = [(row, mode) for row in rows for mode in modes]
    times: list[list[float]] = [[] for _ in todo]
    for row, mode in todo:
        forward(row, mode)  # warm-up
    for _ in tqdm(range(repeats), desc="encoder time", unit="repeat"):
        for i, (row, mode) in enumerate(todo):
            times[i].append(forward(row, mode))
    for i, (row, mode) in enumerate(todo):
        row.setdefault("encoder_ms", {})[mode] = round(1000 * min(times[i]), 3)


# ----------------------------------------------------------------------------- the command


def _row(fit: Fit, stochastic: bool, seeds: list[int]) -> dict:
    return {"merge": fit.reducer, "merge_r": fit.merge_r, "gflops_paper": fit.gflops, "stochastic": stochastic,
            "seeds": seeds if fit.fitted else [], "fitted": fit.fitted, "error": fit.error, "fit_note": fit.note,
            "mean": None, "std": None}


def summarise_runs(row: dict, runs: list[dict], metric: str) -> None:
    """Mean and spread of every headline number over the row's runs (seeds)."""
    row["runs"] = runs
    row["metrics"] = {}
    for key in runs[0]["metrics"]:
        values = [r["metrics"][key] for r in runs]
        mean, std = mean_std(values)
        row["metrics"][key] = {"mean": mean, "std": std, "values": values}
    row["mean"], row["std"] = row["metrics"][metric]["mean"], row["metrics"][metric]["std"]


def run_compare(cfg: DictConfig, run_dir: str | Path, *, overrides: Optional[list[str]] = None) -> dict:
    """The whole comparison; writes ``compare.json``, ``compare.md``/``.csv`` and the plot.
    ``overrides``: the command-line overrides (default: Hydra's), resolved as the evaluation does."""
    from tqdm import tqdm

    from vidtldr.analysis.compare.report import write_outputs
    from vidtldr.run.cache import atomic_write_text
    from vidtldr.run import adjust
    from vidtldr.run.record import base_record, now_iso
    from vidtldr.tasks.base import get_task

    opts = options(cfg)
    explicit = adjust.explicit_keys(overrides)
    spec, arch_cfg = model_level(cfg, explicit)
    published = published_schedule(cfg, arch_cfg.vision.depth)
    budget, how = resolve_budget(cfg, spec, arch_cfg, published)
    for name in opts["reducers"]:
        check_seedable(name)
    fits, described = fit_all(opts["reducers"], arch_cfg, spec.num_frames, budget, opts["schedule"], published)
    unreduced = encoder_gflops(arch_cfg, spec.num_frames, None)
    for fit in fits:
        log.info("%s: %s", fit.reducer, f"merge.r={fit.merge_r} at {fit.gflops:.4f} GFLOPs" if fit.fitted else fit.error)
    labelled = cfg.get("videos") is None
    if labelled and not get_task(spec.task).headline_metrics:
        raise ConfigError(f"dataset={spec.dataset}: compare has no headline metric for task {spec.task!r}")
    seeds_of = {f.reducer: list(range(opts["seeds"])) if is_stochastic(f.reducer) else [0] for f in fits}
    rows = [_row(f, is_stochastic(f.reducer), seeds_of[f.reducer]) for f in fits]
    reference = {"merge": "none", "merge_r": [], "gflops_paper": unreduced, "stochastic": False, "seeds": [0],
                 "fitted": True, "error": None, "fit_note": None, "mean": None, "std": None}
    todo = [reference] + [r for r in rows if r["fitted"]]
    run_dir = Path(run_dir)
    session = None
    if labelled:
        metric = None
    else:
        from vidtldr.analysis.search.fidelity import prepare

        metric = opts["fidelity_metric"]
        # a top-k overlap undefined for this many videos is refused here, before the model is built
        session = prepare(with_merge_node(cfg, "none", None), metric=metric, metric_key="compare.fidelity_metric",
                          explicit=explicit)
    for i, row in enumerate(tqdm(todo, desc="compare", unit="reducer")):
        if labelled:
            with quiet_after_first(i):
                runs = evaluate_labelled(cfg, run_dir, row["merge"], row["merge_r"], row["seeds"], spec.task,
                                         overrides=overrides)
            metric = metric or next(iter(runs[0]["metrics"]))
        else:
            runs = evaluate_fidelity(session, row["merge"], row["merge_r"], row["seeds"], metric)
        summarise_runs(row, runs, metric)
    modes = MODES if opts["materialized"] else ("fused",)
    from vidtldr.provenance import load_average, machine

    load_before = load_average()
    time_rows(spec, arch_cfg, todo, opts["repeats"], modes, spec.device, spec.precision)
    record = base_record()
    record.update({
        "kind": "compare", "status": "complete", "finished": now_iso(), "run_dir": str(run_dir),
        "model": spec.model, "backbone": spec.backbone, "dataset": spec.dataset, "task": spec.task,
        "num_frames": spec.num_frames, "collection": f"folder {cfg.videos}" if not labelled else f"dataset {spec.dataset}",
        "metric": metric, "budget_gflops": budget, "budget": how, "unreduced_gflops": unreduced,
        "tolerance": TOLERANCE, "schedule_family": described, "seeds": opts["seeds"],
        "timing": {"repeats": opts["repeats"], "modes": list(modes), "batch": 1,
                   "input": "seeded random clip, seeded random weights",
                   "statistic": "min", "device": spec.device, "load_before": load_before,
                   "load_after": load_average(), "machine": machine(spec.device)},
        "reference": reference, "rows": rows, "config": plain(cfg),
    })
    if spec.init == "random":  # as resolved: model=tiny with an explicit model.checkpoint= loads it
        record["note"] = (f"model={spec.model} has random weights: the numbers show the mechanism, "
                          "not what a trained model does")
    run_dir.mkdir(parents=True, exist_ok=True)
    record["outputs"] = write_outputs(record, run_dir, plot=opts["plot"])
    atomic_write_text(run_dir / "compare.json", jsonio.dumps(record, indent=1, default=str))
    return record


def summary(record: dict) -> dict:
    """The one-line JSON the command prints last."""
    rows = []
    for row in record["rows"]:
        entry = {k: row.get(k) for k in ("merge", "merge_r", "gflops_paper", "stochastic")}
        entry.update(seeds=len(row["seeds"]), mean=row.get("mean"), std=row.get("std"),
                     encoder_ms=row.get("encoder_ms"))
        if row["error"]:
            entry["error"] = row["error"]
        rows.append(entry)
    return {"budget_gflops": record["budget_gflops"], "metric": record["metric"], "rows": rows,
            "record": str(Path(record["run_dir"]) / "compare.json")}


def main() -> None:
    """``python -m vidtldr.compare budget.ratio=0.7`` (or budget.gflops=, budget=published)."""
    from vidtldr.analysis.compare.report import format_table
    from vidtldr.entry import record_command

    record_command("compare", "vidtldr.compare", run_compare, format_table, summary)
