"""Random drop: its seeding (SplitMix64, the per-sample fingerprint), input bounds, and what it leaves
in the reduction state (sizes, provenance, trace) and in the run record (describe)."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from vidtldr.reduce import ReductionState, build_reducer
from vidtldr.reduce.random_drop import (RandomDrop, _mix64, _quantize, random_keep_indices, sample_fingerprint,
                                        sample_seed)

_GOLDEN_GAMMA = 0x9E3779B97F4A7C15  # the generator's state increment (part of the published algorithm)


@pytest.mark.parametrize("seed, outputs", [
    # Published outputs of the reference generator splitmix64.c (S. Vigna), listed e.g. by the
    # Rosetta Code task "Pseudo-random numbers/Splitmix64" (seed 1234567) and in many ports' tests
    # (seed 0); not computed here.
    (1234567, [6457827717110365317, 3203168211198807973, 9817491932198370423, 4593380528125082431,
               16408922859458223821]),
    (0, [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC]),
])
def test_mix64_is_the_splitmix64_reference_generator(seed, outputs):
    # the generator adds the increment to its state, then finalises; _mix64 does both, so output k
    # of a generator seeded with s is _mix64(s + k * increment)
    state = seed
    for want in outputs:
        assert _mix64(state) == want
        state = (state + _GOLDEN_GAMMA) % 2**64


def test_quantize_keeps_ten_significant_bits():
    step = 2.0**-9  # one unit in the 10th significant bit of a value in [1, 2)
    assert _quantize(1.25) == _quantize(1.25 + 0.375 * step) == _quantize(1.25 - 0.375 * step)  # below it: noise
    assert _quantize(1.0) != _quantize(1.0 + step)
    assert _quantize(1.5) != _quantize(1.5 - step)
    # powers of two share their mantissa; the exponent still tells them apart
    codes = {_quantize(2.0**k) for k in range(-20, 21)}
    assert len(codes) == 41
    assert _quantize(0.0) == _quantize(-0.0) != _quantize(5e-324)


def test_fingerprint_reads_values_not_dtype_token_count_or_scale():
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    # the statistics are float64 sums of the values, whatever the tokens' dtype
    assert len({sample_fingerprint(x.to(dtype)) for dtype in (torch.bfloat16, torch.float32, torch.float64)}) == 1
    half = torch.randn(40, 8, generator=torch.Generator().manual_seed(3)).half() * 300  # squares overflow fp16
    assert sample_fingerprint(half) == sample_fingerprint(half.double())
    # the same statistics with twice the tokens, or the same tokens scaled by a power of two, differ
    assert sample_fingerprint(torch.cat([x, x])) != sample_fingerprint(x)
    assert len({sample_fingerprint(x.double() * 2.0**k) for k in range(-4, 5)}) == 9


def test_sample_seed_is_a_manual_seed_that_keeps_its_inputs_apart():
    seeds = [sample_seed(seed, layer, fp) for seed in (0, 1, -1, 2**64 - 1) for layer in (0, 1, 11)
             for fp in (0, 1, 2**64 - 1)]
    for s in seeds:
        assert 0 <= s < 2**63
        torch.Generator().manual_seed(s)
    # fingerprints that differ in any one bit give different seeds (a mix, not a mask)
    assert len({sample_seed(0, 3, 1 << bit) for bit in range(64)}) == 64
    assert len({sample_seed(seed, layer, 5) for seed in range(8) for layer in range(12)}) == 96


def test_random_keep_indices_bounds():
    g = torch.Generator().manual_seed(0)
    assert random_keep_indices(2, 5, 0, g).tolist() == [[0, 1, 2, 3, 4]] * 2
    assert random_keep_indices(2, 5, 5, g).shape == (2, 0)
    for r in (-1, 6):
        with pytest.raises(ValueError, match=rf"cannot drop {r} of 5 tokens"):
            random_keep_indices(1, 5, r, g)


def _ids(batch, tokens):
    """Tokens whose channel 0 is their index; channel 1 makes each sample different."""
    x = torch.zeros(batch, tokens, 2)
    x[..., 0] = torch.arange(float(tokens))
    x[..., 1] = torch.arange(1.0, batch + 1).view(batch, 1)
    return x


def test_random_drop_keeps_sizes_and_traces_with_the_tokens():
    x = _ids(3, 12)
    # sizes made by another mechanism follow their tokens; here each token's size is 100 + its index
    state = ReductionState(size=100 + x[..., :1].clone(), trace_source=True, record_trace=True)
    out = RandomDrop([4], seed=3).reduce(x, 0, state, {})
    kept = out[..., 0]
    assert out.shape == (3, 8, 2) and torch.equal(state.size[..., 0], 100 + kept)
    assert torch.equal(state.source.argmax(-1).float(), kept) and torch.equal(state.source.sum(-1), torch.ones(3, 8))
    (entry,) = state.trace
    assert {k: entry[k] for k in ("layer", "tokens_in", "r_merge")} == {"layer": 0, "tokens_in": 12, "r_merge": 4}
    # scripts/check_fused_exact.py compares every trace key ending in _idx across executions
    assert torch.equal(entry["keep_idx"].float(), kept)


def test_a_sample_with_nan_or_inf_tokens_still_draws_and_leaves_the_others_alone():
    x = _ids(3, 10)
    alone = RandomDrop([3], seed=1).reduce(x[2:], 0, ReductionState(), {})
    x[0, 4, 1], x[1, 7, 1] = float("nan"), float("inf")
    out = RandomDrop([3], seed=1).reduce(x, 0, ReductionState(), {})
    assert out.shape == (3, 7, 2) and torch.equal(out[2], alone[0])


def test_describe_records_the_seed_and_the_default_is_the_configs():
    assert build_reducer("random", [2, 1], seed=5).describe() == {"name": "random", "r": [2, 1], "seed": 5}
    config = OmegaConf.load(Path(__file__).resolve().parent.parent / "vidtldr" / "configs" / "merge" / "random.yaml")
    assert RandomDrop([2]).describe()["seed"] == config.seed
