"""Choose a schedule without labels: search per-block schedules under a GFLOPs budget, maximising
the fidelity of the reduced model to the unreduced one on a calibration subset.

One :class:`vidtldr.analysis.search.fidelity.Session` (videos decoded once, unreduced features cached)
serves every evaluation. Candidates are counted analytically with the evaluation's counting engine
(free), fitted to the budget by :mod:`vidtldr.analysis.search`, and only those are run on the model.
The configured reducer gets the full search; the comparison reducers (ToMe, random drop,
representation shift by default) are fitted to the same budget and searched with their own,
smaller evaluation budget, so all of them are compared at (nearly) equal GFLOPs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from vidtldr import jsonio
from vidtldr.analysis.search.fidelity import METRICS, Session, check_retrieval_family, encoder_gflops, gflops_of, prepare
from vidtldr.analysis.search.schedules import (BudgetError, Candidate, ScheduleSearch, UndefinedObjectiveError,
                                               as_override, canonical, resolve_budget)
from vidtldr.config_utils import plain
from vidtldr.errors import ConfigError
from vidtldr.files import atomic_write_text

log = logging.getLogger(__name__)



def _reducer(name: str, schedule, merge_args: dict):
    from vidtldr.reduce import build_reducer

    return None if name == "none" else build_reducer(name, list(schedule), **merge_args)


def _args_for(name: str, primary: str, merge_args: dict) -> dict:
    # The configured merge's extra keys (e.g. random's seed) apply to it only; others use defaults.
    return dict(merge_args) if name == primary else {}


def search_reducer(session: Session, name: str, budget: float, *, metric: str, max_evals: int, seed: int,
                   merge_args: dict, extra: tuple = ()) -> dict:
    """Search ``name``'s schedules within ``budget``; the result as plain data."""
    depth = session.arch_cfg.vision.depth
    n0 = spec_tokens(session)
    metrics: dict = {}

    def cost(schedule):
        return gflops_of(session, _reducer(name, schedule, merge_args))

    def objective(schedule):
        result = session.measure(_reducer(name, schedule, merge_args), tokens=metric == "token_agreement_mean",
                                 gflops=cost(schedule))
        metrics[schedule] = result
        value = result.get(metric)
        return None if value is None else float(value)  # undefined: excluded by the search

    search = ScheduleSearch(cost, n0, depth, budget)
    starts = tuple(Candidate(canonical(s, n0, depth), fam, cost(canonical(s, n0, depth))) for fam, s in extra)
    try:
        result = search.run(objective, max_evals=max_evals, seed=seed, extra=starts)
    except UndefinedObjectiveError as exc:
        raise UndefinedObjectiveError(f"tune.metric={metric}: undefined for every {name} candidate ({exc}); "
                                      f"nothing to recommend: choose another tune.metric, e.g. "
                                      "embedding_cosine_mean") from None
    if result.undefined:
        log.warning("%s: %d of %d candidates have no defined %s; they are excluded from the best and the "
                    "Pareto front", name, result.undefined, len(result.evaluated), metric)
    log.info("%s: best %s at %.4f GFLOPs, %s = %.4f (%d evaluated)", name, as_override(result.best.schedule),
             result.best.gflops, metric, result.best.fidelity, len(result.evaluated))
    return {
        "reducer": name, "budget_gflops": budget, "min_gflops": result.min_gflops,
        "unreduced_gflops": result.max_gflops, "evaluated": len(result.evaluated), "proposed": result.proposed,
        "undefined": result.undefined,
        "best": _row(result.best, metrics),
        "candidates": [_row(c, metrics) for c in result.evaluated],
    }


def _row(cand: Candidate, metrics: dict) -> dict:
    m = metrics.get(cand.schedule, {})
    return {"merge_r": as_override(cand.schedule), "family": cand.family, "gflops_paper": cand.gflops,
            "fidelity": cand.fidelity, "metrics": {k: m.get(k) for k in METRICS + ("encoder_s",)}}


def spec_tokens(session: Session) -> int:
    from vidtldr.cost.vision import vision_dims

    return vision_dims(session.arch_cfg).num_tokens(session.spec.num_frames)


def published_schedule(cfg: DictConfig, depth: int) -> Optional[list]:
    """The vid-TLDR schedule ``merge.r=published`` resolves to here, or None (the resolver's)."""
    from vidtldr.run import runspec

    return runspec.published_schedule(cfg, depth)


def _reference_point(session: Session, name: str, schedule: list, label: str, metric: str) -> dict:
    reducer = _reducer(name, schedule, {})
    m = session.measure(reducer, tokens=metric == "token_agreement_mean", gflops=gflops_of(session, reducer))
    return {"label": label, "reducer": name, "merge_r": as_override(tuple(schedule)), "gflops_paper": m["gflops_paper"],
            "fidelity": m.get(metric), "metrics": {k: m.get(k) for k in METRICS + ("encoder_s",)}}


def run_tune(cfg: DictConfig, run_dir: str | Path) -> dict:
    """The whole search; writes ``tune.json``, ``pareto.md``/``.csv`` and the plot into ``run_dir``."""
    from vidtldr.analysis.search.tune_report import write_outputs
    from vidtldr.run.record import base_record, now_iso

    opts = cfg.tune
    metric, compare = check_options(cfg)  # before any model time: the whole search depends on them
    primary = str(cfg.merge.name)
    merge_args = {k: plain(v) for k, v in cfg.merge.items() if k not in ("name", "r")}
    budget, unreduced = check_budget(cfg, primary, merge_args)  # before any video is decoded
    session = prepare(_schedule_free(cfg), ks=plain(opts.get("ks", [1, 5, 10])), metric=metric)
    depth = session.arch_cfg.vision.depth
    published = published_schedule(cfg, depth)
    extra = (("published", published),) if published is not None and primary == "vidtldr" else ()
    runs = [search_reducer(session, primary, budget, metric=metric, max_evals=int(opts.max_evals),
                           seed=int(opts.seed), merge_args=merge_args, extra=extra)]
    for name in compare:
        try:
            runs.append(search_reducer(session, name, budget, metric=metric, max_evals=int(opts.compare_evals),
                                       seed=int(opts.seed), merge_args=_args_for(name, primary, merge_args)))
        except (BudgetError, UndefinedObjectiveError) as exc:  # the main result stands; this row says why not
            runs.append({"reducer": name, "error": str(exc), "evaluated": 0})
    references = []
    if published is not None:
        references.append(_reference_point(session, "vidtldr", published, "published vid-TLDR", metric))
    evaluated = sum(r["evaluated"] for r in runs) + len(references)
    spec = session.spec
    record = base_record()
    record.update({
        "kind": "tune", "status": "complete", "finished": now_iso(), "run_dir": str(run_dir),
        "model": spec.model, "dataset": spec.dataset, "collection": session.collection.origin,
        "num_frames": spec.num_frames, "videos": len(session.keys), "skipped_videos": session.skipped,
        "metric": metric, "budget_gflops": budget, "unreduced_gflops": unreduced, "seed": int(opts.seed),
        "max_evals": int(opts.max_evals), "compare_evals": int(opts.compare_evals), "evaluated": evaluated,
        "reducers": runs, "references": references, "cache": session.cache, "adjusted": session.adjusted,
        "config": plain(cfg),
    })
    if spec.init == "random":
        record["note"] = (f"model={spec.model} has random weights (seed {spec.seed}): the numbers show the mechanism, "
                          "not what a trained model does")
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    record["outputs"] = write_outputs(record, Path(run_dir), plot=bool(opts.get("plot", True)))
    atomic_write_text(Path(run_dir) / "tune.json", jsonio.dumps(record, indent=1, default=str))
    return record


def check_options(cfg: DictConfig) -> tuple[str, list[str]]:
    """(metric, compared reducers) once every ``tune.*`` key is valid; a mistake is one ConfigError
    naming the key, before a video is decoded (the comparison runs after the main search, so a bad
    compared reducer found then would cost the whole search)."""
    from vidtldr.config_values import choice, integer, integers, shown
    from vidtldr.reduce import discover_reducers

    opts = cfg.tune
    metric = choice("tune.metric", opts.metric, METRICS)
    primary = str(cfg.merge.name)
    # the registry (a new reducer is listed); an input-level reducer removes tokens once, before block
    # 0, so it has no per-block schedule to search: only its first entry would count
    registered = discover_reducers()
    known = sorted(n for n, cls in registered.items() if n != "none" and not cls.input_level)
    input_level = sorted(n for n, cls in registered.items() if cls.input_level)
    if primary == "none":
        raise ConfigError(f"merge=none has no schedule to tune; accepted: merge=<reducer> with a reducer of "
                          f"{', '.join(known)}")
    if primary in input_level:
        raise ConfigError(f"merge={primary} removes tokens once, before block 0: it has no per-block schedule "
                          f"to tune; fit its one count to the budget with vidtldr compare compare.reducers=[{primary}], "
                          f"compose it (merge={primary}+vidtldr tunes the in-block part), or tune a reducer of "
                          f"{', '.join(known)}")
    integer("tune.max_evals", opts.max_evals, low=1)
    integer("tune.seed", opts.seed, low=0)
    integers("tune.ks", opts.get("ks", [1, 5, 10]))
    given = plain(opts.get("compare")) or []
    if not isinstance(given, list):
        given = [given]
    for name in given:
        if name == "none":
            raise ConfigError(f"tune.compare={shown(given)}: none is the unreduced model, every candidate is measured "
                              f"against it already; accepted reducers: {', '.join(known)} (or [] for none)")
        if name not in known:
            what = "an input-level reducer (no per-block schedule)" if name in input_level else "unknown reducer"
            raise ConfigError(f"tune.compare={shown(given)}: {what} {name!r}; accepted: {', '.join(known)}")
    compare = list(dict.fromkeys(str(c) for c in given if str(c) != primary))
    if compare:
        integer("tune.compare_evals", opts.compare_evals, low=1)
    return metric, compare


def check_budget(cfg: DictConfig, name: str, merge_args: dict) -> tuple[float, float]:
    """(budget, unreduced GFLOPs); a budget no schedule of ``name`` reaches, or one the unreduced
    model already meets (nothing to search for), is a BudgetError now."""
    from vidtldr.cost.vision import vision_dims
    from vidtldr.run.runspec import resolve_model

    spec = resolve_model(_schedule_free(cfg))  # the model-level resolution: no data needed yet
    check_retrieval_family(spec)
    arch_cfg = spec.umt_config(task="retrieval")
    unreduced = encoder_gflops(arch_cfg, spec.num_frames, None)
    budget = resolve_budget(plain(cfg.budget.get("gflops")), plain(cfg.budget.get("ratio")), unreduced)
    given = (f"budget.ratio={plain(cfg.budget.ratio)}" if cfg.budget.get("ratio") is not None
             else f"budget.gflops={plain(cfg.budget.gflops)}")
    if budget >= unreduced:
        raise BudgetError(f"{given}: the unreduced model ({unreduced:.4f} GFLOPs) already fits, so there is no "
                          f"reduction to search for; accepted: a budget below {unreduced:.4f} GFLOPs "
                          "(budget.ratio < 1)")
    if "+" in name:  # a composition: its input-level part(s) run at their own settings whatever the search picks
        alone = encoder_gflops(arch_cfg, spec.num_frames, _reducer(name, [0] * arch_cfg.vision.depth, merge_args))
        if budget >= alone:
            inputs = "+".join(name.split("+")[:-1])
            raise BudgetError(f"{given}: merge={name}'s input-level part alone ({alone:.4f} GFLOPs, merge={inputs} "
                              f"at its settings) already fits, so its in-block part has nothing to search for; "
                              f"accepted: a budget below {alone:.4f} GFLOPs, or merge={inputs} alone")
    ScheduleSearch(lambda s: encoder_gflops(arch_cfg, spec.num_frames, _reducer(name, s, merge_args)),
                   vision_dims(arch_cfg).num_tokens(spec.num_frames), arch_cfg.vision.depth, budget)
    return budget, unreduced


def _schedule_free(cfg: DictConfig) -> DictConfig:
    """The config with ``merge.r`` made resolvable (the search chooses the schedule; a merge whose
    config has no default, ``r: ???``, must not stop the session from being prepared)."""
    cfg = cfg.copy()
    OmegaConf.set_struct(cfg, False)
    cfg.merge = {"name": "none", "r": None}
    return cfg


def summary(record: dict) -> dict:
    """The one-line JSON the command prints last."""
    main = record["reducers"][0]
    best = main["best"]
    return {
        "budget_gflops": record["budget_gflops"], "evaluated": record["evaluated"], "metric": record["metric"],
        "undefined": sum(r.get("undefined", 0) for r in record["reducers"]),
        "reducer": main["reducer"],
        "best": {"merge_r": best["merge_r"], "gflops_paper": best["gflops_paper"], "fidelity": best["fidelity"]},
        "override": f"merge={main['reducer']} merge.r=[{','.join(str(r) for r in best['merge_r'])}]",
        "compare": {r["reducer"]: ({"merge_r": r["best"]["merge_r"], "gflops_paper": r["best"]["gflops_paper"],
                                    "fidelity": r["best"]["fidelity"]} if "best" in r else {"error": r["error"]})
                    for r in record["reducers"][1:]},
        "record": str(Path(record["run_dir"]) / "tune.json"),
    }


def main() -> None:
    """``python -m vidtldr.tune budget.gflops=X`` (or ``budget.ratio=``): Pareto table, then one JSON line."""
    from vidtldr.entry import record_command
    from vidtldr.analysis.search.tune_report import format_table

    record_command("tune", "vidtldr.tune", run_tune, format_table, summary)
