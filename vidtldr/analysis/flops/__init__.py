"""GFLOPs of one configuration and the published-schedule table: :func:`count` (analytic engine,
optional fvcore cross-check), :func:`paper_gflops` (the paper's numbers) and the command's
:func:`main_cli` / :func:`write_table`."""

from vidtldr.analysis.flops.command import main, main_cli, write_table
from vidtldr.analysis.flops.engine import count, table_rows
from vidtldr.analysis.flops.reference import paper_gflops

__all__ = ["count", "main", "main_cli", "paper_gflops", "table_rows", "write_table"]
