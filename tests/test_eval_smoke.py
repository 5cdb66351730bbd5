"""Smoke evaluations on tiny clips of every dataset config (each format, fine-tuned and zero-shot):
the run completes, its record says what ran, and the numbers are well-formed."""

from __future__ import annotations

import pytest

from vidtldr.data.registry import all_dataset_configs
from vidtldr.tasks.runner_smoke import smoke_one, summary_line

DATASETS = all_dataset_configs()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke_cache")


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_smoke(name, cache, tmp_path):
    cfg = DATASETS[name]
    record = smoke_one(name, cache, tmp_path, extra=["data.batch_size=4"])
    assert record["status"] == "complete" and record["partial"] is False
    assert record["run"]["dataset"] == name and record["run"]["task"] == cfg["task"]
    assert record["run"]["setting"] == ("zeroshot" if "_zs" in name else "finetuned")
    assert record["token_counts"] == [196, 148, 124, 124, 124]
    counts = record["counts"]
    if cfg["task"] == "qa":
        assert 0 <= record["metrics"]["acc"] <= 100
        assert counts["questions"] >= 1 and counts["videos"] == counts["videos_decoded"]
    else:
        for block in ("itm", "itc"):
            assert 0 <= record["metrics"][block]["img_r1"] <= 100
        assert counts["videos"] >= 1 and counts["texts"] >= 1
        if cfg["reader"] == "paragraph":
            assert counts["texts"] == counts["videos"]  # one paragraph per video
        if cfg["reader"] == "multi_video_gt":
            assert counts["videos"] > counts["texts"]  # several ground-truth videos per text
    assert name in summary_line(record)
