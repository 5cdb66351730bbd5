"""Command line: ``python -m vidtldr.eval [group=option ...] [key=value ...]`` (Hydra).

With no arguments it runs the embedded default: the tiny model (random weights from a seed, no
checkpoint) on generated MSRVTT-format clips with vid-TLDR, writes ``record.json`` into the run
directory and prints the result table. Real runs choose a backbone and a dataset, e.g.::

    python -m vidtldr.eval model=umt_b dataset=msrvtt merge=vidtldr
    python -m vidtldr.eval model=umt_l dataset=didemo merge=vidtldr merge.r=[800,100]
    python -m vidtldr.eval model=umt_b dataset=msrvtt_qa merge=none data.limit=50 hydra.run.dir=runs/try
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from vidtldr.errors import cli_guard

from vidtldr.config_utils import CONFIG_DIR, HYDRA_VERSION_BASE, check_merge_choice
from vidtldr.config_utils import check_run_location  # noqa: F401 (tests import it from here)

SUMMARY = "evaluate a model with a token reducer on a dataset (retrieval or QA); writes record.json"

log = logging.getLogger("vidtldr.eval")


def report(record: dict) -> str:
    """The text printed at the end of a run: what ran, the metrics table, where the record is."""
    from vidtldr.report.render import single_run_table

    ident = record.get("run", {})
    counts = record.get("counts", {})
    lines = [f"\n== {ident.get('dataset')} | model={ident.get('model')} | merge={ident.get('merge')} "
             f"schedule={ident.get('schedule')} =="]
    if record.get("note"):
        lines.append(f"note: {record['note']}")
    if record.get("partial"):
        lines.append(f"PARTIAL run ({record.get('partial_reason')}): {counts}")
    if record.get("repeated"):
        rep = record["repeated"]
        lines.append(f"warning: the annotation lists {rep['extra']} {rep['what']}(s) again: each listing is counted")
    what = (f"{counts.get('videos')} videos, {counts.get('texts')} texts" if "texts" in counts
            else f"{counts.get('videos')} videos x {counts['views_per_video']} views" if "views_per_video" in counts
            else f"{counts.get('questions')} questions over {counts.get('videos')} videos")
    lines.append(f"{what}; tokens per layer {record.get('token_counts')}")
    lines.append(single_run_table(record))
    lines.append(f"record: {Path(record['run_dir']) / 'record.json'}")
    return "\n".join(lines)


@hydra.main(version_base=HYDRA_VERSION_BASE, config_path=str(CONFIG_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from vidtldr.run import distributed as D
    from vidtldr.run.runner import run
    from vidtldr.run.settings import run_device

    with cli_guard("vidtldr.eval"):
        # the resolver's device rule, needed before the resolver runs: a single process unless
        # torchrun / SLURM started several
        ctx = D.init(run_device(cfg))
        try:
            run_dir = HydraConfig.get().runtime.output_dir
            if ctx.enabled:
                # All ranks must share one run directory (scratch features live there); rank 0's wins.
                main_dir = D.broadcast_object(run_dir, ctx)
                if main_dir != run_dir:
                    log.warning("rank %d: Hydra chose %s, using rank 0's %s (pass hydra.run.dir=... to all ranks)",
                                ctx.rank, run_dir, main_dir)
                run_dir = main_dir
            record = run(cfg, run_dir, progress=sys.stderr.isatty() and ctx.is_main, dist_ctx=ctx)
            if cfg.print_table and ctx.is_main:
                print(report(record), flush=True)
        finally:
            D.shutdown(ctx)


def rank_overrides(environ=None) -> list[str]:
    """Hydra overrides for ranks other than 0 of a data-parallel run: they write no ``.hydra/`` copy
    and log to their own file, so rank 0's run directory holds one config and one ``eval.log``."""
    from vidtldr.run.distributed import env_world

    rank, world, _ = env_world() if environ is None else (int(environ.get("RANK", 0)),
                                                          int(environ.get("WORLD_SIZE", 1)), 0)
    if world <= 1 or rank == 0:
        return []
    return ["hydra.output_subdir=null",
            f"hydra.job_logging.handlers.file.filename=${{hydra.runtime.output_dir}}/${{hydra.job.name}}.rank{rank}.log"]


def main() -> None:
    """Console entry point (``python -m vidtldr.eval`` and ``vidtldr-eval``)."""
    with cli_guard("vidtldr.eval"):
        check_run_location(sys.argv[1:])
        check_merge_choice(sys.argv[1:])
    sys.argv.extend(rank_overrides())
    _hydra_main()


if __name__ == "__main__":
    main()
