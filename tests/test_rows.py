"""Which record fills which table row, on records and rows written out by hand: the numbers a record
gives (each field from its own key), the settings that decide whether it stands for a paper row, the
choice among several records, and what each paper row must have been run with."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from vidtldr.errors import VidtldrError
from vidtldr.report import rows
from vidtldr.report.rows import load_runs, num, pick_run, resolve_row_settings, run_row, settings_mismatch


def test_num_keeps_numbers_and_turns_everything_else_into_none():
    assert num(None) is None and num("abc") is None and num([1.0]) is None and num({}) is None
    assert num(float("nan")) is None  # what pandas fills a missing cell with
    assert num("2.5") == 2.5 and num(3) == 3.0 and num(-0.25) == -0.25 and num(0) == 0.0
    assert num(float("inf")) == math.inf  # a median rank can be infinite


FULL = {"status": "complete", "created": "2026-01-02T03:04:05", "partial": True, "_path": "/runs/a/record.json",
        "run": {"task": "retrieval", "dataset": "msrvtt_9k", "dataset_base": "msrvtt", "setting": "finetuned",
                "paper_row": False, "model": "umt_b_ft", "backbone": "umt_b", "merge": "vidtldr", "schedule": [600, 200, 100]},
        "counts": {"videos": 10, "videos_total": 1000},
        "metrics": {"itm": {"img_r1": 50.25, "img_r5": 2.0, "img_r10": 3.0, "txt_r1": 49.5, "txt_r5": 5.0,
                            "txt_r10": 6.0, "img_medr": 7.0, "txt_medr": 8.0, "r_mean": 9.0},
                    "itc": {"img_r1": 11.0, "img_r5": 12.0, "img_r10": 13.0, "txt_r1": 14.0, "txt_r5": 15.0,
                            "txt_r10": 16.0, "img_medr": 17.0, "txt_medr": 18.0, "r_mean": 19.0}},
        "gflops": {"paper": 178.5, "base_paper": 303.3, "true": 999.0},
        "resolved": {"num_frames": 12, "k_test": 128, "max_txt_l": 32, "max_q_len": None, "max_a_len": None,
                     "precision": "fp16", "data_source": "real", "checkpoint": "/ckpt/zoo/ret_msrvtt_b16_25m.pth",
                     "seed": 3},
        "config": {"model": {"checkpoint": "/mine/x.pth"},
                   "eval": {"token_store_dtype": "fp16", "attention": "materialized"}}}


def test_run_row_takes_each_field_from_its_own_key():
    assert run_row(FULL) == {
        "setting": "finetuned", "dataset": "msrvtt", "dataset_config": "msrvtt_9k", "backbone": "umt_b",
        "model": "umt_b_ft", "method": "vidtldr", "task": "retrieval", "schedule": [600, 200, 100],
        "paper_row": False, "partial": True, "status": "complete", "created": "2026-01-02T03:04:05", "path": "/runs/a/record.json",
        "videos": 10, "videos_total": 1000, "limit_unit": "videos", "n": 10, "n_total": 1000,
        # text->video is the official "img" block, video->text "txt"
        "t2v_r1": 50.25, "t2v_r5": 2.0, "t2v_r10": 3.0, "v2t_r1": 49.5, "v2t_r5": 5.0, "v2t_r10": 6.0,
        "t2v_medr": 7.0, "v2t_medr": 8.0, "r_mean": 9.0,
        "r1_mean": 49.88,  # (50.25 + 49.5) / 2 = 49.875, to 2 decimals (half to even)
        "itc_t2v_r1": 11.0, "itc_t2v_r5": 12.0, "itc_t2v_r10": 13.0, "itc_v2t_r1": 14.0, "itc_v2t_r5": 15.0,
        "itc_v2t_r10": 16.0, "itc_t2v_medr": 17.0, "itc_v2t_medr": 18.0, "itc_r_mean": 19.0, "itc_r1_mean": 12.5,
        "gflops": 178.5, "gflops_base": 303.3,
        "num_frames": 12, "k_test": 128, "max_txt_l": 32, "max_q_len": None, "max_a_len": None,
        "precision": "fp16", "data_source": "real", "checkpoint_file": "ret_msrvtt_b16_25m.pth",
        "explicit_checkpoint": "/mine/x.pth", "token_store_dtype": "fp16", "attention": "materialized"}


def test_run_row_of_a_sparse_qa_record():
    """An older or smaller record: no partial flag, no config, no checkpoint, counts in questions."""
    record = {"status": "complete", "run": {"dataset_base": "msvd_qa", "merge": "none"},
              "counts": {"videos": 3, "questions": 40, "questions_total": 400},
              "metrics": {"acc": "44.5"}, "resolved": {"precision": "fp32"}}
    row = run_row(record)
    assert row["partial"] is False and row["path"] is None and row["created"] is None
    assert (row["limit_unit"], row["n"], row["n_total"], row["videos"]) == ("questions", 40, 400, 3)
    assert row["acc"] == 44.5 and row["gflops"] is None and row["gflops_base"] is None
    assert not [k for k in row if "r1" in k or "medr" in k]  # no retrieval numbers at all
    # settings a record does not state are the defaults of the runs that wrote no such key
    assert (row["token_store_dtype"], row["attention"], row["checkpoint_file"], row["explicit_checkpoint"]) == \
        ("fp32", "fused", None, None)
    assert row["num_frames"] is None and row["precision"] == "fp32"
    assert run_row({**record, "metrics": {"acc": float("nan")}})["acc"] is None
    assert "acc" not in run_row({**record, "metrics": {}})


def test_r1_mean_needs_both_directions():
    record = {"metrics": {"itm": {"img_r1": 40.0}, "itc": {"img_r1": 30.0, "txt_r1": None}}}
    row = run_row(record)
    assert row["t2v_r1"] == 40.0 and row["v2t_r1"] is None and "r1_mean" not in row
    assert row["itc_t2v_r1"] == 30.0 and "itc_r1_mean" not in row
    only_itc = run_row({"metrics": {"itc": {"img_r1": 30.0, "txt_r1": 20.0}}})
    assert only_itc["itc_r1_mean"] == 25.0 and "t2v_r1" not in only_itc and "r1_mean" not in only_itc


def _write(path, record):
    path.mkdir(parents=True)
    (path / "record.json").write_text(json.dumps(record))


def test_load_runs_keeps_complete_records_and_names_an_unreadable_one(tmp_path):
    _write(tmp_path / "a", {k: v for k, v in FULL.items() if k != "_path"})  # as written: the path is added
    _write(tmp_path / "b", {**FULL, "status": "failed"})
    _write(tmp_path / "c", {**FULL, "status": "running"})
    runs = load_runs([tmp_path])
    assert len(runs) == 1 and runs.iloc[0]["path"] == str(tmp_path / "a" / "record.json")
    assert load_runs([tmp_path / "nothing_here"]).empty
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "record.json").write_text('{"status": "compl')
    with pytest.raises(VidtldrError, match=r"^cannot read run record " + str(tmp_path / "d" / "record.json") + ": "):
        load_runs([tmp_path])


ROW = {"schedule": [5, 0], "num_frames": 12, "k_test": 128, "max_q_len": None, "checkpoint_file": "a.pth"}


def _run(**changes):
    run = {"schedule": (5, 0), "num_frames": 12, "k_test": 128, "max_q_len": float("nan"), "checkpoint_file": "a.pth",
           "precision": "fp32", "token_store_dtype": "fp32"}
    return {**run, **changes}


def test_settings_mismatch_names_each_difference():
    assert settings_mismatch(_run(), ROW) == []  # a tuple schedule, and NaN for a missing value, match
    assert settings_mismatch(_run(precision="fp16"), ROW) == []  # the official evaluation's autocast
    assert settings_mismatch(_run(k_test=64), ROW) == ["k_test=64 (row: 128)"]
    assert settings_mismatch(_run(schedule=[5, 1]), ROW) == ["schedule=[5, 1] (row: [5, 0])"]
    assert settings_mismatch(_run(max_q_len=25), ROW) == ["max_q_len=25 (row: None)"]
    assert settings_mismatch(_run(checkpoint_file="mine.pth", num_frames=8), ROW) == [
        "num_frames=8 (row: 12)", "checkpoint_file='mine.pth' (row: 'a.pth')"]
    assert settings_mismatch(_run(schedule="[5, 0]"), ROW) == ["schedule='[5, 0]' (row: [5, 0])"]
    assert settings_mismatch(_run(precision="bf16"), ROW) == ["precision='bf16' (row: one of ('fp32', 'fp16'))"]
    assert settings_mismatch(_run(precision=None), {}) == ["precision=None (row: one of ('fp32', 'fp16'))"]
    assert settings_mismatch(_run(token_store_dtype="fp16"), ROW) == ["token_store_dtype='fp16' (row: 'fp32')"]


def _runs(*records):
    base = {"setting": "finetuned", "dataset": "msrvtt", "backbone": "umt_b", "method": "vidtldr"}
    return pd.DataFrame([{**base, **r} for r in records])


def _pick(runs, table=None, **row):
    key = {"setting": "finetuned", "dataset": "msrvtt", "backbone": "umt_b", "method": "vidtldr", **row}
    got = pick_run(runs, key["setting"], key["dataset"], key["backbone"], key["method"], table)
    return None if got is None else got["path"]


def test_each_identity_field_decides_the_row():
    runs = _runs({"path": "ft", "created": "1"}, {"path": "zs", "setting": "zeroshot", "created": "2"},
                 {"path": "msvd", "dataset": "msvd", "created": "3"}, {"path": "L", "backbone": "umt_l", "created": "4"},
                 {"path": "none", "method": "none", "created": "5"})
    assert _pick(runs) == "ft"
    assert _pick(runs, setting="zeroshot") == "zs" and _pick(runs, dataset="msvd") == "msvd"
    assert _pick(runs, backbone="umt_l") == "L" and _pick(runs, method="none") == "none"
    assert _pick(runs, method="tome") is None


def test_a_record_of_a_dataset_outside_the_paper_rows_never_fills_one():
    # e.g. a copy of msrvtt.yaml with paper_row: false, newer and complete: the older record stays
    runs = _runs({"path": "paper", "created": "1", "paper_row": True},
                 {"path": "own split", "created": "2", "paper_row": False})
    assert _pick(runs) == "paper"
    assert _pick(_runs({"path": "own split", "paper_row": False})) is None
    assert _pick(_runs({"path": "old record", "paper_row": None})) == "old record"  # before the key: fills


def test_newest_complete_record_wins_else_newest_partial():
    older, newer = "2026-01-01T00:00:00", "2026-02-01T00:00:00"
    runs = _runs({"path": "old", "created": older, "partial": False}, {"path": "new", "created": newer, "partial": False},
                 {"path": "newest_partial", "created": "2026-03-01", "partial": True})
    assert _pick(runs) == "new"  # a complete run beats a newer partial one
    partial_only = _runs({"path": "p1", "created": older, "partial": True}, {"path": "p2", "created": newer, "partial": True})
    assert _pick(partial_only) == "p2"
    # a record without the field counts as complete, and as older than any dated one
    mixed = _runs({"path": "undated", "created": None, "partial": None}, {"path": "dated", "created": older, "partial": True})
    assert _pick(mixed) == "undated"
    assert _pick(_runs({"path": "a", "created": None}, {"path": "b", "created": older})) == "b"
    assert _pick(_runs({"path": "first"}, {"path": "second"})) == "first"  # no dates at all: the first listed
    assert _pick(_runs({"path": "a", "partial": True}, {"path": "b", "partial": False})) == "b"


def test_no_runs_no_pick():
    assert pick_run(None, "finetuned", "msrvtt", "umt_b", "vidtldr") is None
    assert pick_run(pd.DataFrame(), "finetuned", "msrvtt", "umt_b", "vidtldr") is None
    assert pick_run(pd.DataFrame([{"dataset": "msrvtt", "backbone": "umt_b", "method": "vidtldr"}]),
                    "finetuned", "msrvtt", "umt_b", "vidtldr") is None  # no setting column
    bare = pd.DataFrame([{"setting": "finetuned", "dataset": "msrvtt", "backbone": "umt_b", "method": "vidtldr"}])
    assert pick_run(bare, "finetuned", "msrvtt", "umt_b", "vidtldr") == bare.iloc[0].to_dict()  # nothing more needed


def test_a_table_row_takes_only_records_with_its_settings(monkeypatch):
    asked = []

    def settings(table, dataset, backbone, method):
        asked.append((table, dataset, backbone, method))
        return None if method == "tome" else {"num_frames": 12}

    monkeypatch.setattr(rows, "row_settings", settings)
    good = {"num_frames": 12, "precision": "fp32", "token_store_dtype": "fp32"}
    runs = _runs({"path": "old_good", "created": "1", **good}, {"path": "new_8", "created": "2", **good, "num_frames": 8},
                 {"path": "tome", "method": "tome", "created": "3", **good})
    assert _pick(runs) == "new_8"  # without a table, any settings
    assert _pick(runs, table="finetuned") == "old_good"
    assert asked == [("finetuned", "msrvtt", "umt_b", "vidtldr")]
    assert _pick(runs, table="fig1", method="tome") is None  # the table plans no such row
    assert _pick(_runs({"path": "x", "created": "1", **good, "num_frames": 4}), table="finetuned") is None


# What each paper row is run with, from docs/protocol.md and the README's checkpoint table: 12 frames
# fine-tuned and 4 zero-shot, k_test 128, the dataset's text length, the published schedule or none.
@pytest.mark.parametrize("key,want", [
    (("finetuned", "msrvtt", "umt_b", "vidtldr"),
     {"schedule": [600, 200, 100] + [0] * 9, "num_frames": 12, "k_test": 128, "max_txt_l": 32, "max_q_len": None,
      "max_a_len": None, "checkpoint_file": "ret_msrvtt_b16_25m.pth", "attention": "fused", "data_source": "real"}),
    (("zeroshot", "lsmdc", "umt_b", "none"),
     {"schedule": [0] * 12, "num_frames": 4, "k_test": 128, "max_txt_l": 64, "max_q_len": None, "max_a_len": None,
      "checkpoint_file": "b16_25m.pth", "attention": "fused", "data_source": "real"}),
    (("qa", "msrvtt_qa", "umt_l", "none"),
     {"schedule": [0] * 24, "num_frames": 12, "k_test": 128, "max_txt_l": None, "max_q_len": 25, "max_a_len": 5,
      "checkpoint_file": "qa_msrvtt_l16_25m.pth", "attention": "fused", "data_source": "real"}),
    (("fig1", "didemo", "umt_b", "tome"),  # DiDeMo fits no constant ToMe r: the nearest, 95, every block
     {"schedule": [95] * 12, "num_frames": 12, "k_test": 128, "max_txt_l": 64, "max_q_len": None, "max_a_len": None,
      "checkpoint_file": "ret_didemo_b16_25m.pth", "attention": "fused", "data_source": "real"}),
    (("fig1", "msrvtt", "umt_l", "vidtldr"), None),  # Figure 1 is UMT-B only
    (("finetuned", "msrvtt", "umt_b", "tome"), None),  # the fine-tuned table has no ToMe rows
])
def test_what_each_paper_row_is_run_with(key, want):
    assert resolve_row_settings(*key) == want
