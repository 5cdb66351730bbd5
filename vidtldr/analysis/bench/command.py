"""Wall-clock benchmark: does merging tokens turn into real encoder speed?

For one backbone (random weights, full size) and one dataset's frame count, every execution
``(merge, attention)`` is timed on the *same* weights and the same input:

* ``merge``: ``none``, ``vidtldr`` (the published schedule, or ``merge.r``), and the baselines
  (``tome``, ``random``) where a schedule exists for them (``baseline_r``);
* ``attention``: ``fused`` -- the project's execution (``scaled_dot_product_attention`` wherever no
  map is needed; query-blocked attention with the entropy at vid-TLDR's scoring blocks) -- and
  ``materialized`` -- the official execution, the full softmax map in every block.

Repeats are interleaved round-robin in one process (so drifting background load hits every
execution alike) and summarised by medians. Peak memory is the high-water mark of one forward above
what was resident before it (CPU: ``VmHWM`` after resetting it through ``/proc/self/clear_refs``;
CUDA: ``max_memory_allocated``). One extra instrumented forward splits vid-TLDR's reduction
overhead into scoring (extra attention time at scoring blocks, against the same blocks run without
scoring) and matching + merging (time inside ``reduce``).

The last line printed is one JSON object ``{"rows": [...], ...}``; with ``write=true`` the rows are
merged into ``results/bench.json`` and ``results/bench.md`` is regenerated from it.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vidtldr import jsonio
from vidtldr.analysis.bench.gapped import gapped_executions, gapped_summary
from vidtldr.analysis.bench.measure import (build_encoder, kernel_usage, peak_memory_mb, profile_breakdown,
                                            reduction_overhead, timed_forward)
from vidtldr.analysis.bench.render import format_rows, merge_results, render_md
from vidtldr.cost.vision import reducer_cost, vision_dims
from vidtldr.errors import ConfigError
from vidtldr.provenance import load_average
from vidtldr.files import atomic_write_text
from vidtldr.run.runspec import ModelSpec, resolve_model, with_merge
from vidtldr.run.settings import resolve_settings

#: Targets from the issue (UMT-B, 12 x 224^2, CPU). Reported, never asserted by tests.
TARGETS = {
    "vidtldr_fused_vs_vidtldr_materialized": 2.0,
    "none_fused_vs_none_materialized": 1.8,
    "vidtldr_fused_vs_none_fused": 1.53,
    "reduction_overhead_pct_max": 5.0,
}


# ----------------------------------------------------------------------------------------------
# Executions
# ----------------------------------------------------------------------------------------------

@dataclass
class Execution:
    merge: str
    attention: str
    schedule: list
    reducer_factory: Callable[[], object]
    schedule_source: str = ""
    times: list = field(default_factory=list)
    cpu_times: list = field(default_factory=list)


def plan_executions(cfg, reducers: list[str], attentions: list[str], baseline_r) -> tuple[list, list]:
    """(executions, skipped) for the requested merges x attention modes. Every schedule comes from
    the evaluation's resolver on ``cfg`` with the merge group swapped (:func:`with_merge`), so a
    schedule the evaluation refuses is skipped here with the evaluation's message."""
    from vidtldr.reduce import reducer_class

    for name in reducers:
        reducer_class(name)  # an unknown name is a ConfigError listing the registered ones
    spec = resolve_model(cfg)

    def resolved(name: str, r) -> ModelSpec:
        return spec if name == spec.merge and r == spec.schedule_spec else resolve_model(with_merge(cfg, name, r))

    vid, vid_error = None, None
    if "vidtldr" in reducers or baseline_r == "vidtldr":
        try:
            vid = spec if spec.merge == "vidtldr" else resolved("vidtldr", "published")
        except ConfigError as exc:
            vid_error = str(exc)
    execs, skipped = [], []
    for name in reducers:
        try:
            if name == "none":
                run, source = resolved("none", None), "-"
            elif name == "vidtldr" or baseline_r == "vidtldr":
                if vid is None:
                    raise ConfigError(f"no vid-TLDR schedule: {vid_error}")
                run = vid if name == "vidtldr" else resolved(name, _like_vidtldr(name, list(vid.schedule)))
                source = vidtldr_source(vid) if name == "vidtldr" \
                    else "vid-TLDR's first block, before block 0" if _input_only(name) else "same as vid-TLDR"
            else:
                run = resolved(name, baseline_r)
                source = str(baseline_r) if isinstance(baseline_r, str) else "baseline_r"
        except ConfigError as exc:
            skipped.append({"merge": name, "why": str(exc)})
            continue
        for mode in attentions:
            execs.append(Execution(merge=name, attention=mode, schedule=list(run.schedule), reducer_factory=run.reducer,
                                   schedule_source=source))
    return execs, skipped


def vidtldr_source(vid: ModelSpec) -> str:
    """Where vid-TLDR's benched schedule comes from: the named schedule the resolver settled on
    (``published``, or ``umt_fractions`` where ``published`` resolves to it, VideoMAE's default),
    else ``merge.r`` (a schedule given as numbers)."""
    return vid.schedule_spec if isinstance(vid.schedule_spec, str) else "merge.r"


def _input_only(name: str) -> bool:
    """An input-level reducer on its own (rlt): its merge.r is one count removed before block 0."""
    from vidtldr.reduce import reducer_class

    return "+" not in name and reducer_class(name).input_level


def _like_vidtldr(name: str, schedule: list) -> list:
    """vid-TLDR's schedule for another reducer: the same per-block entries (a composition runs it in
    its in-block part), or for an input-level reducer alone the first block's count, removed before
    block 0 instead (it has no blocks to spread the rest over)."""
    return schedule[:1] if _input_only(name) else schedule


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch.cuda.is_available() is False (CPU build or no GPU)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def run_bench(cfg, *, reducers: list[str], attentions: list[str], baseline_r="vidtldr",
              repeats: int = 5, warmup: int = 1, batch: int = 1, device: str = "cpu", autocast: bool = True,
              seed: int = 0, breakdown: bool = True, check_outputs: bool = True, profile: bool = False,
              gapped_r=None, log: Callable[[str], None] = lambda m: None) -> dict:
    import torch

    for m in attentions:
        if m not in ("fused", "materialized"):
            raise ConfigError(f"attention modes are fused and materialized, got {m!r}")
    spec = resolve_model(cfg)
    enc = build_encoder(spec, device, autocast, seed)
    if breakdown and not hasattr(enc.model, "encoder"):
        raise ConfigError(f"breakdown=true times the attention modules of the UMT ViT; model={spec.model} "
                          f"(family {spec.family}) has none: pass breakdown=false")
    size = enc.model.cfg.img_size
    dims = vision_dims(spec.umt_config())
    gen = torch.Generator().manual_seed(seed)
    videos = torch.randn(batch, spec.num_frames, 3, size, size, generator=gen).to(device)
    execs, skipped = plan_executions(cfg, reducers, attentions, baseline_r)
    execs += [Execution(**kw) for kw in gapped_executions(cfg, gapped_r, attentions)]
    if not execs:
        raise ConfigError("nothing to measure: every requested reducer was skipped: "
                          + "; ".join(f"{s['merge']}: {s['why']}" for s in skipped))
    load_before = load_average()
    outputs, memory = _warm_up(enc, videos, execs, warmup, log)
    # Interleaved timed repeats.
    for rep in range(repeats):
        for ex in execs:
            t, _ = timed_forward(enc, videos, ex.reducer_factory(), ex.attention, ex.cpu_times)
            ex.times.append(t)
        log(f"repeat {rep + 1}/{repeats}: " + ", ".join(f"{e.merge}/{e.attention} {e.times[-1]:.2f}s" for e in execs))
    load_after = load_average()
    rows = [_row(spec, ex, reducer_cost(dims, spec.num_frames, ex.reducer_factory()), memory, batch, device)
            for ex in execs]
    _add_ratios(rows)
    result = {"rows": rows, "skipped": skipped, "summary": summarise(rows)}
    if check_outputs:
        result["output_check"] = _output_check(outputs, half=device.startswith("cuda") and autocast)
    result.update(gapped_summary(rows, outputs, dims.num_tokens(spec.num_frames)))
    if breakdown and any(e.merge == "vidtldr" and e.attention == "fused" for e in execs):
        vid = next(e for e in execs if e.merge == "vidtldr")
        result["overhead"] = reduction_overhead(enc, videos, vid.reducer_factory(), repeats=min(max(repeats, 1), 5))
        result["summary"]["reduction_overhead_pct"] = round(result["overhead"]["overhead_pct"], 2)
    if profile:
        result["profile_s"] = _profiles(enc, videos, execs, log)
    result["environment"] = environment(device, load_before, load_after)
    # the targets are UMT-B's (TARGETS); other models report none
    result["targets"] = check_targets(result["summary"]) if spec.family == "umt" and spec.model != "tiny" else {}
    return result


def _warm_up(enc, videos, execs: list, warmup: int, log) -> tuple[dict, dict]:
    """Warm-up, peak memory and the outputs for the equality check, one execution at a time."""
    outputs, memory = {}, {}
    for ex in execs:
        key = (ex.merge, ex.attention)
        for w in range(max(1, warmup)):
            if w == 0:
                memory[key] = peak_memory_mb(enc, videos, ex.reducer_factory(), ex.attention)
            _, out = timed_forward(enc, videos, ex.reducer_factory(), ex.attention)
        # after the warm-up (the heap is warm again after the memory pass released it)
        memory[key].update(kernel_usage(enc, videos, ex.reducer_factory(), ex.attention))
        outputs[key] = (out.tokens.float().cpu(), list(out.state.token_counts))
        log(f"warm: {ex.merge}/{ex.attention}")
    return outputs, memory


def _row(spec: ModelSpec, ex: Execution, cost, memory: dict, batch: int, device: str) -> dict:
    """One execution's row: its schedule, counted cost, median / fastest / CPU time and memory."""
    med = statistics.median(ex.times)
    row = {"model": spec.model, "dataset": spec.dataset, "num_frames": spec.num_frames, "batch": batch,
           "device": device, "merge": ex.merge, "attention": ex.attention,
           "r": _nonzero_prefix(ex.schedule), "schedule_source": ex.schedule_source,
           "final_tokens": cost.tokens_per_layer[-1],
           "gflops_paper": round(cost.gflops_paper, 2), "gflops_true": round(cost.gflops_true, 2),
           "gmacs_linear": round(cost.paper_by_op.get("linear", 0) / 1e9, 2),
           "gmacs_attention": round(cost.paper_by_op.get("matmul", 0) / 1e9, 2),
           "s_per_clip": med / batch, "clips_per_s": batch / med,
           "best_s_per_clip": min(ex.times) / batch,
           "cpu_s_per_clip": statistics.median(ex.cpu_times) / batch,
           "times_s": [round(t, 4) for t in ex.times]}
    row.update({k: (round(v, 1) if isinstance(v, float) else v) for k, v in memory[(ex.merge, ex.attention)].items()})
    return row


def _profiles(enc, videos, execs: list, log) -> dict:
    """Operator-kind breakdown of the none / vid-TLDR executions: the less disturbed of two
    profiled forwards each (other jobs only ever add time)."""
    prof = {}
    for ex in (e for e in execs if e.merge in ("none", "vidtldr")):
        runs = [profile_breakdown(enc, videos, ex.reducer_factory(), ex.attention) for _ in range(2)]
        prof[f"{ex.merge}/{ex.attention}"] = min(runs, key=lambda g: sum(g.values()))
        log(f"profiled {ex.merge}/{ex.attention}: {prof[f'{ex.merge}/{ex.attention}']}")
    return prof


def _nonzero_prefix(schedule: list) -> list:
    out = list(schedule)
    while out and not out[-1]:
        out.pop()
    return out


def _add_ratios(rows: list) -> None:
    by = {(r["merge"], r["attention"]): r for r in rows}
    base_f = by.get(("none", "fused"))
    base_m = by.get(("none", "materialized"))
    for r in rows:
        if base_f:
            r["speedup_vs_none_fused"] = round(r["clips_per_s"] / base_f["clips_per_s"], 3)
        if base_m:
            r["speedup_vs_none_materialized"] = round(r["clips_per_s"] / base_m["clips_per_s"], 3)
        twin = by.get((r["merge"], "materialized"))
        if twin and r["attention"] == "fused":
            r["speedup_vs_own_materialized"] = round(r["clips_per_s"] / twin["clips_per_s"], 3)


def summarise(rows: list) -> dict:
    by = {(r["merge"], r["attention"]): r for r in rows}

    def ratio(a, b, key="s_per_clip"):
        if a in by and b in by:
            return round(by[b][key] / by[a][key], 3)
        return None

    out = {
        "vidtldr_fused_vs_vidtldr_materialized": ratio(("vidtldr", "fused"), ("vidtldr", "materialized")),
        "none_fused_vs_none_materialized": ratio(("none", "fused"), ("none", "materialized")),
        "vidtldr_fused_vs_none_fused": ratio(("vidtldr", "fused"), ("none", "fused")),
        "vidtldr_materialized_vs_none_materialized": ratio(("vidtldr", "materialized"), ("none", "materialized")),
        "vidtldr_fused_vs_none_materialized": ratio(("vidtldr", "fused"), ("none", "materialized")),
    }
    # The same ratios from the fastest repeat and from CPU time: less sensitive to other jobs.
    for key, suffix in (("best_s_per_clip", "_best"), ("cpu_s_per_clip", "_cpu")):
        for name, (a, b) in (("vidtldr_fused_vs_vidtldr_materialized", (("vidtldr", "fused"), ("vidtldr", "materialized"))),
                             ("none_fused_vs_none_materialized", (("none", "fused"), ("none", "materialized"))),
                             ("vidtldr_fused_vs_none_fused", (("vidtldr", "fused"), ("none", "fused")))):
            out[name + suffix] = ratio(a, b, key)
    if ("none", "fused") in by and ("vidtldr", "fused") in by:
        out["gflops_ratio_none_over_vidtldr"] = round(by[("none", "fused")]["gflops_paper"]
                                                      / by[("vidtldr", "fused")]["gflops_paper"], 3)
    return out


def check_targets(summary: dict) -> dict:
    out = {}
    for key, target in TARGETS.items():
        if key == "reduction_overhead_pct_max":
            got = summary.get("reduction_overhead_pct")
            out[key] = {"target": target, "measured": got, "met": None if got is None else got <= target}
        else:
            got = summary.get(key)
            out[key] = {"target": target, "measured": got, "met": None if got is None else got >= target}
    return out


def _output_check(outputs: dict, half: bool = False) -> dict:
    """Fused vs materialized tokens, per merge: same token counts and max |difference|, within
    rtol 1e-3 / atol 1e-4 in float32 (1e-2 / 1e-2 under fp16 autocast)."""
    import torch

    rtol, atol = (1e-2, 1e-2) if half else (1e-3, 1e-4)

    out = {}
    for (merge, mode), (tokens, counts) in outputs.items():
        if mode != "fused" or (merge, "materialized") not in outputs:
            continue
        other, other_counts = outputs[(merge, "materialized")]
        same_shape = tokens.shape == other.shape
        diff = (tokens - other).abs().max().item() if same_shape else float("inf")
        scale = other.abs().max().item() if same_shape else 1.0
        out[merge] = {"same_token_counts": counts == other_counts, "max_abs_diff": diff,
                      "max_abs_value": scale, "agree": bool(same_shape and counts == other_counts
                                                            and torch.allclose(tokens, other, rtol=rtol, atol=atol)),
                      "rtol": rtol, "atol": atol}
    return out


def environment(device: str, load_before, load_after) -> dict:
    """The shared machine block plus the load averages around the measurement."""
    from vidtldr.provenance import machine

    return {**machine(device), "loadavg_before": load_before, "loadavg_after": load_after}


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def check_options(cfg) -> None:
    """The bench's own counts, before any model is built (``repeats=abc``, ``warmup=-1`` were tracebacks or accepted)."""
    from vidtldr.config_values import check_settings, integer

    check_settings(cfg)
    for key, low in (("repeats", 1), ("warmup", 0), ("seed", 0)):
        integer(key, cfg[key], low=low)
    if cfg.get("threads") is not None:
        integer("threads", cfg.threads, low=1)


def output_paths(cfg) -> tuple[Path, Path]:
    """``<out>/bench.json`` (every run, merged) and ``<out>/bench.md`` (rendered from it)."""
    return Path(str(cfg.out)) / "bench.json", Path(str(cfg.out)) / "bench.md"


def main_cli(cfg) -> dict:
    import torch
    from omegaconf import OmegaConf

    if cfg.get("render_only"):
        out_json, out_md = output_paths(cfg)
        db = json.loads(out_json.read_text())
        atomic_write_text(out_md, render_md(db))
        print(f"wrote {out_md} from {out_json}")
        print(jsonio.dumps({"rows": [r for run in db.get("runs", []) for r in run["rows"]]}))
        return db
    check_options(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(str(cfg.device))
    reducers = list(OmegaConf.to_container(cfg.reducers)) if OmegaConf.is_config(cfg.reducers) else list(cfg.reducers)
    attentions = list(cfg.attentions) if not isinstance(cfg.attentions, str) else [cfg.attentions]
    baseline_r = cfg.baseline_r
    if OmegaConf.is_config(baseline_r):
        baseline_r = OmegaConf.to_container(baseline_r)
    gapped_r = cfg.get("gapped_r")
    if OmegaConf.is_config(gapped_r):
        gapped_r = OmegaConf.to_container(gapped_r)
    result = run_bench(cfg, reducers=reducers, attentions=attentions, baseline_r=baseline_r,
                       repeats=int(cfg.repeats), warmup=int(cfg.warmup), batch=resolve_settings(cfg).batch_size, device=device,
                       autocast=bool(cfg.autocast), seed=int(cfg.seed), breakdown=bool(cfg.breakdown),
                       check_outputs=bool(cfg.check_outputs), profile=bool(cfg.get("profile", False)),
                       gapped_r=gapped_r, log=lambda m: print(m, file=sys.stderr, flush=True))
    if cfg.get("decode"):
        import tempfile

        from vidtldr.data.bench import decode_throughput
        from vidtldr.data.tiny import encode_clips

        with tempfile.TemporaryDirectory(prefix="vidtldr_bench_") as tmp:
            clips = [str(p) for p in encode_clips(tmp)]
            result["data"] = decode_throughput(clips, num_frames=resolve_model(cfg).num_frames, repeats=3)
    print(format_rows(result))
    if cfg.get("write"):
        out_json, out_md = output_paths(cfg)
        db = merge_results(out_json, result)
        atomic_write_text(out_json, jsonio.dumps(db, indent=1) + "\n")
        atomic_write_text(out_md, render_md(db))
        print(f"wrote {out_json} and {out_md}")
    print(jsonio.dumps(result))
    return result


def main() -> None:
    from vidtldr.entry import hydra_entry

    hydra_entry("bench", "vidtldr.bench", main_cli)


if __name__ == "__main__":
    main()
