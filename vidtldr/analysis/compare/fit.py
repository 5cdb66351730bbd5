"""Every reducer's schedule fitted to one GFLOPs budget (pure: costs are analytic, nothing runs).

A reducer is fitted with :mod:`vidtldr.analysis.search`'s fitting: one family of schedules with a
strength parameter (``shape``: vid-TLDR's published schedule for the dataset and backbone, scaled;
``constant``: the same r in every block, ToMe's protocol) is moved to the least reduction within
the budget. The family's steps are coarse (one step of the strength moves several blocks), so the
fit is then closed in: one block at a time, the block whose removal can be lowered the most while
the budget still holds (the one that brings the cost closest to the budget) gives tokens back,
until no block can. A budget the family cannot reach at all (its shape leaves blocks untouched) is
closed in from the most aggressive schedule (every block removing half its tokens) instead. An
input-level reducer (one count, before block 0) is fitted by bisection on that count. A fit is
accepted only within :data:`TOLERANCE` below the budget; otherwise the reducer is reported as not
fitted, with the reason (never silently dropped or moved above it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from vidtldr.analysis.search.schedules import BudgetError, ScheduleSearch, as_override
from vidtldr.errors import ConfigError

#: A fitted schedule may cost at most this share less than the budget (never more than it).
TOLERANCE = 0.05
FAMILIES = ("shape", "constant")


@dataclass
class Fit:
    """One reducer's schedule at the budget, or why there is none."""

    reducer: str
    merge_r: Optional[list[int]] = None
    gflops: Optional[float] = None
    error: Optional[str] = None
    note: Optional[str] = None   # how the fit departs from the family, when it does

    @property
    def fitted(self) -> bool:
        return self.error is None


def family(kind: str, depth: int, shape: Optional[Sequence[int]]) -> tuple[Callable[[int], list], str]:
    """(``make(p)``: the family's schedule at strength ``p``, what the family is, in words).

    ``shape`` without a published schedule falls back to ``constant`` (said in the description)."""
    if kind not in FAMILIES:
        raise ConfigError(f"compare.schedule={kind!r}; expected one of {', '.join(FAMILIES)}")
    if kind == "shape" and shape and max(shape) > 0:
        top = max(shape)
        weights = [x / top for x in shape]
        return (lambda p: [int(round(p * w)) for w in weights]), f"vid-TLDR's published shape {list(shape)}, scaled"
    why = "" if kind == "constant" else " (no published schedule to take the shape from)"
    return (lambda p: [p] * depth), "constant r in every block" + why


def close_in(search: ScheduleSearch, schedule: tuple) -> tuple:
    """``schedule`` (within the budget) with blocks giving tokens back while the budget holds: each
    round lowers the one block whose refit costs the most (closest to the budget), until none moves."""
    while True:
        best, best_cost = schedule, search.cost(schedule)
        for block in range(search.depth):
            if schedule[block] == 0:
                continue
            got = search.refit_block(schedule, block, 0, schedule[block])
            if got is not None and got != schedule and search.cost(got) > best_cost:
                best, best_cost = got, search.cost(got)
        if best == schedule:
            return schedule
        schedule = best


def fit_reducer(name: str, cost: Callable[[tuple], float], num_tokens: int, depth: int, budget: float,
                make: Callable[[int], list]) -> Fit:
    """The fitted schedule of reducer ``name`` (``cost``: canonical schedule -> GFLOPs)."""
    try:
        search = ScheduleSearch(cost, num_tokens, depth, budget)
    except BudgetError as exc:
        return Fit(name, error=str(exc))
    start, note = search.fit_family(make, num_tokens), None
    if start is None:  # the family's shape cannot reach the budget; a schedule over more blocks can
        start, note = search.most_aggressive(), "the family cannot reach the budget: closed in from every block removing half"
    schedule = close_in(search, start)
    gflops = search.cost(schedule)
    if gflops < (1 - TOLERANCE) * budget:
        return Fit(name, merge_r=as_override(schedule), gflops=gflops,
                   error=f"the closest schedule within the budget, {as_override(schedule)}, costs {gflops:.4f} "
                         f"GFLOPs, {100 * (1 - gflops / budget):.1f}% below {budget:.4f} (more than "
                         f"{100 * TOLERANCE:.0f}%)")
    return Fit(name, merge_r=as_override(schedule), gflops=gflops, note=note)


def fit_input_level(name: str, cost: Callable[[int], float], budget: float, most: int) -> Fit:
    """An input-level reducer (``input_level = True``: removes tokens once, before block 0, its count
    the first entry of ``merge.r``): the fewest tokens in ``[1, most]`` whose cost fits the budget
    (bisection: the cost falls as more tokens are removed), under the same tolerance."""
    if most < 1 or cost(most) > budget:
        return Fit(name, error=f"removing the most it can before block 0 ({most} tokens) still costs "
                               f"{cost(max(most, 0)):.4f} GFLOPs, above the budget of {budget:.4f}")
    lo, hi = 1, most
    while lo < hi:
        mid = (lo + hi) // 2
        if cost(mid) <= budget:
            hi = mid
        else:
            lo = mid + 1
    gflops = cost(lo)
    if gflops < (1 - TOLERANCE) * budget:
        return Fit(name, merge_r=[lo], gflops=gflops,
                   error=f"the closest count within the budget, {lo} tokens before block 0, costs {gflops:.4f} "
                         f"GFLOPs, {100 * (1 - gflops / budget):.1f}% below {budget:.4f} (more than "
                         f"{100 * TOLERANCE:.0f}%)")
    return Fit(name, merge_r=[lo], gflops=gflops, note="input-level: merge.r = tokens removed before block 0")
