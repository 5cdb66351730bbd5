"""Our pitome, rlt and divprune against the outputs of the authors' own code on small inputs
(tests/fixtures/zoo_golden/README.md says which code, at which commit)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidtldr.reduce.base import ReductionState, apply_merge
from vidtldr.reduce.divprune import cosine_distance, max_min_keep
from vidtldr.reduce.pitome import pitome_match
from vidtldr.reduce.rlt import run_length_keep, tubelet_change
from vidtldr.reduce.tome import tome_merge_source, tome_merge_wavg

GOLDEN = torch.load(Path(__file__).parent / "fixtures" / "zoo_golden" / "golden.pt", weights_only=True)


@pytest.mark.parametrize("case", range(2))
def test_pitome_merges_as_the_authors_code(case):
    data, want = GOLDEN["pitome"], GOLDEN["pitome"]["cases"][case]
    match, _ = pitome_match(data["keys"], want["r"], want["margin"])
    state = ReductionState(trace_source=True)
    out = apply_merge(match, data["x"], state, tome_merge_wavg, tome_merge_source)
    torch.testing.assert_close(out, want["x"], rtol=1e-6, atol=1e-6)
    assert torch.equal(state.size, want["size"]) and torch.equal(state.source, want["source"])


@pytest.mark.parametrize("key, threshold", [("rlt", "2"), ("rlt", "0.5"), ("rlt", "100"), ("rlt_t1", "2")])
def test_rlt_keeps_what_the_authors_code_keeps(key, threshold):
    data = GOLDEN[key]
    video, patch, step = data["video"], data["patch_size"], data["tubelet_size"]
    grid = (video.shape[2] // step, video.shape[3] // patch, video.shape[4] // patch)
    per_step = grid[1] * grid[2]
    change = tubelet_change(video, grid)
    want = data["keep"][threshold]
    for sample in range(video.shape[0]):  # the threshold form encodes one video per forward
        keep = run_length_keep(change[sample:sample + 1], per_step, change.shape[1], threshold=float(threshold))
        mask = torch.zeros(want.shape[1], dtype=torch.bool)
        mask[keep[0]] = True
        assert torch.equal(mask, want[sample]), (sample, keep.tolist())


@pytest.mark.parametrize("ratio", ["0.3", "0.75"])
def test_divprune_keeps_the_authors_subset(ratio):
    feats, want = GOLDEN["divprune"]["features"], GOLDEN["divprune"]["selected"][ratio]
    keep = max_min_keep(cosine_distance(feats[None]), len(want))
    assert keep[0].tolist() == sorted(want.tolist())
