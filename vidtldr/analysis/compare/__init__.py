"""Every registered reducer at one GFLOPs budget: :func:`fit_all` fits each one's schedule to the
budget (no model needed), :func:`run_compare` evaluates them through the evaluation's runner and
cache; :mod:`~vidtldr.analysis.compare.report` writes the table and the plot."""

from vidtldr.analysis.compare.command import fit_all, main, run_compare, summary

__all__ = ["fit_all", "main", "run_compare", "summary"]
