"""Smoke evaluations on tiny clips of every dataset config (each format, fine-tuned and zero-shot):
the run completes, its record says what ran, and the numbers are well-formed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidtldr.data.registry import all_dataset_configs
from vidtldr.run.runner_smoke import smoke_one, summary_line

# action recognition has its own end-to-end tests (tests/test_action_eval.py)
DATASETS = {name: cfg for name, cfg in all_dataset_configs().items() if cfg["task"] != "classification"}


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
        assert set(record["metrics"]) == {"acc"}
        assert counts["videos"] == counts["videos_decoded"]
        predictions = json.loads((tmp_path / name / "predictions.json").read_text())
        assert len(predictions) == counts["questions"]
        # the accuracy is the share of predictions equal to the annotation file's own answers
        gold = {r["question_id"]: r["answer"] for r in json.loads(annotation.read_text())}
        assert sorted(map(str, (p["question_id"] for p in predictions))) == sorted(map(str, gold))
        hits = sum(p["answer"] == gold[p["question_id"]] for p in predictions)
        assert record["metrics"]["acc"] == round(100 * hits / len(gold), 2)
    else:
        # Random weights: no value is known, but each is a count of hits over the queries. A query
        # is a text for img_* (text -> video) and a video for txt_*; the tiny sets have at most 10
        # candidates on the side searched, so every ground truth is in the top 10.
        queries = {"img": counts["texts"], "txt": counts["videos"]}
        candidates = {"img": counts["videos"], "txt": counts["texts"]}
        for block in ("itm", "itc"):
            m = record["metrics"][block]
            for side in ("img", "txt"):
                n = queries[side]
                r1, r5, r10 = (m[f"{side}_r{k}"] for k in (1, 5, 10))
                for value in (r1, r5, r10):
                    assert value == round(100 * round(value * n / 100) / n, 2), (block, side, value, n)
                assert 0 <= r1 <= r5 <= r10 <= 100, (block, side)
                if candidates[side] <= 10:
                    assert r10 == 100.0, (block, side, candidates[side])
                if candidates[side] <= 5:
                    assert r5 == 100.0, (block, side, candidates[side])
                assert 1 <= m[f"{side}_medr"] <= candidates[side], (block, side)
            six = [m[f"{side}_r{k}"] for side in ("img", "txt") for k in (1, 5, 10)]
            assert m["r_mean"] == pytest.approx(sum(six) / 6, abs=0.011), block  # a mean of 2-decimal values
    assert name in summary_line(record)
