"""The extension contract, shown the way a contributor would use it: in a copy of the package, add
ONE reducer module under vidtldr/reduce/ and ONE configs/merge/<name>.yaml, nothing else, then the
evaluation, flops (analytic and traced), the benchmark and visualize run with it, and its GFLOPs
are counted from what it declares (a hidden-state matcher pays the C-wide similarity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _package_copy import last_json, package_copy, run_in


pytestmark = pytest.mark.slow

NEW_REDUCER = '''
"""Bipartite soft matching on the block's hidden states, size-weighted merge (ToMe's rule, vid-TLDR's metric)."""
import torch

from vidtldr.reduce.base import Reducer, apply_merge, register_reducer
from vidtldr.reduce.tome import tome_match, tome_merge_source, tome_merge_wavg


@register_reducer("hiddenmatch")
class HiddenMatch(Reducer):
    need = None            # nothing extra from the attention
    match_on = "hidden"    # cosine similarity of the hidden states, width C
    tracks_sizes = True    # size-weighted average; later blocks get proportional attention

    def remove(self, x: torch.Tensor, r: int, layer: int, state, aux: dict) -> torch.Tensor:
        return apply_merge(tome_match(x, r), x, state, tome_merge_wavg, tome_merge_source)
'''

MERGE_YAML = "# Hidden-state bipartite merging (extension-contract test).\nname: hiddenmatch\nr: ???\n"
SCHEDULE = "[48,24]"


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    """A copy of the package with the one new module and the one new yaml."""
    return package_copy(tmp_path_factory.mktemp("extended"), {"reduce/hiddenmatch.py": NEW_REDUCER,
                                                              "configs/merge/hiddenmatch.yaml": MERGE_YAML})


# What a hidden-state matcher with sizes costs on the tiny model at 4 frames, schedule [48, 24]:
# vid-TLDR's paper-convention count (same C-wide similarity, same token counts), counted by hand
# in tests/test_flops.py (TINY_PAPER_VIDTLDR): 78_292_032 MACs.
TINY_GFLOPS = 78_292_032 / 1e9


def test_eval_runs_the_new_reducer(extended):
    run_in(extended, "-m", "vidtldr.eval", "merge=hiddenmatch", f"merge.r={SCHEDULE}",
         f"paths.cache={extended / 'cache'}", f"paths.runs={extended / 'runs'}", "print_table=false")
    (record_path,) = (extended / "runs").rglob("record.json")
    record = json.loads(record_path.read_text())
    assert record["resolved"]["merge"] == "hiddenmatch" and record["resolved"]["schedule"][:2] == [48, 24]
    assert record["token_counts"][:3] == [196, 148, 124]
    assert (record["gflops"]["paper"], record["gflops"]["base_paper"]) == (round(TINY_GFLOPS, 3), 0.097)


def test_flops_counts_it_like_a_hidden_state_matcher_and_fvcore_agrees(extended):
    rep = last_json(run_in(extended, "-m", "vidtldr.flops", "model=tiny", "merge=hiddenmatch", f"merge.r={SCHEDULE}",
                                "trace=true"))
    assert rep["merge"] == "hiddenmatch" and rep["tokens_per_layer"] == [196, 148, 124, 124, 124]
    assert rep["gflops_paper"] == round(TINY_GFLOPS, 4)  # printed to 4 places
    # the similarity matmul at C = 64 wide: 98 x 98 x 64 at block 0, 74 x 74 x 64 at block 1
    assert rep["paper_by_op_g"]["match"] == pytest.approx((98 * 98 + 74 * 74) * 64 / 1e9, abs=1e-4)
    assert rep["traced"]["exact"] is True  # fvcore on the real module counts the same


def test_bench_and_visualize_run_it(extended):
    res = last_json(run_in(extended, "-m", "vidtldr.bench", "model=tiny", "reducers=[none,hiddenmatch]",
                          "attentions=[fused]", "repeats=1", "write=false", "breakdown=false", "profile=false"))
    row = next(r for r in res["rows"] if r["merge"] == "hiddenmatch")
    assert row["final_tokens"] == 124 and row["r"] == [48, 24]  # the tiny model's vid-TLDR schedule, copied
    out = extended / "viz"
    summary = last_json(run_in(extended, "-m", "vidtldr.visualize", "merge=hiddenmatch", f"merge.r={SCHEDULE}",
                              f"out={out}"))
    assert summary["merge"] == "hiddenmatch" and summary["token_counts"][-1] == 124
    assert (out / "groups.png").is_file() and summary["saliency_layers"] == []
