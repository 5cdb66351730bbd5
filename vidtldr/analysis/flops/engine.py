"""The FLOPs engine: one configuration's report (:func:`count`) and every row of
``results/flops.md`` (:func:`table_rows`), as plain data. Rendering lives in
:mod:`vidtldr.analysis.flops.render`; the command line in :mod:`vidtldr.analysis.flops`."""

from __future__ import annotations

from typing import Optional

from vidtldr.analysis.flops.reference import paper_gflops
from vidtldr.analysis.flops.trace import compare, traced_extra_costs, traced_vision_cost
from vidtldr.config_utils import compose_config
from vidtldr.cost.ledger import round1
from vidtldr.cost.text import TextDims, text_dims
from vidtldr.cost.vision import backbone_vision_dims, reducer_cost, vision_cost, vision_dims
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


def extra_costs(text: Optional[TextDims], spec: ModelSpec, vision_tokens: int) -> dict:
    """Per-query costs outside the vision encoder, both conventions, in GFLOPs: what the spec's task
    declares (:meth:`vidtldr.tasks.base.Task.query_costs`; none without a text side)."""
    from vidtldr.tasks.base import get_task

    return get_task(spec.task).query_costs(text, spec, vision_tokens) if text is not None else {}


def count(spec: ModelSpec, trace: bool = True, attention: str = "fused", batch: int = 1) -> dict:
    """The full report of one configuration (the JSON the command line prints last)."""
    cfg = spec.arch_config()
    vision = vision_dims(cfg)
    text = text_dims(cfg) if cfg.text is not None else None
    cost = reducer_cost(vision, spec.num_frames, spec.reducer(), batch=batch)
    report = {
        "model": spec.model, "arch": spec.arch, "backbone": spec.backbone, "dataset": spec.dataset, "task": spec.task,
        "merge": spec.merge, "r": list(spec.schedule), **spec.schedule_described(), "num_frames": spec.num_frames, "batch": batch,
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
    if spec.views is not None:  # action recognition: the counts above are per view (VideoMAE's convention)
        report.update(per="view", views=spec.views["views"], views_desc=f"{spec.views['clips']} clips x "
                      f"{spec.views['crops']} crops",
                      gflops_paper_per_video=round(cost.gflops_paper * spec.views["views"], 4))
    published = published_reference(spec, vision.depth)
    if published:
        report["published"] = published
    if trace:
        from vidtldr.run.assemble import build_model

        # the model every tool builds for this spec (its backbone family; seeded random weights)
        model, _ = build_model(spec, cfg, seed=0, attention=attention)
        traced = traced_vision_cost(model, cfg.vision, spec.reducer(), batch=batch)
        check = compare(cost, traced, norms_in_paper=vision.norms_in_paper)
        report["traced"] = {"gflops_paper": round(check["traced"] / 1e9, 4), "attention": attention,
                            "exact": check["exact"], "diff_by_op": check["diff_by_op"]}
        for name, total in (traced_extra_costs(model, spec, cost.tokens_per_layer[-1])
                            if text else {}).items():
            entry = report["extra"][name]
            entry["traced_gflops_paper"] = total / 1e9
            entry["traced_exact"] = abs(total - entry["gflops_paper"] * 1e9) < 0.5
    return report


def _spec(*overrides: str):
    return resolve_model(compose_config(overrides, config_name="flops"))


def table_rows(trace: bool = True, progress=None) -> dict:
    """Every published schedule, the no-reduction baselines, and the ToMe Figure-1 check."""
    rows, baselines = [], []
    for (dataset, backbone) in VIDTLDR_PRESETS:
        spec = _spec(f"model={backbone}", f"dataset={dataset}", "merge=vidtldr")
        rep = count(spec, trace=trace)
        if progress:
            progress(f"{dataset}/{backbone}: {rep['gflops_paper']:.2f}")
        rows.append(rep)
    for backbone in ("umt_b", "umt_l"):
        for dataset in ("msrvtt", "msrvtt_zs"):
            spec = _spec(f"model={backbone}", f"dataset={dataset}", "merge=none")
            rep = count(spec, trace=trace)
            if progress:
                progress(f"baseline {backbone} {spec.num_frames} frames: {rep['gflops_paper']:.2f}")
            baselines.append(rep)
    from vidtldr.cost.vision import ReducerTraits
    from vidtldr.reduce.schedule import TOME_PRESETS
    from vidtldr.reduce.tome import ToMe

    # ToMe proper matches on head-mean keys; the paper's Figure 1 looks counted with a full-width
    # (hidden-state) similarity, as vid-TLDR's matcher has.
    on_hidden = ReducerTraits(need=None, match_on="hidden", tracks_sizes=True)
    vision = backbone_vision_dims("umt_b16")

    def gflops(r: int, reducer) -> float:
        return vision_cost(vision, 12, [r] * vision.depth, reducer=reducer).gflops_paper

    tome = []
    for dataset, g in paper_gflops().figure1_tome.items():
        preset = TOME_PRESETS.get(dataset)
        tome.append({
            "dataset": dataset, "figure1": g, "preset_r": preset,
            "keys_metric": round(gflops(preset, ToMe), 2) if preset else None,
            "hidden_metric": round(gflops(preset, on_hidden), 2) if preset else None,
            "constant_r_fits_hidden": [r for r in range(1, 200) if round1(gflops(r, on_hidden)) == g],
            "constant_r_fits_keys": [r for r in range(1, 200) if round1(gflops(r, ToMe)) == g],
        })
    return {"schedules": rows, "baselines": baselines, "tome_figure1": tome}
