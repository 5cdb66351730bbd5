"""Random token dropping: the no-information baseline for token reduction.

At each block with a non-zero schedule entry, ``r`` tokens chosen uniformly at random (without
replacement, independently per sample) are removed; survivors keep their order. No sizes are
created, so attention stays unweighted.

Reproducible and independent of batch composition (the project rule: batch size never changes
results). Each sample gets its own generator, seeded from ``(seed, layer, fingerprint)`` where the
fingerprint is a coarse summary of that sample's own tokens at this block. A sample therefore draws
the same tokens whether it is encoded alone, first or last in a batch, or beside any other samples;
two different samples (almost always) draw differently, and identical samples draw identically.

The fingerprint rounds two magnitude statistics to 10 significant bits, so last-bit float noise
between batched and unbatched kernels flips it only when a statistic sits within that noise of a
rounding boundary (about 1e-4 for a 1e-7 relative perturbation); the merging reducers' own argsorts
over similarities have the same kind of sensitivity to near-ties.
"""

from __future__ import annotations

import math

import torch

from vidtldr.reduce.base import ReductionState, Reducer, register_reducer

_MASK64 = (1 << 64) - 1
_MANTISSA_BITS = 10


def _mix64(value: int) -> int:
    """splitmix64 finaliser: spreads nearby integers (layer 3 vs 4, seed 0 vs 1) over 64 bits."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _quantize(value: float) -> int:
    """A float rounded to ``_MANTISSA_BITS`` significant bits, as an integer code (0.0 and -0.0 -> 0).

    NaN and infinity (tokens that overflowed) share code 1, which no finite value has: frexp gives
    them no finite mantissa to round, and a broken sample must still draw, not crash the run."""
    if not math.isfinite(value):
        return 1
    mantissa, exponent = math.frexp(value)  # 0.0 -> (0.0, 0): code 0
    return (round(mantissa * (1 << _MANTISSA_BITS)) << 16) ^ (exponent & 0xFFFF)


def sample_fingerprint(tokens: torch.Tensor) -> int:
    """64-bit code of one sample's tokens ``[T, C]`` that depends on nothing else in the batch.

    Uses the mean absolute value and the mean square (float64 sums of non-negative terms, so no
    cancellation amplifies rounding noise) and the token count."""
    t = tokens.detach().to(torch.float64)
    stats = (float(t.abs().mean()), float(t.square().mean()))
    code = _mix64(tokens.shape[0])
    for s in stats:
        code = _mix64(code ^ _quantize(s))
    return code


def sample_seed(seed: int, layer: int, fingerprint: int) -> int:
    """Generator seed for one (reducer seed, block, sample): a 63-bit mix of the three."""
    code = _mix64(_mix64(int(seed) & _MASK64) ^ int(layer))
    return _mix64(code ^ fingerprint) >> 1  # manual_seed wants a non-negative int64


def random_keep_indices(batch: int, num_tokens: int, r: int, generator: torch.Generator) -> torch.Tensor:
    """Ascending indices ``[B, T - r]`` of the tokens that survive dropping ``r`` at random."""
    if not 0 <= r <= num_tokens:
        raise ValueError(f"cannot drop {r} of {num_tokens} tokens")
    noise = torch.rand(batch, num_tokens, generator=generator)
    keep = noise.argsort(dim=1)[:, r:]
    return keep.sort(dim=1).values


def outside_trace(fn):
    """``fn`` run with the JIT tracer paused: per-sample seeding computes Python integers from the
    tokens, which a trace (fvcore's FLOP count) cannot follow, and drawing indices counts no FLOPs;
    the indices enter a traced graph as constants while the gathers that apply them stay traced."""
    import functools

    @functools.wraps(fn)
    def paused(*args, **kwargs):
        tracing = torch._C._get_tracing_state()
        if tracing is None:
            return fn(*args, **kwargs)
        torch._C._set_tracing_state(None)
        try:
            return fn(*args, **kwargs)
        finally:
            torch._C._set_tracing_state(tracing)

    return paused


def per_sample_keep_indices(x: torch.Tensor, r: int, seed: int, layer: int) -> torch.Tensor:
    """``[B, T - r]`` survivors, each row drawn from its own sample's generator (CPU, then moved)."""
    rows = []
    for tokens in x:
        generator = torch.Generator().manual_seed(sample_seed(seed, layer, sample_fingerprint(tokens)))
        rows.append(random_keep_indices(1, x.shape[1], r, generator))
    return torch.cat(rows, dim=0).to(x.device)


@register_reducer("random")
class RandomDrop(Reducer):
    """Drops ``tokens_to_remove(entry, T)`` random tokens per block (clamped to ``T // 2`` like the
    merging reducers, so schedules are comparable). No similarity, no sizes: survivors are gathered."""

    need = None
    match_on = None
    tracks_sizes = False
    stochastic = True

    def __init__(self, schedule: list | None = None, seed: int = 0):
        super().__init__(schedule)
        self.seed = int(seed)

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed}

    def remove(self, x: torch.Tensor, r: int, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        batch, n_tok, channels = x.shape
        keep = per_sample_keep_indices(x, r, self.seed, layer)
        if state.trace_source:
            if state.source is None:
                state.source = torch.eye(n_tok, device=x.device)[None].expand(batch, n_tok, n_tok)
            state.source = state.source.gather(1, keep[..., None].expand(-1, -1, state.source.shape[-1]))
        if state.size is not None:  # only if another mechanism created sizes; keep them aligned
            state.size = state.size.gather(1, keep[..., None])
        if state.record_trace:
            state.trace.append({"layer": layer, "tokens_in": n_tok, "r_merge": r, "keep_idx": keep})
        return x.gather(1, keep[..., None].expand(-1, -1, channels))
