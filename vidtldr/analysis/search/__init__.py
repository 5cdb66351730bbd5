"""Schedules chosen without labels: how far a reduced model agrees with the unreduced one
(:mod:`~vidtldr.analysis.search.agreement`, pure) and the search of schedules under a GFLOPs budget
(:mod:`~vidtldr.analysis.search.schedules`, pure). The commands on top of them are
:mod:`~vidtldr.analysis.search.fidelity` and :mod:`~vidtldr.analysis.search.tune` (imported on use,
they load the model stack)."""

from vidtldr.analysis.search.agreement import ranking_agreement
from vidtldr.analysis.search.schedules import BudgetError, Candidate, ScheduleSearch, pareto, resolve_budget

__all__ = ["BudgetError", "Candidate", "ScheduleSearch", "pareto", "ranking_agreement", "resolve_budget"]
