"""Benchmarks: the encoder (:func:`run_bench`, ``results/bench.md``), the whole evaluation per ITM
engine (:mod:`vidtldr.analysis.bench.evaluation`) and peak memory against the number of clips
(:mod:`vidtldr.analysis.bench.scale`). Only the encoder benchmark's surface is imported here; the
other two are commands of their own."""

from vidtldr.analysis.bench.command import main, main_cli, plan_executions, run_bench
from vidtldr.analysis.bench.render import merge_results, render_md

__all__ = ["main", "main_cli", "merge_results", "plan_executions", "render_md", "run_bench"]
