"""Smoke evaluations on tiny clips of every dataset config (each format, fine-tuned and zero-shot):
the run completes, its record says what ran, and the numbers are well-formed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vidtldr.data.registry import all_dataset_configs
from vidtldr.run.runner_smoke import smoke_one, summary_line

DATASETS = all_dataset_configs()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("smoke_cache")


def annotation_counts(path, reader: str) -> dict:
    """Videos and texts / questions of a tiny annotation file, counted straight from its JSON."""
    records = json.loads(path.read_text())
    if reader == "qa":
        return {"questions": len(records), "videos": len({r["video"] for r in records})}
    if reader == "paragraph":  # one paragraph (all sentences joined) per video
        return {"videos": len(records), "texts": len(records)}
    if reader == "multi_video_gt":  # one text per record; every listed video is its own video id (official)
        return {"videos": sum(1 if isinstance(r["video"], str) else len(r["video"]) for r in records),
                "texts": len(records)}
    texts = sum(1 if isinstance(r["caption"], str) else len(r["caption"]) for r in records)
    return {"videos": len(records), "texts": texts}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_smoke(name, cache, tmp_path):
    cfg = DATASETS[name]
    record = smoke_one(name, cache, tmp_path, extra=["data.batch_size=4"])
    assert record["status"] == "complete" and record["partial"] is False
    assert record["run"]["dataset"] == name and record["run"]["task"] == cfg["task"]
    assert record["run"]["setting"] == ("zeroshot" if "_zs" in name else "finetuned")
    # Tokens: 4 frames x 49 patches enter block 0; each block then removes its schedule entry.
    expected_tokens = [4 * 49]
    for removed in record["run"]["schedule"]:
        expected_tokens.append(expected_tokens[-1] - removed)
    assert record["token_counts"] == expected_tokens
    counts = record["counts"]
    annotation = Path(cache) / "tiny_data" / name / "anno_downstream" / cfg["annotation"]
    for key, value in annotation_counts(annotation, cfg["reader"]).items():
        assert counts[key] == value, key
    if cfg["task"] == "qa":
        assert set(record["metrics"]) == {"acc"} and math.isfinite(record["metrics"]["acc"])
        assert counts["videos"] == counts["videos_decoded"]
        predictions = json.loads((tmp_path / name / "predictions.json").read_text())
        assert len(predictions) == counts["questions"]
    else:
        keys = {"img_r1", "img_r5", "img_r10", "txt_r1", "txt_r5", "txt_r10", "r_mean", "img_medr", "txt_medr"}
        for block in ("itm", "itc"):
            m = record["metrics"][block]
            assert keys <= set(m) and all(math.isfinite(m[k]) for k in keys), block
    assert name in summary_line(record)
