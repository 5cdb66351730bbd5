"""FLOPs of one configuration: the UMT vision encoder in the paper's convention and in true FLOPs,
plus what the paper leaves out (text encoder per query, ITM re-ranking, QA decoding).

The counts are analytic (:mod:`vidtldr.cost`: rules in ``cost.ledger``, the encoder in
``cost.vision``, the text side in ``cost.text``) and, with ``trace=true``, cross-checked against
fvcore's trace of the real modules (:mod:`vidtldr.analysis.flops.trace`). The configuration is
resolved by the evaluation's own resolver (``vidtldr.run.runspec.resolve_model``), so the same
overrides are accepted and refused::

    python -m vidtldr.flops model=umt_b dataset=msrvtt merge=vidtldr   # published schedule
    python -m vidtldr.flops model=umt_l dataset=didemo merge.r=[800,100]
    python -m vidtldr.flops model=umt_b merge=none eval.num_frames=4
    python -m vidtldr.flops table=true          # regenerates results/flops.md

Engine: :mod:`vidtldr.analysis.flops.engine`; text and Markdown: :mod:`vidtldr.analysis.flops.render`.

The last line printed is one JSON object (``gflops_paper``, ``gflops_true``, ``tokens_per_layer``...).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from vidtldr import jsonio
from vidtldr.analysis.flops.engine import count, table_rows
from vidtldr.analysis.flops.reference import paper_gflops
from vidtldr.analysis.flops.render import format_report, render_table
from vidtldr.files import atomic_write_text
from vidtldr.run.runspec import resolve_model
from vidtldr.run.settings import resolve_settings


def write_table(md_path: Path, json_path: Optional[Path] = None, trace: bool = False) -> dict:
    data = table_rows(trace=trace, progress=lambda m: print(m, file=sys.stderr, flush=True))
    atomic_write_text(md_path, render_table(data, traced=trace))
    if json_path is not None:
        atomic_write_text(json_path, jsonio.dumps(data, indent=1) + "\n")
    ref = paper_gflops()
    n_ok = sum(1 for rep in data["schedules"]
               if rep["gflops_paper_1dp"] == ref.schedules[(rep["dataset"], rep["backbone"])])
    summary = {"table": str(md_path), "schedules": len(data["schedules"]), "schedules_matching": n_ok,
               "baselines_matching": sum(1 for rep in data["baselines"] if rep["gflops_paper_1dp"] ==
                                         ref.baselines[(rep["backbone"], rep["num_frames"])]),
               "traced_exact": all(r.get("traced", {}).get("exact", True)
                                   for r in data["schedules"] + data["baselines"])}
    print(f"wrote {md_path}" + (f" and {json_path}" if json_path else ""))
    print(jsonio.dumps(summary))
    return summary


def main_cli(cfg) -> dict:
    from vidtldr.config_values import check_settings

    check_settings(cfg)
    if cfg.get("table"):
        from vidtldr.config_utils import check_directory_path

        check_directory_path("out", cfg.out, writable=True)  # before the table's minutes of tracing
        out = Path(str(cfg.out))
        return write_table(out / "flops.md", out / "flops.json", trace=bool(cfg.trace))
    settings = resolve_settings(cfg)  # eval.attention and data.batch_size as the evaluation reads them
    rep = count(resolve_model(cfg), trace=bool(cfg.trace), attention=settings.attention, batch=settings.batch_size)
    print(format_report(rep))
    print(jsonio.dumps(rep))
    return rep


def main() -> None:
    from vidtldr.entry import hydra_entry

    hydra_entry("flops", "vidtldr.flops", main_cli)


if __name__ == "__main__":
    main()
