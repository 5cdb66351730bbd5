"""Search of per-block schedules under a GFLOPs budget (pure: a cost function and an objective in,
candidates out; nothing here knows about models or videos).

A schedule is held in canonical form: a tuple of ``depth`` token counts, each the number of tokens
its block *actually* removes (the official rule clamps an entry to ``T // 2`` of the tokens
entering the block), so two spellings of the same execution are one candidate and its cost is that
of ``merge.r=[...]`` given back as is.

Every candidate is fitted to the budget analytically (costs are free): a family with one strength
parameter is moved to the *least* reduction whose cost is within the budget, i.e. as close to the
budget as the family allows. Only these boundary candidates are evaluated on the model, in a fixed
order, and a seeded local search then trades tokens between blocks around the best one, each move
re-fitted to the budget, until the evaluation budget is spent or no move of any step size improves.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

from vidtldr.errors import ConfigError
from vidtldr.reduce.schedule import tokens_to_remove

Schedule = tuple[int, ...]
CostFn = Callable[[Schedule], float]          # canonical schedule -> GFLOPs (paper convention)
Objective = Callable[[Schedule], float]       # canonical schedule -> fidelity (higher is better)


class BudgetError(ConfigError):
    """A GFLOPs budget that no schedule can meet, or a malformed budget."""


class UndefinedObjectiveError(ConfigError):
    """The objective is undefined (NaN) for every candidate evaluated: there is no best to give."""


def defined(value: Optional[float]) -> bool:
    """A fidelity that can be ranked: a finite number (None and NaN mean "undefined here")."""
    return value is not None and math.isfinite(value)


def canonical(entries: Sequence, num_tokens: int, depth: int) -> Schedule:
    """Tokens each block removes when ``entries`` (ints or fractions, shorter lists padded with 0)
    runs from ``num_tokens`` tokens, as a tuple of ``depth`` ints."""
    entries = list(entries) + [0] * (depth - len(entries))
    if len(entries) > depth:
        raise ConfigError(f"schedule has {len(entries)} entries but the encoder has {depth} blocks")
    out, tokens = [], num_tokens
    for entry in entries:
        r = tokens_to_remove(entry, tokens)
        out.append(r)
        tokens -= r
    return tuple(out)


def as_override(schedule: Schedule) -> list[int]:
    """The shortest ``merge.r`` list that runs ``schedule`` (trailing zeros dropped; [] = none)."""
    out = list(schedule)
    while out and out[-1] == 0:
        out.pop()
    return out


@dataclass
class Candidate:
    schedule: Schedule
    family: str
    gflops: float
    fidelity: Optional[float] = None
    metrics: dict = field(default_factory=dict)


@dataclass
class SearchResult:
    budget: float
    best: Candidate
    evaluated: list[Candidate]
    proposed: int                 # boundary candidates the families and moves produced (counted, not run)
    min_gflops: float
    max_gflops: float
    undefined: int = 0            # evaluated candidates whose objective was undefined (excluded from best, Pareto)


class ScheduleSearch:
    """Candidates for one reducer, model geometry and budget.

    ``cost`` maps a canonical schedule to its GFLOPs; ``num_tokens``/``depth`` give the geometry.
    ``budget`` is in the same unit as ``cost``; it must be at least the cost of the most aggressive
    schedule (every block removes ``T // 2``), else :class:`BudgetError` names that minimum.
    """

    def __init__(self, cost: CostFn, num_tokens: int, depth: int, budget: float):
        self._cost_fn = cost
        self._costs: dict[Schedule, float] = {}
        self.num_tokens, self.depth = int(num_tokens), int(depth)
        self.budget = float(budget)
        self.max_gflops = self.cost((0,) * self.depth)
        self.min_gflops = self.cost(self.most_aggressive())
        if not self.budget >= self.min_gflops:
            raise BudgetError(f"budget of {self.budget:.4f} GFLOPs is below what any schedule reaches: the minimum "
                              f"is {self.min_gflops:.4f} GFLOPs (every block removing half its tokens); "
                              f"the unreduced model costs {self.max_gflops:.4f}")

    # ------------------------------------------------------------------ costs and fitting

    def cost(self, schedule: Schedule) -> float:
        if schedule not in self._costs:
            self._costs[schedule] = float(self._cost_fn(schedule))
        return self._costs[schedule]

    def fits(self, schedule: Schedule) -> bool:
        return self.cost(schedule) <= self.budget

    def most_aggressive(self) -> Schedule:
        return canonical([self.num_tokens] * self.depth, self.num_tokens, self.depth)

    def _canon(self, entries: Sequence) -> Schedule:
        return canonical(entries, self.num_tokens, self.depth)

    def fit_family(self, make: Callable[[int], Sequence], high: int) -> Optional[Schedule]:
        """The schedule ``make(p)`` with the smallest ``p`` in ``[0, high]`` that fits the budget.

        Costs fall as ``p`` grows except at the step from no reduction to some (matching has a
        fixed price), so ``p = 0`` is tried alone and ``[1, high]`` is bisected."""
        if self.fits(self._canon(make(0))):
            return self._canon(make(0))
        lo, hi = 1, int(high)
        if hi < 1 or not self.fits(self._canon(make(hi))):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if self.fits(self._canon(make(mid))):
                hi = mid
            else:
                lo = mid + 1
        return self._canon(make(lo))

    def refit_block(self, schedule: Schedule, block: int, low: int, high: int) -> Optional[Schedule]:
        """``schedule`` with block ``block`` set to the smallest value in ``[low, high]`` that fits."""
        def make(p: int) -> list:
            s = list(schedule)
            s[block] = low + p if p <= high - low else high
            return s
        return self.fit_family(make, max(high - low, 0))

    # ------------------------------------------------------------------ families

    def families(self) -> list[Candidate]:
        """Boundary candidates of every family, in evaluation order, without duplicates:
        front-loaded (the published schedules' shape: the first k blocks, geometric decay),
        constant r (ToMe's), constant fraction of the current tokens per block."""
        n0, depth = self.num_tokens, self.depth
        found: list[Candidate] = []

        def add(family: str, schedule: Optional[Schedule]) -> None:
            if schedule is not None and all(c.schedule != schedule for c in found):
                found.append(Candidate(schedule, family, self.cost(schedule)))

        add("constant", self.fit_family(lambda p: [p] * depth, n0 // 2))
        add("fraction", self.fit_family(lambda p: [p / 1000.0] * depth, 499))
        for blocks in range(1, min(4, depth) + 1):
            for decay in ((1.0,) if blocks == 1 else (0.5, 1.0 / 3.0, 1.0)):
                weights = [decay ** i for i in range(blocks)]
                add(f"front{blocks}x{decay:.2g}",
                    self.fit_family(lambda p, w=weights: [int(round(p * x)) for x in w], n0 // 2))
        return found

    # ------------------------------------------------------------------ local search

    def neighbours(self, schedule: Schedule, step: int) -> list[Schedule]:
        """Moves of ``step`` tokens from one block to another, each re-fitted to the budget:
        remove ``step`` more at block i and give back as much as the budget allows at block j, or
        ``step`` fewer at i and take the least needed at j."""
        out: list[Schedule] = []
        for i in range(self.depth):
            for j in range(self.depth):
                if i == j:
                    continue
                more = list(schedule)
                more[i] += step
                more = self._canon(more)
                if more != schedule:
                    got = self.refit_block(more, j, 0, more[j])
                    if got is not None:
                        out.append(got)
                if schedule[i] > 0:
                    fewer = list(schedule)
                    fewer[i] = max(0, fewer[i] - step)
                    fewer = self._canon(fewer)
                    got = self.refit_block(fewer, j, fewer[j], self.num_tokens)
                    if got is not None:
                        out.append(got)
        seen: dict[Schedule, None] = {}
        for s in out:
            if s != schedule:
                seen.setdefault(s, None)
        return list(seen)

    def run(self, objective: Objective, *, max_evals: int, seed: int = 0,
            extra: Iterable[Candidate] = ()) -> SearchResult:
        """Evaluate the family candidates (and ``extra`` ones that fit), then local search.

        ``max_evals`` bounds the calls to ``objective``; ``seed`` fixes the order in which moves
        are tried. Every evaluated candidate fits the budget. A candidate whose objective is NaN is
        kept with fidelity None, counted in ``undefined`` and never chosen; when no candidate is
        defined, :class:`UndefinedObjectiveError`."""
        if max_evals < 1:
            raise ConfigError(f"tune.max_evals must be >= 1, got {max_evals}")
        rng = random.Random(seed)
        evaluated: dict[Schedule, Candidate] = {}
        proposed = 0

        def evaluate(cand: Candidate) -> Optional[Candidate]:
            if cand.schedule in evaluated or len(evaluated) >= max_evals:
                return evaluated.get(cand.schedule)
            assert self.fits(cand.schedule), (cand.schedule, self.cost(cand.schedule), self.budget)
            value = objective(cand.schedule)
            cand.fidelity = float(value) if defined(value) else None
            evaluated[cand.schedule] = cand
            return cand

        starts = [c for c in extra if self.fits(c.schedule)] + self.families()
        proposed += len(starts)
        for cand in starts:
            evaluate(cand)
        if not any(defined(c.fidelity) for c in evaluated.values()):
            raise UndefinedObjectiveError(f"the objective is undefined for all {len(evaluated)} candidates evaluated")
        best = max(evaluated.values(), key=_rank)
        step = max(1, _power_of_two_below(max(best.schedule) or self.num_tokens // 2))
        while len(evaluated) < max_evals and step >= 1:
            moves = self.neighbours(best.schedule, step)
            proposed += len(moves)
            rng.shuffle(moves)
            improved = False
            for schedule in moves:
                if len(evaluated) >= max_evals:
                    break
                if schedule in evaluated:
                    continue
                cand = evaluate(Candidate(schedule, "local", self.cost(schedule)))
                if _rank(cand) > _rank(best):
                    best, improved = cand, True
                    break
            if not improved:
                step //= 2
        return SearchResult(budget=self.budget, best=best, evaluated=list(evaluated.values()),
                            proposed=proposed, min_gflops=self.min_gflops, max_gflops=self.max_gflops,
                            undefined=sum(not defined(c.fidelity) for c in evaluated.values()))


def _rank(cand: Candidate) -> tuple:
    # Higher fidelity first; at equal fidelity the cheaper schedule.
    fid = cand.fidelity if defined(cand.fidelity) else float("-inf")
    return (fid, -cand.gflops)


def _power_of_two_below(n: int) -> int:
    p = 1
    while p * 2 <= n:
        p *= 2
    return p


def pareto(cands: Sequence[Candidate]) -> list[Candidate]:
    """The candidates no other one beats on both axes (fewer or equal GFLOPs and higher or equal
    fidelity, one strictly), sorted by GFLOPs; candidates with an undefined fidelity take no part."""
    done = [c for c in cands if defined(c.fidelity)]
    front = []
    for c in done:
        dominated = any((o.gflops <= c.gflops and o.fidelity >= c.fidelity)
                        and (o.gflops < c.gflops or o.fidelity > c.fidelity) for o in done)
        if not dominated:
            front.append(c)
    return sorted(front, key=lambda c: c.gflops)


def resolve_budget(gflops: Optional[float], ratio: Optional[float], unreduced: float) -> float:
    """The budget in GFLOPs from ``budget.gflops`` or ``budget.ratio`` (of the unreduced cost)."""
    from vidtldr.config_values import number

    if (gflops is None) == (ratio is None):
        raise BudgetError("give exactly one of budget.gflops=<GFLOPs> or budget.ratio=<fraction of the "
                          f"unreduced {unreduced:.4f} GFLOPs>")
    try:
        if ratio is not None:
            return number("budget.ratio", ratio, low=0, low_open=True, high=1) * unreduced
        return number("budget.gflops", gflops, low=0, low_open=True)
    except ConfigError as exc:
        raise BudgetError(str(exc)) from None
