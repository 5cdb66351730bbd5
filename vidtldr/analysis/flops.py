"""FLOPs of one configuration: the UMT vision encoder in the paper's convention and in true FLOPs,
plus what the paper leaves out (text encoder per query, ITM re-ranking, QA decoding).

The counts are analytic (:mod:`vidtldr.cost`: rules in ``cost.ledger``, the encoder in
``cost.vision``, the text side in ``cost.text``) and, with ``trace=true``, cross-checked against
fvcore's trace of the real modules (:mod:`vidtldr.analysis.flops_trace`). The configuration is
resolved by the evaluation's own resolver (``vidtldr.run.runspec.resolve_model``), so the same
overrides are accepted and refused::

    python -m vidtldr.flops model=umt_b dataset=msrvtt merge=vidtldr   # published schedule
    python -m vidtldr.flops model=umt_l dataset=didemo merge.r=[800,100]
    python -m vidtldr.flops model=umt_b merge=none eval.num_frames=4
    python -m vidtldr.flops table=true          # regenerates results/flops.md (vidtldr.analysis.flops_table)

The last line printed is one JSON object (``gflops_paper``, ``gflops_true``, ``tokens_per_layer``...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from vidtldr.analysis.flops_reference import paper_gflops
from vidtldr.analysis.flops_trace import compare, traced_extra_costs, traced_vision_cost
from vidtldr.config_utils import CONFIG_DIR
from vidtldr.cost.ledger import round1
from vidtldr.cost.text import TextDims, itm_rerank_cost, qa_cost, text_dims, text_query_cost
from vidtldr.cost.vision import reducer_cost, vision_dims
from vidtldr.errors import cli_guard
from vidtldr.reduce.schedule import VIDTLDR_PRESETS, parse_schedule
from vidtldr.run.runspec import ModelSpec, resolve_model


def published_reference(spec: ModelSpec, depth: int) -> Optional[dict]:
    """The paper's number for this configuration, where one exists: a published vid-TLDR schedule
    at 12 frames (and the Figure-1 value for UMT-B), or a no-reduction baseline."""
    ref = paper_gflops()
    key = (spec.dataset, spec.backbone)
    if spec.merge == "vidtldr" and spec.num_frames == 12 and key in ref.schedules \
            and list(spec.schedule) == parse_schedule(VIDTLDR_PRESETS[key], depth):
        return {"gflops": ref.schedules[key],
                "figure1": ref.figure1.get(spec.dataset) if spec.backbone == "umt_b" else None}
    if spec.merge == "none" and (spec.backbone, spec.num_frames) in ref.baselines:
        return {"gflops": ref.baselines[(spec.backbone, spec.num_frames)]}
    return None


def extra_costs(text: TextDims, spec: ModelSpec, vision_tokens: int) -> dict:
    """Per-query costs outside the vision encoder, both conventions, in GFLOPs."""
    out = {}
    if spec.task == "qa":
        qa = qa_cost(text, vision_tokens, spec.k_test, spec.max_q_len, spec.max_a_len)
        out["qa_per_question"] = {"gflops_paper": qa.paper_total / 1e9, "gflops_true": qa.true_total / 1e9,
                                  "k_test": spec.k_test, "max_q_len": spec.max_q_len, "max_a_len": spec.max_a_len}
    else:
        tq = text_query_cost(text, spec.max_txt_l)
        itm = itm_rerank_cost(text, spec.max_txt_l, vision_tokens, spec.k_test)
        out["text_per_query"] = {"gflops_paper": tq.paper_total / 1e9, "gflops_true": tq.true_total / 1e9,
                                 "max_txt_l": spec.max_txt_l}
        out["itm_rerank_per_query"] = {"gflops_paper": itm.paper_total / 1e9, "gflops_true": itm.true_total / 1e9,
                                       "k_test": spec.k_test, "vision_tokens": vision_tokens}
    return out


def count(spec: ModelSpec, trace: bool = True, attention: str = "fused", batch: int = 1) -> dict:
    """The full report of one configuration (the JSON the command line prints last)."""
    cfg = spec.umt_config()
    vision, text = vision_dims(cfg), text_dims(cfg)
    cost = reducer_cost(vision, spec.num_frames, spec.reducer(), batch=batch)
    report = {
        "model": spec.model, "arch": spec.arch, "backbone": spec.backbone, "dataset": spec.dataset, "task": spec.task,
        "merge": spec.merge, "r": list(spec.schedule), "num_frames": spec.num_frames, "batch": batch,
        "input_shape": [batch, spec.num_frames, 3, vision.img_size, vision.img_size],
        "tokens_per_layer": cost.tokens_per_layer,
        "removed_per_layer": cost.removed,
        "gflops_paper": round(cost.gflops_paper, 4),
        "gflops_paper_1dp": round1(cost.gflops_paper),
        "gflops_true": round(cost.gflops_true, 4),
        "paper_by_op_g": {k: round(v / 1e9, 4) for k, v in sorted(cost.paper_by_op.items())},
        "true_by_op_g": {k: round(v / 1e9, 4) for k, v in sorted(cost.true_by_op.items())},
        "paper_per_block_g": [round(v / 1e9, 4) for v in cost.paper_per_block],
        "extra": extra_costs(text, spec, cost.tokens_per_layer[-1]),
    }
    published = published_reference(spec, vision.depth)
    if published:
        report["published"] = published
    if trace:
        traced = traced_vision_cost(cfg.vision, spec.reducer(), attention=attention, batch=batch)
        check = compare(cost, traced)
        report["traced"] = {"gflops_paper": round(traced.total / 1e9, 4), "attention": attention,
                            "exact": check["exact"], "diff_by_op": check["diff_by_op"]}
        for name, total in traced_extra_costs(cfg, spec, cost.tokens_per_layer[-1]).items():
            entry = report["extra"][name]
            entry["traced_gflops_paper"] = total / 1e9
            entry["traced_exact"] = abs(total - entry["gflops_paper"] * 1e9) < 0.5
    return report


def format_report(rep: dict) -> str:
    lines = []
    sched = rep["r"]
    nz = len(sched) - next((i for i, e in enumerate(reversed(sched)) if e), len(sched))
    shown = "none" if not any(sched) else "[" + ", ".join(str(e) for e in sched[:nz]) + (", 0, ..." if nz < len(sched) else "") + "]"
    lines.append(f"model={rep['model']} ({rep['arch']})  dataset={rep['dataset']} ({rep['task']})  "
                 f"merge={rep['merge']}  r={shown}")
    lines.append(f"input {rep['input_shape']}  tokens: " + " -> ".join(
        str(t) for i, t in enumerate(rep["tokens_per_layer"]) if i == 0 or t != rep["tokens_per_layer"][i - 1]))
    lines.append("")
    lines.append(f"vision encoder, paper convention (fvcore, multiply-add = 1): {rep['gflops_paper']:.2f} GFLOPs "
                 f"-> {rep['gflops_paper_1dp']:.1f}")
    lines.append("  " + "  ".join(f"{k} {v:.2f}" for k, v in rep["paper_by_op_g"].items()))
    if "published" in rep:
        pub = rep["published"]
        ok = "matches" if pub["gflops"] == rep["gflops_paper_1dp"] else "DIFFERS"
        extra = ""
        if pub.get("figure1") is not None and pub["figure1"] != pub["gflops"]:
            extra = f"; the paper's Figure 1 prints {pub['figure1']:.1f} (differs from its own schedule)"
        lines.append(f"  published recount {pub['gflops']:.1f}: {ok}{extra}")
    if "traced" in rep:
        tr = rep["traced"]
        lines.append(f"  traced with fvcore ({tr['attention']} attention): {tr['gflops_paper']:.2f} "
                     + ("(analytic == traced, exact)" if tr["exact"] else f"MISMATCH {tr['diff_by_op']}"))
    lines.append(f"vision encoder, true FLOPs (multiply-add = 2, elementwise counted): {rep['gflops_true']:.2f} GFLOPs")
    lines.append("")
    lines.append("per block (paper convention): block  tokens_in  removed  GFLOPs")
    for i, g in enumerate(rep["paper_per_block_g"]):
        lines.append(f"  {i:5d}  {rep['tokens_per_layer'][i]:9d}  {rep['removed_per_layer'][i]:7d}  {g:7.2f}")
    lines.append(f"  final tokens {rep['tokens_per_layer'][-1]}")
    lines.append("")
    lines.append("not in the paper's count (per query, GFLOPs paper / true):")
    for name, e in rep["extra"].items():
        detail = ", ".join(f"{k}={v}" for k, v in e.items() if not k.startswith(("gflops", "traced")))
        if "traced_exact" in e:
            detail += ", traced " + ("exact" if e["traced_exact"] else f"MISMATCH {e['traced_gflops_paper']:.3f}")
        lines.append(f"  {name:22s} {e['gflops_paper']:9.2f} / {e['gflops_true']:9.2f}   ({detail})")
    return "\n".join(lines)


def main_cli(cfg) -> dict:
    if cfg.get("table"):
        from vidtldr.analysis.flops_table import write_table

        return write_table(Path(cfg.table_out), Path(cfg.table_json) if cfg.get("table_json") else None,
                           trace=bool(cfg.trace))
    rep = count(resolve_model(cfg), trace=bool(cfg.trace), attention=str(cfg.attention), batch=int(cfg.batch))
    print(format_report(rep))
    print(json.dumps(rep))
    return rep


def main() -> None:
    import hydra

    @hydra.main(config_path=str(CONFIG_DIR), config_name="flops", version_base=None)
    def _run(cfg) -> None:
        with cli_guard("vidtldr.flops"):
            main_cli(cfg)

    _run()


if __name__ == "__main__":
    main()
