"""Measurement primitives of the encoder benchmark (:mod:`vidtldr.analysis.bench.command`): one timed
forward, peak memory and kernel counters of one forward, the split of vid-TLDR's reduction overhead
into scoring and matching + merging, and a profiler breakdown by operator kind."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Iterator, Optional

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
    """A vision encoder (:meth:`vidtldr.models.family.BackboneFamily.build_vision`) plus how to run it
    on one device."""

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


def build_encoder(spec, device: str, autocast: bool, seed: int = 0) -> Encoder:
    """The spec's vision encoder alone, built by the assembler (the text side is not timed, and not
    built: the memory peaks count the encoder only)."""
    from vidtldr.run.assemble import build_vision

    return Encoder(model=build_vision(spec, seed=seed, device=device), device=device, autocast=autocast)


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


@contextlib.contextmanager
def peak_memory(device: str) -> Iterator[dict]:
    """The one memory probe of the benchmarks: yields a dict that gets, when the block ends,
    ``peak_mb`` (high-water mark above the level at the start), ``peak_total_mb`` (the high-water
    mark itself) and ``method``. CUDA: ``max_memory_allocated``; CPU: the kernel's resident-set
    high-water mark (VmHWM) after resetting it, both None where it cannot be reset (the mark would
    be the whole process's life)."""
    import torch

    out: dict = {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        yield out
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        out.update(peak_mb=(peak - before) / 2 ** 20, peak_total_mb=peak / 2 ** 20,
                   method="cuda max_memory_allocated")
        return
    _release_free_heap()
    reset = _reset_cpu_peak()
    before = _rss_kb("VmRSS")
    yield out
    peak = _rss_kb("VmHWM")
    if not reset or peak is None or before is None:
        out.update(peak_mb=None, peak_total_mb=None, method="unavailable")
    else:
        out.update(peak_mb=(peak - before) / 1024, peak_total_mb=peak / 1024, method="VmHWM - VmRSS")


def peak_memory_mb(enc: Encoder, videos, reducer, mode: str) -> dict:
    """High-water mark of one forward above what was resident before it."""
    enc.model.attention = mode
    with peak_memory(enc.device) as mem:
        enc.forward(videos, reducer)
    return {"peak_mem_mb": mem["peak_mb"], "peak_total_mb": mem["peak_total_mb"], "mem_method": mem["method"]}


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
        self.exact_decisions = getattr(inner, "exact_decisions", True)
        self.scoring_layers: list[int] = []

    def reducing_blocks(self, num_tokens):
        return self.inner.reducing_blocks(num_tokens)

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

    def reduce_input(self, x, state, aux):
        """Input-level reducers (rlt) decide before block 0: timed with the rest of the reduction."""
        reduce_input = getattr(self.inner, "reduce_input", None)
        if reduce_input is None:
            return x
        _sync(self.device)
        start = time.perf_counter()
        out = reduce_input(x, state, aux)
        _sync(self.device)
        self.seconds += time.perf_counter() - start
        return out


class _NoScoreReducer(_TimedReducer):
    """The same token schedule and merge, but asks the attention for nothing (so every block runs
    the plain fused kernel) and scores every token 1. Used only to time the attention without
    scoring at the same token counts; its outputs are meaningless."""

    def needs(self, layer, num_tokens):
        return None

    def reducing_blocks(self, num_tokens):
        return []  # no exact prefix either: the plain kernel everywhere

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
