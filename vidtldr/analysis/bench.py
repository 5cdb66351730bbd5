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
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from vidtldr.errors import ConfigError, cli_guard
from vidtldr.analysis.flops import (CONFIG_DIR, RunSpec, _atomic_write, compose, dims_from_config, reducer_cost,
                           resolve_spec)
from vidtldr.reduce.schedule import parse_schedule

#: Seconds per clip of the *official* code on the project's 2-core CPU, as reported in the issue
#: (UMT-B, 12 x 224^2, random weights): a reference point besides this package's materialized mode.
ISSUE_REFERENCE_S = {("umt_b", "msrvtt", 12): {"none": 7.8, "vidtldr": 4.7}}

#: Targets from the issue (UMT-B, 12 x 224^2, CPU). Reported, never asserted by tests.
TARGETS = {
    "vidtldr_fused_vs_vidtldr_materialized": 2.0,
    "none_fused_vs_none_materialized": 1.8,
    "vidtldr_fused_vs_none_fused": 1.53,
    "reduction_overhead_pct_max": 5.0,
}


# ----------------------------------------------------------------------------------------------
# Measurement primitives
# ----------------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _rss_kb(field_name: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_heap() -> None:
    """Return glibc's free heap pages to the kernel, so that the next forward's allocations raise
    the resident set (and its high-water mark) instead of silently reusing pages already counted
    as resident by an earlier forward."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@dataclass
class Encoder:
    """A VisionTransformer plus how to run it on one device."""

    model: object
    device: str
    autocast: bool

    def forward(self, videos, reducer):
        import torch

        with torch.inference_mode():
            if self.device.startswith("cuda") and self.autocast:
                with torch.autocast("cuda", dtype=torch.float16):
                    return self.model(videos, reducer=reducer)
            return self.model(videos, reducer=reducer)


def build_encoder(spec: RunSpec, device: str, autocast: bool, seed: int = 0) -> Encoder:
    import torch

    from vidtldr.models.vit import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(spec.umt_config().vision).eval().to(device)
    return Encoder(model=model, device=device, autocast=autocast)


def timed_forward(enc: Encoder, videos, reducer, mode: str, cpu_times: Optional[list] = None) -> tuple[float, object]:
    """Wall time of one forward; the process CPU time is appended to ``cpu_times`` when given
    (on a shared CPU, wall time includes waiting for a core and CPU time does not)."""
    enc.model.attention = mode
    _sync(enc.device)
    cpu0 = time.process_time()
    start = time.perf_counter()
    out = enc.forward(videos, reducer)
    _sync(enc.device)
    wall = time.perf_counter() - start
    if cpu_times is not None:
        cpu_times.append(time.process_time() - cpu0)
    return wall, out


def peak_memory_mb(enc: Encoder, videos, reducer, mode: str) -> dict:
    """High-water mark of one forward above what was resident before it."""
    import torch

    enc.model.attention = mode
    if enc.device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        enc.forward(videos, reducer)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_mem_mb": (peak - before) / 2 ** 20, "peak_total_mb": peak / 2 ** 20,
                "mem_method": "cuda max_memory_allocated"}
    _release_free_heap()
    if not _reset_cpu_peak():
        enc.forward(videos, reducer)
        out = {"peak_mem_mb": None, "peak_total_mb": None, "mem_method": "unavailable"}
    else:
        before = _rss_kb("VmRSS")
        enc.forward(videos, reducer)
        peak = _rss_kb("VmHWM")
        out = {"peak_mem_mb": (peak - before) / 1024, "peak_total_mb": peak / 1024, "mem_method": "VmHWM - VmRSS"}
    return out


def kernel_usage(enc: Encoder, videos, reducer, mode: str) -> dict:
    """Kernel time and minor page faults of one steady-state forward. glibc maps allocations above
    its dynamic mmap threshold (at most 32 MiB), e.g. a materialised T x T attention map, fresh on
    every forward and the kernel zero-fills every page; smaller buffers are recycled."""
    import resource

    enc.model.attention = mode
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    enc.forward(videos, reducer)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"sys_s": usage1.ru_stime - usage0.ru_stime, "minor_faults": usage1.ru_minflt - usage0.ru_minflt}


# ----------------------------------------------------------------------------------------------
# Reduction-overhead breakdown
# ----------------------------------------------------------------------------------------------

class _TimedReducer:
    """Delegates to a reducer and accumulates the wall time spent in ``reduce`` (matching and
    merging, plus the saliency normalisation)."""

    def __init__(self, inner, device: str):
        self.inner = inner
        self.device = device
        self.seconds = 0.0
        self.schedule = inner.schedule
        self.name = inner.name
        self.scoring_layers: list[int] = []

    def needs(self, layer, num_tokens):
        need = self.inner.needs(layer, num_tokens)
        if need is not None:
            self.scoring_layers.append(layer)
        return need

    def reduce(self, x, layer, state, aux):
        _sync(self.device)
        start = time.perf_counter()
        out = self.inner.reduce(x, layer, state, aux)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        return out


class _NoScoreReducer(_TimedReducer):
    """The same token schedule and merge, but asks the attention for nothing (so every block runs
    the plain fused kernel) and scores every token 1. Used only to time the attention without
    scoring at the same token counts; its outputs are meaningless."""

    def needs(self, layer, num_tokens):
        return None

    def reduce(self, x, layer, state, aux):
        import torch

        if self.inner.needs(layer, x.shape[1]) == "neg_entropy":
            aux = {"neg_entropy": torch.arange(x.shape[1], dtype=torch.float32, device=x.device)
                   .view(1, -1, 1).expand(x.shape[0], -1, -1)}
        return super().reduce(x, layer, state, aux)


def _attention_times(enc: Encoder, videos, reducer, mode: str) -> tuple[list[float], float]:
    """Per-block attention wall time (forward hooks) and the total forward time."""
    blocks = enc.model.encoder.blocks
    times = [0.0] * len(blocks)
    starts = {}
    handles = []
    for i, blk in enumerate(blocks):
        def pre(_m, _a, i=i):
            _sync(enc.device)
            starts[i] = time.perf_counter()

        def post(_m, _a, _o, i=i):
            _sync(enc.device)
            times[i] += time.perf_counter() - starts[i]

        handles.append(blk.attn.register_forward_pre_hook(pre))
        handles.append(blk.attn.register_forward_hook(post))
    try:
        total, _ = timed_forward(enc, videos, reducer, mode)
    finally:
        for h in handles:
            h.remove()
    return times, total


def reduction_overhead(enc: Encoder, videos, reducer, repeats: int = 3) -> dict:
    """Scoring + matching + merging time of a vid-TLDR forward (fused execution), as a share of it.

    scoring = attention time at the scoring blocks minus the same blocks' attention time when
    nothing is asked (same token counts, same size bias); matching + merging = time in ``reduce``.
    The two instrumented forwards alternate ``repeats`` times and every quantity is the minimum over
    repeats: background load only ever adds time, so minima compare like with like."""
    full_attn, plain_attn, matching, totals, layers = [], [], [], [], []
    for _ in range(max(1, repeats)):
        full = _TimedReducer(reducer, enc.device)
        t_full, total = _attention_times(enc, videos, full, "fused")
        plain = _NoScoreReducer(reducer, enc.device)
        t_plain, _ = _attention_times(enc, videos, plain, "fused")
        layers = sorted(set(full.scoring_layers))
        full_attn.append(t_full)
        plain_attn.append(t_plain)
        matching.append(full.seconds)
        totals.append(total)
    per_layer = [{"block": i, "attn_scoring_s": min(t[i] for t in full_attn),
                  "attn_plain_s": min(t[i] for t in plain_attn)} for i in layers]
    sc = sum(x["attn_scoring_s"] - x["attn_plain_s"] for x in per_layer)
    mm, enc_s = min(matching), min(totals)
    return {"encoder_s": enc_s, "scoring_s": sc, "match_merge_s": mm, "overhead_s": sc + mm,
            "overhead_pct": 100.0 * (sc + mm) / enc_s, "repeats": max(1, repeats), "scoring_layers": per_layer}


_OP_CATEGORY = {
    "aten::addmm": "linear", "aten::mm": "linear",
    "aten::bmm": "attention", "aten::_softmax": "attention", "aten::softmax": "attention",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
    "aten::_scaled_dot_product_flash_attention": "attention",
    "aten::_scaled_dot_product_efficient_attention": "attention",
    "aten::_scaled_dot_product_cudnn_attention": "attention",
    "aten::mkldnn_convolution": "conv", "aten::convolution": "conv", "aten::_convolution": "conv",
}


def profile_breakdown(enc: Encoder, videos, reducer, mode: str) -> dict:
    """Self time of one profiled forward, grouped: linear layers, attention kernels (q.k^T and
    A.v matmuls, softmax, fused SDPA; vid-TLDR's similarity matmul is a batched matmul too and lands
    here), conv, everything else (norms, GELU, copies, merging)."""
    from torch.profiler import ProfilerActivity, profile

    enc.model.attention = mode
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if enc.device.startswith("cuda") else [])
    with profile(activities=activities) as prof:
        enc.forward(videos, reducer)
        _sync(enc.device)
    groups: dict = {}
    for ev in prof.key_averages():
        cat = _OP_CATEGORY.get(ev.key, "other")
        us = ev.self_device_time_total if enc.device.startswith("cuda") else ev.self_cpu_time_total
        groups[cat] = groups.get(cat, 0.0) + us / 1e6
    return {k: round(v, 4) for k, v in sorted(groups.items())}


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


def plan_executions(spec: RunSpec, reducers: list[str], attentions: list[str], baseline_r) -> tuple[list, list]:
    """(executions, skipped) for the requested merges x attention modes."""
    from vidtldr.reduce import build_reducer, reducer_class

    for name in reducers:
        reducer_class(name)  # an unknown name is a ConfigError listing the registered ones
    depth = spec.umt_config().vision.depth
    vid_schedule = list(spec.schedule) if spec.merge == "vidtldr" else None
    if vid_schedule is None and "vidtldr" in reducers:
        vid_schedule = parse_schedule("published", depth, dataset=spec.dataset, backbone=spec.backbone)
    execs, skipped = [], []
    for name in reducers:
        if name == "none":
            sched, source = [], "-"
        elif name == "vidtldr":
            sched, source = vid_schedule, "merge.r" if spec.merge == "vidtldr" else "published"
        else:
            try:
                if baseline_r == "vidtldr":
                    if vid_schedule is None:
                        raise ConfigError("no vid-TLDR schedule to copy")
                    sched, source = list(vid_schedule), "same as vid-TLDR"
                else:
                    sched = parse_schedule(baseline_r, depth, dataset=spec.dataset, backbone=spec.backbone,
                                           reducer=name)
                    source = str(baseline_r) if isinstance(baseline_r, str) else "baseline_r"
            except ConfigError as exc:
                skipped.append({"merge": name, "why": str(exc)})
                continue
        kwargs = spec.merge_kwargs if name == spec.merge else {}

        def factory(name=name, sched=sched, kwargs=kwargs):
            return None if name == "none" else build_reducer(name, list(sched), **kwargs)

        for mode in attentions:
            execs.append(Execution(merge=name, attention=mode, schedule=list(sched), reducer_factory=factory,
                                   schedule_source=source))
    return execs, skipped


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch.cuda.is_available() is False (CPU build or no GPU)")
    if device != "cpu" and not device.startswith("cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def _load() -> Optional[list]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_bench(spec: RunSpec, *, reducers: list[str], attentions: list[str], baseline_r="vidtldr",
              repeats: int = 5, warmup: int = 1, batch: int = 1, device: str = "cpu", autocast: bool = True,
              seed: int = 0, breakdown: bool = True, check_outputs: bool = True, profile: bool = False,
              log: Callable[[str], None] = lambda m: None) -> dict:
    import torch

    for m in attentions:
        if m not in ("fused", "materialized"):
            raise ConfigError(f"attention modes are fused and materialized, got {m!r}")
    enc = build_encoder(spec, device, autocast, seed)
    cfg = enc.model.cfg
    vision_dims, _ = dims_from_config(spec.umt_config())
    gen = torch.Generator().manual_seed(seed)
    videos = torch.randn(batch, spec.num_frames, 3, cfg.img_size, cfg.img_size, generator=gen).to(device)
    execs, skipped = plan_executions(spec, reducers, attentions, baseline_r)
    if not execs:
        raise ConfigError("nothing to measure: every requested reducer was skipped: "
                          + "; ".join(f"{s['merge']}: {s['why']}" for s in skipped))
    load_before = _load()
    outputs, memory = {}, {}
    # Warm-up + memory + outputs for the equality check, one execution at a time.
    for ex in execs:
        for w in range(max(1, warmup)):
            if w == 0:
                memory[(ex.merge, ex.attention)] = peak_memory_mb(enc, videos, ex.reducer_factory(), ex.attention)
            _, out = timed_forward(enc, videos, ex.reducer_factory(), ex.attention)
        # after the warm-up (the heap is warm again after the memory pass released it)
        memory[(ex.merge, ex.attention)].update(kernel_usage(enc, videos, ex.reducer_factory(), ex.attention))
        outputs[(ex.merge, ex.attention)] = (out.tokens.float().cpu(), list(out.state.token_counts))
        log(f"warm: {ex.merge}/{ex.attention}")
    # Interleaved timed repeats.
    for rep in range(repeats):
        for ex in execs:
            t, _ = timed_forward(enc, videos, ex.reducer_factory(), ex.attention, ex.cpu_times)
            ex.times.append(t)
        log(f"repeat {rep + 1}/{repeats}: " + ", ".join(f"{e.merge}/{e.attention} {e.times[-1]:.2f}s" for e in execs))
    load_after = _load()
    rows = []
    for ex in execs:
        med = statistics.median(ex.times)
        cost = reducer_cost(vision_dims, spec.num_frames, ex.reducer_factory())
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
        rows.append(row)
    _add_ratios(rows)
    result = {"rows": rows, "skipped": skipped, "summary": summarise(rows)}
    if check_outputs:
        result["output_check"] = _output_check(outputs, half=device.startswith("cuda") and autocast)
    if breakdown and any(e.merge == "vidtldr" and e.attention == "fused" for e in execs):
        vid = next(e for e in execs if e.merge == "vidtldr")
        result["overhead"] = reduction_overhead(enc, videos, vid.reducer_factory(), repeats=min(max(repeats, 1), 5))
        result["summary"]["reduction_overhead_pct"] = round(result["overhead"]["overhead_pct"], 2)
    if profile:
        prof = {}
        for ex in (e for e in execs if e.merge in ("none", "vidtldr")):
            # the less disturbed of two profiled forwards (other jobs only ever add time)
            runs = [profile_breakdown(enc, videos, ex.reducer_factory(), ex.attention) for _ in range(2)]
            prof[f"{ex.merge}/{ex.attention}"] = min(runs, key=lambda g: sum(g.values()))
            log(f"profiled {ex.merge}/{ex.attention}: {prof[f'{ex.merge}/{ex.attention}']}")
        result["profile_s"] = prof
    result["environment"] = environment(device, load_before, load_after)
    result["targets"] = check_targets(result["summary"]) if spec.model != "tiny" else {}
    return result


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
    import torch

    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "machine": platform.machine(), "processor": _cpu_name(), "loadavg_before": load_before,
           "loadavg_after": load_after, "python": platform.python_version()}
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ----------------------------------------------------------------------------------------------
# results/bench.json + results/bench.md
# ----------------------------------------------------------------------------------------------

def merge_results(path: Path, result: dict) -> dict:
    """Replace the runs with the same (model, dataset, device, batch) in ``path`` by ``result``."""
    try:
        db = json.loads(path.read_text())
    except (OSError, ValueError):
        db = {"runs": []}
    key = _run_key(result)
    db["runs"] = [r for r in db.get("runs", []) if _run_key(r) != key] + [result]
    # by model and dataset; the machine's full thread count (the issue's setting) first
    db["runs"].sort(key=_display_order)
    return db


def _display_order(run: dict) -> tuple:
    """By model and dataset; the machine's full thread count (the issue's setting) first."""
    key = _run_key(run)
    return (*key[:4], -key[4])


def _run_key(run: dict) -> tuple:
    r0 = run["rows"][0]
    return (r0["model"], r0["dataset"], r0["device"], r0["batch"], run.get("environment", {}).get("threads", 0))


def render_md(db: dict) -> str:
    L = ["# Encoder benchmark: merged tokens vs wall-clock time", "",
         "Generated by `make bench` / `python -m vidtldr.analysis.bench` from `results/bench.json`; do not edit by hand.",
         "Random weights (speed does not depend on them), batch 1, the dataset's frame count at 224x224. "
         "`fused` = the project's execution (SDPA wherever no attention map is needed; query-blocked attention "
         "with the entropy at vid-TLDR's scoring blocks); `materialized` = the official execution (the full "
         "softmax map in every block). Medians of interleaved repeats in one process. Peak memory = "
         "high-water mark of one forward above what was resident before it (weights excluded).", "",
         "**Noise**: the CPU runs were taken on a 2-core machine shared with other developers' jobs "
         "(load averages below); absolute times are noisy, ratios from interleaved repeats less so.", ""]
    for run in sorted(db.get("runs", []), key=_display_order):
        r0, env = run["rows"][0], run.get("environment", {})
        threads = env.get("threads", "?")
        where = env.get("gpu") or f"{env.get('processor', '?')}, {threads} thread{'' if threads == 1 else 's'}"
        L.append(f"## {r0['model']} / {r0['dataset']} ({r0['num_frames']} frames), {r0['device']}: {where}")
        L.append("")
        L.append(f"torch {env.get('torch')}; load average before / after: {env.get('loadavg_before')} / "
                 f"{env.get('loadavg_after')}; repeats: {len(r0['times_s'])}.")
        L.append("")
        L.append("| merge | attention | r (first blocks) | final tokens | GFLOPs | s/clip (median) | clips/s | "
                 "x vs none/fused | x vs none/materialized | s/clip (fastest) | CPU s/clip | peak mem (MB) |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in run["rows"]:
            mem = "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb']:.0f}"
            L.append(f"| {r['merge']} | {r['attention']} | {','.join(map(str, r['r'])) or '-'}"
                     f"{'' if r['merge'] in ('none', 'vidtldr') else ' (' + r['schedule_source'] + ')'} | "
                     f"{r['final_tokens']} | {r['gflops_paper']:.1f} | {r['s_per_clip']:.3f} | {r['clips_per_s']:.3f} | "
                     f"{r.get('speedup_vs_none_fused', '-')} | {r.get('speedup_vs_none_materialized', '-')} | "
                     f"{r.get('best_s_per_clip', float('nan')):.3f} | {r.get('cpu_s_per_clip', float('nan')):.3f} | {mem} |")
        L.append("")
        s_ = run.get("summary", {})
        if run.get("targets"):
            L.append("| target | measured (medians) | fastest repeats | CPU time | required | met (medians) |")
            L.append("|---|---|---|---|---|---|")
            names = {"vidtldr_fused_vs_vidtldr_materialized": "vid-TLDR fused vs vid-TLDR materialized (x)",
                     "none_fused_vs_none_materialized": "none fused vs none materialized (x)",
                     "vidtldr_fused_vs_none_fused": "vid-TLDR fused vs none fused (x)",
                     "reduction_overhead_pct_max": "reduction overhead (% of encoder time)"}
            for k, t in run["targets"].items():
                req = f"<= {t['target']}" if k.endswith("_max") else f">= {t['target']}"
                met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
                best = s_.get(k + "_best", "-") if not k.endswith("_max") else "-"
                cpu = s_.get(k + "_cpu", "-") if not k.endswith("_max") else "-"
                L.append(f"| {names.get(k, k)} | {t['measured']} | {best} | {cpu} | {req} | {met} |")
            L.append("")
        s = run.get("summary", {})
        if s.get("vidtldr_materialized_vs_none_materialized") is not None:
            L.append(f"Official execution, vid-TLDR vs none: {s['vidtldr_materialized_vs_none_materialized']}x "
                     f"(GFLOPs ratio {s.get('gflops_ratio_none_over_vidtldr')}x); project execution vs official "
                     f"baseline: {s.get('vidtldr_fused_vs_none_materialized')}x.")
            L.append("")
        ref = ISSUE_REFERENCE_S.get((r0["model"], r0["dataset"], r0["num_frames"]))
        by = {(r["merge"], r["attention"]): r for r in run["rows"]}
        if ref and r0["device"] == "cpu" and env.get("threads") == env.get("cpu_count") \
                and ("none", "fused") in by and ("vidtldr", "fused") in by:
            nf, vf = by[("none", "fused")]["s_per_clip"], by[("vidtldr", "fused")]["s_per_clip"]
            text = (f"Against the issue's timings of the official code on this CPU ({ref['none']} s/clip without "
                    f"reduction, {ref['vidtldr']} s with the MSRVTT schedule): none/fused is {ref['none'] / nf:.2f}x "
                    f"faster than official none; vid-TLDR/fused is {ref['vidtldr'] / vf:.2f}x faster than official "
                    f"vid-TLDR and {ref['none'] / vf:.2f}x faster than official none.")
            if ("none", "materialized") in by and ("vidtldr", "materialized") in by:
                text += (f" This package's materialized execution takes {by[('none', 'materialized')]['s_per_clip']:.2f}"
                         f" / {by[('vidtldr', 'materialized')]['s_per_clip']:.2f} s here.")
            L.append(text)
            L.append("")
        ov = run.get("overhead")
        if ov:
            L.append(f"Reduction overhead (vid-TLDR, fused; minima over {ov.get('repeats', 1)} alternating instrumented "
                     f"forward pairs, encoder {ov['encoder_s']:.3f} s): "
                     f"scoring {ov['scoring_s']:.3f} s + matching/merging {ov['match_merge_s']:.3f} s = "
                     f"{ov['overhead_pct']:.1f}% of encoder time. Scoring blocks (attention with entropy vs the "
                     "same block without): " + "; ".join(
                         f"block {x['block']}: {x['attn_scoring_s']:.3f} vs {x['attn_plain_s']:.3f} s"
                         for x in ov["scoring_layers"]) + ".")
            L.append("")
        prof = run.get("profile_s")
        if prof:
            cats = sorted({c for v in prof.values() for c in v})
            L.append("Where the time goes (one profiled forward each, operator self time in s; the profiler "
                     "adds overhead, compare within the table):")
            L.append("")
            L.append("| execution | " + " | ".join(cats) + " | total |")
            L.append("|---|" + "---|" * (len(cats) + 1))
            for name, v in prof.items():
                L.append(f"| {name} | " + " | ".join(f"{v.get(c, 0.0):.3f}" for c in cats)
                         + f" | {sum(v.values()):.3f} |")
            L.append("")
        faults = [r for r in run["rows"] if r.get("minor_faults") is not None]
        if faults:
            L.append("Kernel time and minor page faults of one steady-state forward (fresh mappings are zero-filled by "
                     "the kernel): "
                     + "; ".join(f"{r['merge']}/{r['attention']} {r['sys_s']:.2f} s, {r['minor_faults']:,} faults"
                                 for r in faults) + ".")
            L.append("")
        L.extend(_analysis(run))
        oc = run.get("output_check")
        if oc:
            L.append("Fused vs materialized outputs: " + "; ".join(
                f"{m}: {'agree' if c['agree'] else 'DIFFER'} (max |diff| {c['max_abs_diff']:.2e}, same token "
                f"counts: {c['same_token_counts']})" for m, c in oc.items()) + ".")
            L.append("")
        if run.get("skipped"):
            L.append("Not measured: " + "; ".join(f"{s['merge']} ({s['why']})" for s in run["skipped"]) + ".")
            L.append("")
        if run.get("data"):
            d = run["data"]
            L.append(f"Decode + transform (tiny synthetic clips, {d['num_frames']} frames): {d['clips_per_s']:.2f} clips/s.")
            L.append("")
        if run.get("notes"):
            L.extend(run["notes"])
            L.append("")
    extra = db.get("notes")
    if extra:
        L.append("## Notes")
        L.append("")
        L.extend(extra)
        L.append("")
    return "\n".join(L)


def _analysis(run: dict) -> list:
    """Why the ratios are what they are, computed from the run's own profile and rows."""
    prof, by = run.get("profile_s") or {}, {(r["merge"], r["attention"]): r for r in run["rows"]}
    out = []
    nf, nm = prof.get("none/fused"), prof.get("none/materialized")
    if nf and nm:
        tf, tm = sum(nf.values()), sum(nm.values())
        lin = nf.get("linear", 0.0)
        att = nf.get("attention", 0.0)
        row = by[("none", "fused")]
        rate = row["gmacs_linear"] / lin if lin else float("nan")
        att_rate = row.get("gmacs_attention", 0.0) / att if att else float("nan")
        at_gemm = row.get("gmacs_attention", 0.0) / rate if rate == rate and rate else float("nan")
        bound = tm / (tf - att + at_gemm) if tf - att + at_gemm > 0 else float("nan")
        out.append(f"Bound on none fused vs materialized (profiled forwards): linear layers take {lin:.2f} s of "
                   f"none/fused's {tf:.2f} s ({100 * lin / tf:.0f}%, {rate:.0f} GMAC/s) and are common to both "
                   f"executions; fused attention takes {att:.2f} s ({att_rate:.0f} GMAC/s on its q.k^T and A.v), "
                   f"materialised attention {nm.get('attention', 0.0):.2f} s of none/materialized's {tm:.2f} s. Fused "
                   f"attention running exactly at the linear layers' GEMM rate ({at_gemm:.2f} s) would give "
                   f"{bound:.2f}x.")
    vf, ov = prof.get("vidtldr/fused"), run.get("overhead")
    if ov and ("vidtldr", "materialized") in by and ("vidtldr", "fused") in by:
        f_best, m_best = by[("vidtldr", "fused")]["best_s_per_clip"], by[("vidtldr", "materialized")]["best_s_per_clip"]
        ideal = m_best / max(f_best - ov["scoring_s"], 1e-9)
        out.append(f"vid-TLDR fused vs materialized with free scoring (fastest repeats, scoring overhead "
                   f"{ov['scoring_s']:.3f} s removed): {ideal:.2f}x.")
    if out:
        out.append("")
    return out


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------

def format_rows(result: dict) -> str:
    lines = [f"{'merge':8s} {'attention':12s} {'tokens':>6s} {'GFLOPs':>7s} {'s/clip':>8s} {'clips/s':>8s} "
             f"{'x none/f':>8s} {'x none/m':>8s} {'peak MB':>8s}"]
    for r in result["rows"]:
        mem = "-" if r.get("peak_mem_mb") is None else f"{r['peak_mem_mb']:.0f}"
        lines.append(f"{r['merge']:8s} {r['attention']:12s} {r['final_tokens']:6d} {r['gflops_paper']:7.1f} "
                     f"{r['s_per_clip']:8.3f} {r['clips_per_s']:8.3f} {r.get('speedup_vs_none_fused', '-')!s:>8s} "
                     f"{r.get('speedup_vs_none_materialized', '-')!s:>8s} {mem:>8s}")
    for k, t in result.get("targets", {}).items():
        lines.append(f"target {k}: measured {t['measured']} (target {t['target']}) -> "
                     f"{ {True: 'met', False: 'NOT met', None: 'n/a'}[t['met']] }")
    if "overhead" in result:
        ov = result["overhead"]
        lines.append(f"reduction overhead: scoring {ov['scoring_s']:.3f} s + match/merge {ov['match_merge_s']:.3f} s "
                     f"= {ov['overhead_pct']:.1f}% of {ov['encoder_s']:.3f} s")
    for m, c in result.get("output_check", {}).items():
        lines.append(f"outputs {m}: fused vs materialized {'agree' if c['agree'] else 'DIFFER'} "
                     f"(max |diff| {c['max_abs_diff']:.2e})")
    return "\n".join(lines)


def main_cli(cfg) -> dict:
    import torch
    from omegaconf import OmegaConf

    if cfg.get("render_only"):
        db = json.loads(Path(cfg.out_json).read_text())
        _atomic_write(Path(cfg.out_md), render_md(db))
        print(f"wrote {cfg.out_md} from {cfg.out_json}")
        print(json.dumps({"rows": [r for run in db.get("runs", []) for r in run["rows"]]}))
        return db
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(str(cfg.device))
    spec = resolve_spec(cfg)
    reducers = list(OmegaConf.to_container(cfg.reducers)) if OmegaConf.is_config(cfg.reducers) else list(cfg.reducers)
    attentions = list(cfg.attention) if not isinstance(cfg.attention, str) else [cfg.attention]
    baseline_r = cfg.baseline_r
    if OmegaConf.is_config(baseline_r):
        baseline_r = OmegaConf.to_container(baseline_r)
    if cfg.get("num_frames"):
        spec.num_frames = int(cfg.num_frames)
    result = run_bench(spec, reducers=reducers, attentions=attentions, baseline_r=baseline_r,
                       repeats=int(cfg.repeats), warmup=int(cfg.warmup), batch=int(cfg.batch), device=device,
                       autocast=bool(cfg.autocast), seed=int(cfg.seed), breakdown=bool(cfg.breakdown),
                       check_outputs=bool(cfg.check_outputs), profile=bool(cfg.get("profile", False)),
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    if cfg.get("data"):
        import tempfile

        from vidtldr.data.bench import decode_throughput
        from vidtldr.data.tiny import encode_clips

        with tempfile.TemporaryDirectory(prefix="vidtldr_bench_") as tmp:
            clips = [str(p) for p in encode_clips(tmp)]
            result["data"] = decode_throughput(clips, num_frames=spec.num_frames, repeats=3)
    print(format_rows(result))
    if cfg.get("write"):
        path = Path(cfg.out_json)
        db = merge_results(path, result)
        _atomic_write(path, json.dumps(db, indent=1) + "\n")
        _atomic_write(Path(cfg.out_md), render_md(db))
        print(f"wrote {cfg.out_json} and {cfg.out_md}")
    print(json.dumps(result))
    return result


def main() -> None:
    import hydra

    @hydra.main(config_path=str(CONFIG_DIR), config_name="bench", version_base=None)
    def _run(cfg) -> None:
        with cli_guard("vidtldr.analysis.bench"):
            main_cli(cfg)

    _run()


if __name__ == "__main__":
    main()
