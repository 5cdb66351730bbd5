"""The whole-evaluation benchmark (vidtldr.bench_eval): generated inputs, the projection arithmetic,
output naming, and one quick end-to-end run on the tiny model (no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vidtldr.analysis.bench.evaluation import WORDS, captions, output_paths, project, write_vocab
from vidtldr.errors import ConfigError

from conftest import ROOT


def test_captions_are_deterministic_distinct_and_msrvtt_sized():
    caps = captions(300, seed=0)
    assert caps == captions(300, seed=0) and caps != captions(300, seed=1)
    assert len(set(caps)) == 300
    lengths = [len(c.split()) for c in caps]
    assert min(lengths) >= 4 and max(lengths) <= 15
    assert 8 < sum(lengths) / len(lengths) < 11
    assert all(w in WORDS for c in caps for w in c.split())


def test_generated_vocabulary_has_the_model_size_and_bert_special_ids(tmp_path):
    lines = write_vocab(tmp_path / "vocab.txt", 30522).read_text().splitlines()
    assert len(lines) == 30522
    assert (lines[0], lines[100], lines[101], lines[102], lines[103]) == ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
    assert len(set(lines)) == len(lines) and set(WORDS) <= set(lines)
    with pytest.raises(ConfigError, match="vocab_size 50 is smaller"):
        write_vocab(tmp_path / "small.txt", 50)


def test_projection_counts_both_directions_without_shared_pairs():
    units = {"vision_per_video_s": 2.0, "text_per_text_s": 0.5, "itc_per_entry_s": 1e-6, "itm_per_pair_s": 0.1}
    out = project(units, videos=1000, texts=1000, k_test=128)
    assert out["pairs"] == 256_000
    assert out["vision"] == 2000 and out["text"] == 500 and out["itc"] == pytest.approx(1.0)
    assert out["itm"] == pytest.approx(25_600) and out["total"] == pytest.approx(2000 + 500 + 1 + 25_600)
    assert project(units, videos=50, texts=1000, k_test=128)["pairs"] == 50 * 128 + 1000 * 50


def test_results_are_named_by_device_type():
    assert [p.name for p in output_paths("results", "cpu")] == ["bench_eval.md", "bench_eval.json"]
    assert [p.name for p in output_paths("results", "cuda:1")] == ["bench_eval_cuda.md", "bench_eval_cuda.json"]


@pytest.mark.slow
def test_quick_run_on_the_tiny_model_compares_the_engines(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "vidtldr.bench_eval", "model=tiny", "quick=true", "write=true",
                           f"out={tmp_path}", f"bench.data={tmp_path / 'data'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["metrics_identical"] is True and summary["candidates_identical"] is True
    assert summary["same_inputs"] == {"metrics_identical": True, "candidates_identical": True}
    assert 0 <= summary["max_itm_logit_diff"] <= 1e-4 and 0 <= summary["max_itm_logit_diff_between_runs"] <= 1e-4
    # tiny: k_test 4, one video, 4 texts: pairwise scores 1 x 4 + 4 x 1 pairs, grouped their union
    assert summary["pairs"] == {"pairwise": 8, "grouped": 4}
    for key in ("itm_pair_speedup", "eval_speedup_projected", "eval_speedup_measured"):
        assert summary[key] > 0
    full = json.loads((tmp_path / "bench_eval.json").read_text())
    # the projected speedup is the ratio of the two engines' projected totals (pairwise over grouped)
    projected = {e: full["engines"][e]["projected_msrvtt_1k"] for e in ("pairwise", "grouped")}
    assert summary["eval_speedup_projected"] == pytest.approx(projected["pairwise"]["total"]
                                                             / projected["grouped"]["total"])
    assert projected["pairwise"]["pairs"] == projected["grouped"]["pairs"] == 256000  # no credit for shared
    assert full["summary"] == summary and (tmp_path / "bench_eval.md").read_text().startswith("# Whole-evaluation")
    assert full["engines"]["pairwise"]["projected_msrvtt_1k"]["pairs"] == 256_000
    assert [row["videos"] for row in full["memory_probe"]] == [1, 2]
    assert json.loads((tmp_path / "data" / "bench_data.json").read_text())["videos"] == 1
