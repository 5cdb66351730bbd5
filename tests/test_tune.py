"""Schedule search under a GFLOPs budget: the pure search (planted objectives, exact budgets)."""

import random

import pytest

from vidtldr.analysis.search import tune_report
from vidtldr.analysis.search.schedules import (BudgetError, Candidate, ScheduleSearch, as_override, canonical, pareto,
                                     resolve_budget)
from vidtldr.cost.vision import reducer_cost, vision_dims
from vidtldr.models.config import load_architecture
from vidtldr.reduce import build_reducer


def _tiny_cost(reducer="vidtldr"):
    cfg = load_architecture("tiny", task="retrieval", num_frames=4)
    dims = vision_dims(cfg)

    def cost(schedule):
        red = build_reducer(reducer, list(schedule))
        return reducer_cost(dims, 4, red).gflops_paper

    return cost, dims.num_tokens(4), dims.depth


def test_canonical_clamps_like_the_model_and_override_round_trips():
    # 196 tokens: 150 -> clamped to 98; then 98 tokens, fraction 0.5 -> 49; then 49 -> 24 (clamp)
    assert canonical([150, 0.5, 30], 196, 4) == (98, 49, 24, 0)
    assert as_override((98, 49, 24, 0)) == [98, 49, 24]
    assert as_override((0, 0, 0, 0)) == []
    assert canonical(as_override((5, 0, 7, 0)), 196, 4) == (5, 0, 7, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_optimum_is_found(seed):
    cost, n0, depth = _tiny_cost()
    rng = random.Random(seed)
    target = canonical([rng.randint(1, 40) for _ in range(depth)], n0, depth)
    budget = cost(target)
    calls = []

    def fake_fidelity(schedule):  # maximal (0) exactly at the planted schedule
        calls.append(schedule)
        return -sum(abs(a - b) for a, b in zip(schedule, target, strict=True))

    res = ScheduleSearch(cost, n0, depth, budget).run(fake_fidelity, max_evals=1000, seed=seed)
    assert res.best.schedule == target
    assert res.best.fidelity == 0
    assert len(calls) == len(res.evaluated) == len(set(calls))  # each candidate evaluated once


def test_budget_is_respected_exactly_and_evaluations_are_bounded():
    cost, n0, depth = _tiny_cost()
    budget = 0.6 * cost((0,) * depth) + 0.25 * cost(canonical([n0] * depth, n0, depth))
    search = ScheduleSearch(cost, n0, depth, budget)
    res = search.run(lambda s: -max(s), max_evals=15, seed=0)  # prefers spreading the removal
    assert len(res.evaluated) == 15
    assert all(c.gflops <= budget for c in res.evaluated)
    assert n0 == 4 * (224 // 32) ** 2 == 196  # tiny: 4 frames of 7 x 7 patches, no CLS token
    for c in res.evaluated:  # every candidate is a schedule the model runs as written: at most half
        entering = 196       # of the tokens entering a block are removed there
        for r in c.schedule:
            assert 0 <= r <= entering // 2, c.schedule
            entering -= r
    # a budget equal to a schedule's cost admits that schedule (<=, not <)
    exact = cost((40, 20, 0, 0))
    dims = vision_dims(load_architecture("tiny", task="retrieval", num_frames=4))
    counted = reducer_cost(dims, 4, build_reducer("vidtldr", [40, 20, 0, 0])).tokens_per_layer
    assert counted == [196, 156, 136, 136, 136]  # 196 - 40, then - 20
    res = ScheduleSearch(cost, n0, depth, exact).run(lambda s: -abs(s[0] - 40) - abs(s[1] - 20) - s[2] - s[3],
                                                    max_evals=500)
    assert res.best.schedule == (40, 20, 0, 0) and res.best.gflops == exact
    assert all(c.gflops <= exact for c in res.evaluated)


def test_families_sit_on_the_budget():
    cost, n0, depth = _tiny_cost()
    budget = 0.8 * cost((0,) * depth)
    search = ScheduleSearch(cost, n0, depth, budget)
    fams = search.families()
    names = {c.family for c in fams}
    assert {"constant", "fraction"} <= names and any(n.startswith("front") for n in names)
    assert all(c.gflops <= budget for c in fams)
    # each family's least reduction that fits: one token fewer breaks the budget
    single = next(c for c in fams if c.family == "front1x1")
    assert single.schedule[1:] == (0,) * (depth - 1)
    assert cost((single.schedule[0] - 1,) + (0,) * (depth - 1)) > budget
    constant = next(c for c in fams if c.family == "constant")
    assert len(set(constant.schedule)) == 1
    r = constant.schedule[0]
    assert cost((r - 1,) * depth) > budget >= cost((r,) * depth)


def test_same_seed_same_search():
    cost, n0, depth = _tiny_cost()
    budget = 0.75 * cost((0,) * depth)
    obj = lambda s: -abs(s[0] - 30) - abs(s[2] - 10) - 0.5 * s[1]  # noqa: E731
    a = ScheduleSearch(cost, n0, depth, budget).run(obj, max_evals=25, seed=4)
    b = ScheduleSearch(cost, n0, depth, budget).run(obj, max_evals=25, seed=4)
    assert [c.schedule for c in a.evaluated] == [c.schedule for c in b.evaluated]


def test_budget_below_every_schedule_names_the_minimum():
    cost, n0, depth = _tiny_cost()
    minimum = cost(canonical([n0] * depth, n0, depth))
    with pytest.raises(BudgetError, match=f"minimum is {minimum:.4f} GFLOPs"):
        ScheduleSearch(cost, n0, depth, minimum * 0.99)
    ScheduleSearch(cost, n0, depth, minimum)  # exactly the minimum is reachable


def test_resolve_budget():
    assert resolve_budget(None, 0.5, 10.0) == 5.0
    assert resolve_budget(3.0, None, 10.0) == 3.0
    for bad in ((None, None), (1.0, 0.5), (None, 0.0), (None, 1.5), (-1.0, None)):
        with pytest.raises(BudgetError):
            resolve_budget(*bad, 10.0)


def test_pareto_front():
    cands = [Candidate((1,), "a", 1.0, 0.5), Candidate((2,), "b", 2.0, 0.9), Candidate((3,), "c", 2.5, 0.8),
             Candidate((4,), "d", 0.5, 0.1), Candidate((5,), "e", 1.0, 0.4)]
    assert [c.family for c in pareto(cands)] == ["d", "a", "b"]


def test_a_schedule_beaten_only_on_gflops_at_equal_fidelity_is_off_the_front():
    # "b" is as faithful as "a" and costs more: dominated. "a" and "a2" tie on both axes: neither beats the other.
    cands = [Candidate((2,), "b", 2.0, 0.5), Candidate((1,), "a", 1.0, 0.5), Candidate((5,), "a2", 1.0, 0.5),
             Candidate((3,), "c", 3.0, 0.9), Candidate((4,), "d", 3.5, 0.9)]
    assert [c.family for c in pareto(cands)] == ["a", "a2", "c"]
    # what pareto.csv / pareto.md mark
    record = {"reducers": [{"reducer": "vidtldr", "best": {"merge_r": [3]},
                            "candidates": [{"merge_r": list(c.schedule), "family": c.family, "gflops_paper": c.gflops,
                                            "fidelity": c.fidelity} for c in cands]}]}
    marks = {r["family"]: r["pareto"] for r in tune_report.rows(record)}
    assert marks == {"a": "yes", "a2": "yes", "b": "", "c": "yes", "d": ""}


# ----------------------------------------------------------------------------- the command, tiny model

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from _eval_helpers import make_cfg  # noqa: E402
from conftest import ROOT  # noqa: E402

from vidtldr.analysis.search.tune import run_tune, summary  # noqa: E402
from vidtldr.config_utils import compose_config  # noqa: E402
from vidtldr.errors import ConfigError  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("tune_cache")


def _cfg(cache, *overrides):
    return make_cfg(cache, *overrides, config_name="tune")


@pytest.fixture(scope="module")
def tuned(cache, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tune_run")
    record = run_tune(_cfg(cache, "budget.ratio=0.8", "tune.max_evals=6", "tune.compare=[tome,repshift]",
                           "tune.compare_evals=2"), run_dir)
    return run_dir, record


def test_tune_record_outputs_and_budget(tuned):
    run_dir, record = tuned
    line = summary(record)
    budget = line["budget_gflops"]
    assert budget == pytest.approx(0.8 * record["unreduced_gflops"])
    assert line["evaluated"] == 6 + 2 + 2 + 1  # vid-TLDR search, two compared reducers, the published reference
    assert line["best"]["gflops_paper"] <= budget
    for run in record["reducers"]:
        assert all(c["gflops_paper"] <= budget for c in run["candidates"])
        assert run["best"]["fidelity"] == max(c["fidelity"] for c in run["candidates"])
    assert [r["reducer"] for r in record["reducers"]] == ["vidtldr", "tome", "repshift"]
    assert line["override"] == f"merge=vidtldr merge.r=[{','.join(map(str, line['best']['merge_r']))}]"
    for name in ("tune.json", "pareto.md", "pareto.csv", "tune.png", "tune.svg"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "tune.png").read_bytes()[:4] == b"\x89PNG"
    csv_lines = (run_dir / "pareto.csv").read_text().splitlines()
    assert csv_lines[0].startswith("reducer,family,merge_r,gflops_paper,fidelity")
    assert len(csv_lines) == 1 + 6 + 2 + 2 + 1
    assert sum(line.count("BEST") for line in csv_lines) == 3


def test_winning_schedule_pasted_into_flops_and_eval_gives_its_gflops(tuned, cache, tmp_path):
    from vidtldr.analysis.flops.command import main_cli
    from vidtldr.run.runner import run

    _, record = tuned
    best = summary(record)["best"]
    override = f"merge.r=[{','.join(map(str, best['merge_r']))}]"
    rep = main_cli(compose_config(["model=tiny", override, "trace=false"], config_name="flops"))
    ev = run(make_cfg(cache, override), tmp_path / "eval", progress=False)
    # the tokens each block keeps, worked out from the pasted schedule: 196 entering block 0 (4 frames
    # of 7 x 7 patches), then r_i fewer after block i (absolute counts; missing blocks remove none)
    removed = list(best["merge_r"]) + [0] * (4 - len(best["merge_r"]))
    assert sum(removed) > 0  # the 0.8 budget forces some reduction
    hand = [196]
    for r in removed:
        hand.append(hand[-1] - r)
    assert rep["tokens_per_layer"] == hand and ev["gflops"]["tokens_per_layer_counted"] == hand
    assert ev["run"]["schedule_spec"] == best["merge_r"]
    # and the two commands report the GFLOPs the search ranked it by
    assert rep["gflops_paper"] == round(best["gflops_paper"], 4)
    assert ev["gflops"]["paper"] == round(best["gflops_paper"], 3)


def test_budget_below_every_schedule_is_a_clear_error(cache, tmp_path):
    with pytest.raises(ConfigError, match=r"below what any schedule reaches: the minimum is 0\.0\d+ GFLOPs"):
        run_tune(_cfg(cache, "budget.gflops=0.01", "tune.compare=[]"), tmp_path)
    with pytest.raises(ConfigError, match="exactly one of budget.gflops"):
        run_tune(_cfg(cache, "tune.compare=[]"), tmp_path)
    with pytest.raises(ConfigError, match="tune.metric"):
        run_tune(_cfg(cache, "budget.ratio=0.5", "tune.metric=recall"), tmp_path)


def test_merge_none_lists_every_registered_reducer_even_a_new_one(tmp_path, monkeypatch):
    # before: "choose merge=vidtldr (or tome, random, repshift)", four names written by hand
    from vidtldr.reduce.base import REDUCERS, Reducer, discover_reducers

    discover_reducers()  # the package's own reducers first, then one more
    fresh = type("FreshForTune", (Reducer,), {"need": None, "match_on": None, "tracks_sizes": False})
    monkeypatch.setitem(REDUCERS, "fresh_for_tune", fresh)
    with pytest.raises(ConfigError) as err:
        run_tune(_cfg(tmp_path, "merge=none", "budget.ratio=0.5"), tmp_path / "run")
    message = str(err.value)
    assert message.startswith("merge=none has no schedule to tune; accepted: merge=<reducer> with a reducer of ")
    listed = message.rsplit(" of ", 1)[1].split(", ")
    assert {"fresh_for_tune", "pitome", "tome", "vidtldr", "visionzip"} <= set(listed)
    assert "none" not in listed and "rlt" not in listed and listed == sorted(listed)  # rlt: no per-block schedule
    assert not (tmp_path / "run").exists()


def test_a_composition_whose_input_part_alone_fits_is_refused(tmp_path):
    # before: a search that settled on no in-block reduction and printed merge=rlt+vidtldr merge.r=[],
    # which eval and flops refuse ("removes no tokens")
    from vidtldr.analysis.flops.engine import count
    from vidtldr.run.runspec import resolve_model

    rlt_alone = count(resolve_model(compose_config(["model=tiny", "merge=rlt"], config_name="flops")),
                      trace=False)["gflops_paper"]  # rlt at its own settings, counted by flops
    with pytest.raises(ConfigError) as err:
        run_tune(_cfg(tmp_path, "merge=rlt+vidtldr", "budget.ratio=0.8", "tune.compare=[]"), tmp_path / "run")
    assert str(err.value) == (f"budget.ratio=0.8: merge=rlt+vidtldr's input-level part alone ({rlt_alone:.4f} GFLOPs, "
                              f"merge=rlt at its settings) already fits, so its in-block part has nothing to search "
                              f"for; accepted: a budget below {rlt_alone:.4f} GFLOPs, or merge=rlt alone")
    assert not (tmp_path / "run").exists()


def test_an_input_level_reducer_is_refused_with_where_to_fit_it(tmp_path):
    # before: a search over four per-block entries of which rlt reads the first only, e.g. [53, 53, 45, 22]
    with pytest.raises(ConfigError) as err:
        run_tune(_cfg(tmp_path, "merge=rlt", "budget.ratio=0.8"), tmp_path / "run")
    assert str(err.value).startswith("merge=rlt removes tokens once, before block 0: it has no per-block schedule "
                                     "to tune; fit its one count to the budget with vidtldr compare "
                                     "compare.reducers=[rlt], compose it (merge=rlt+vidtldr tunes the in-block part)")
    with pytest.raises(ConfigError, match=r"^tune.compare=\[rlt\]: an input-level reducer \(no per-block schedule\) "
                                          "'rlt'; accepted: "):
        run_tune(_cfg(tmp_path, "budget.ratio=0.8", "tune.compare=[rlt]"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_command_line_needs_only_the_budget(cache, tmp_path):
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "vidtldr.tune", "budget.ratio=0.7", f"paths.cache={cache}",
                          f"hydra.run.dir={tmp_path}", "tune.max_evals=3", "tune.compare=[]", "print_table=false"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(line) >= {"budget_gflops", "evaluated", "best"}
    assert set(line["best"]) >= {"merge_r", "gflops_paper", "fidelity"}
    assert line["evaluated"] == 3 + 1 and line["best"]["gflops_paper"] <= line["budget_gflops"]
    bad = subprocess.run([sys.executable, "-m", "vidtldr.tune", "budget.gflops=0.001", f"paths.cache={cache}",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "minimum is" in bad.stderr


def test_tuned_zero_shot_schedules_fill_the_zero_shot_rows(tmp_path, monkeypatch):
    from vidtldr.report.plan import ZS_SCHEDULES_ENV, plan, tuned_zero_shot_schedules
    from vidtldr.report.rows import resolve_row_settings, row_settings

    def planned():
        return {p.model: p.overrides for p in plan("zeroshot", backbones=("umt_b", "umt_l"), datasets=("msrvtt",))
                if p.merge == "vidtldr"}

    monkeypatch.delenv(ZS_SCHEDULES_ENV, raising=False)
    default = planned()
    # the fine-tuned [600, 200, 100] as fractions of 2352, 1752, 1552 tokens
    assert default["umt_b"] == ("merge.r=umt_fractions",)
    assert resolve_row_settings("zeroshot", "msrvtt", "umt_b", "vidtldr")["schedule"] == \
        [0.2552, 0.1142, 0.0645] + [0] * 9
    tuned = tmp_path / "zs.json"
    tuned.write_text(json.dumps({"msrvtt/umt_b": [700, 0, 150]}))
    monkeypatch.setenv(ZS_SCHEDULES_ENV, str(tuned))
    assert planned() == {"umt_b": ("merge.r=[700,0,150]",), "umt_l": default["umt_l"]}  # only the listed row
    assert row_settings("zeroshot", "msrvtt", "umt_b", "vidtldr")["schedule"] == [700, 0, 150] + [0] * 9
    for bad in ("[1, 2]", '{"msrvtt": [1]}', '{"msrvtt/umt_b": "x"}', "not json"):
        tuned.write_text(bad)
        with pytest.raises(ConfigError, match=ZS_SCHEDULES_ENV):
            tuned_zero_shot_schedules()
