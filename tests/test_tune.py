"""Schedule search under a GFLOPs budget: the pure search (planted objectives, exact budgets)."""

import random

import pytest

from vidtldr.analysis.search import (BudgetError, Candidate, ScheduleSearch, as_override, canonical, pareto,
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
        return -sum(abs(a - b) for a, b in zip(schedule, target))

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
    assert all(cost(c.schedule) == c.gflops for c in res.evaluated)
    # a budget equal to a schedule's cost admits that schedule (<=, not <)
    exact = cost((40, 20, 0, 0))
    res = ScheduleSearch(cost, n0, depth, exact).run(lambda s: -abs(s[0] - 40) - abs(s[1] - 20) - s[2] - s[3],
                                                    max_evals=500)
    assert res.best.schedule == (40, 20, 0, 0) and res.best.gflops == exact


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
