"""The numbers put beside each table row, on a hand-made table, reference sheet and runs: our value,
the paper's, ours minus the paper's, GFLOPs and their reduction against the baseline row, and "not
run" (never a number) where no record exists."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from vidtldr.report import render, rows
from vidtldr.report.reference import COLUMNS
from vidtldr.report.tables import NOT_RUN, TABLES, TableSpec, build_table, row_metrics, run_status

SPEC = TableSpec("mine", "a table", "finetuned", ("msrvtt", "msrvtt_qa"), ("umt_b",), ("none", "vidtldr"),
                 ("t2v_r1", "v2t_r1", "acc"), ("mine", "fallback"))

REF = pd.DataFrame([dict(zip(COLUMNS, r, strict=True)) for r in [
    ("mine", "finetuned", "msrvtt", "umt_b", "vidtldr", "t2v_r1", 50.0, "p"),
    ("fallback", "finetuned", "msrvtt", "umt_b", "vidtldr", "t2v_r1", 99.0, "not used: 'mine' comes first"),
    ("fallback", "finetuned", "msrvtt", "umt_b", "vidtldr", "v2t_r1", 49.0, "p"),
    ("mine", "finetuned", "msrvtt", "umt_b", "none", "t2v_r1", 51.4, "p"),
    ("mine", "finetuned", "msrvtt", "umt_b", "none", "v2t_r1", 50.1, "p"),
    ("mine", "zeroshot", "msrvtt", "umt_b", "vidtldr", "v2t_r1", 10.0, "other setting: not used"),
    ("mine", "finetuned", "msrvtt_qa", "umt_b", "vidtldr", "acc", 44.8, "p"),
    ("fig1", "finetuned", "msrvtt", "umt_b", "vidtldr", "gflops", 178.0, "figure 1"),
    ("gflops", "finetuned", "all", "umt_b", "none", "gflops", 303.3, "recount"),
]])

SETTINGS = {"precision": "fp32", "token_store_dtype": "fp32"}
RUNS = pd.DataFrame([
    {"setting": "finetuned", "dataset": "msrvtt", "backbone": "umt_b", "method": "vidtldr", "t2v_r1": 47.5,
     "v2t_r1": 50.0, "gflops": 180.0, "gflops_base": 303.0, "partial": False, "created": "2", "path": "a",
     "schedule": [600, 200, 100], **SETTINGS},
    {"setting": "finetuned", "dataset": "msrvtt", "backbone": "umt_b", "method": "none", "t2v_r1": 52.004,
     "v2t_r1": None, "gflops": 300.0, "gflops_base": 303.0, "partial": False, "created": "1", "path": "b",
     "schedule": [0] * 12, **SETTINGS},
    {"setting": "finetuned", "dataset": "msrvtt_qa", "backbone": "umt_b", "method": "vidtldr", "acc": 45.0,
     "gflops": 190.0, "gflops_base": 310.0, "partial": True, "n": 5, "n_total": 100, "limit_unit": "questions",
     "created": "3", "path": "q", "schedule": [1], **SETTINGS},
])


def _plain(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _row(table, dataset, method):
    hit = table[(table.dataset == dataset) & (table.method == method)]
    assert len(hit) == 1
    return {k: _plain(v) for k, v in hit.iloc[0].to_dict().items()}


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(rows, "row_settings", lambda *key: {})  # every run has its row's settings here
    return build_table(SPEC, RUNS, REF)


def test_one_row_per_dataset_backbone_method_in_the_tables_order(table):
    assert list(zip(table.dataset, table.backbone, table.method, strict=True)) == [
        ("msrvtt", "umt_b", "none"), ("msrvtt", "umt_b", "vidtldr"),
        ("msrvtt_qa", "umt_b", "none"), ("msrvtt_qa", "umt_b", "vidtldr")]


def test_ours_the_papers_and_the_difference_with_its_sign(table):
    ours = _row(table, "msrvtt", "vidtldr")
    assert ours["run"] == "complete" and ours["record"] == "a" and ours["schedule"] == [600, 200, 100]
    assert (ours["t2v_r1"], ours["t2v_r1_paper"], ours["t2v_r1_delta"]) == (47.5, 50.0, -2.5)  # below the paper
    assert (ours["v2t_r1"], ours["v2t_r1_paper"], ours["v2t_r1_delta"]) == (50.0, 49.0, 1.0)  # above it
    # GFLOPs: 180 against the baseline row's run (300), not the record's own count (303): 40 % fewer
    assert (ours["gflops"], ours["gflops_reduction_pct"]) == (180.0, 40.0)
    assert (ours["gflops_paper"], ours["gflops_paper_source"]) == (178.0, "figure 1")
    base = _row(table, "msrvtt", "none")
    assert (base["t2v_r1"], base["t2v_r1_paper"], base["t2v_r1_delta"]) == (52.004, 51.4, 0.6)  # to 2 decimals
    assert (base["v2t_r1"], base["v2t_r1_paper"], base["v2t_r1_delta"]) == (None, 50.1, None)  # no number of ours
    assert base["gflops_reduction_pct"] == 0.0
    assert (base["gflops_paper"], base["gflops_paper_source"]) == (303.3, "recount")  # the backbone's count


def test_a_qa_row_has_accuracy_only_and_falls_back_to_its_own_baseline_count(table):
    qa = _row(table, "msrvtt_qa", "vidtldr")
    assert qa["run"] == "partial (5/100 questions)" and qa["record"] == "q"
    assert (qa["acc"], qa["acc_paper"], qa["acc_delta"]) == (45.0, 44.8, 0.2)
    assert qa["t2v_r1"] is None and qa["t2v_r1_paper"] is None  # the retrieval columns stay empty
    assert qa["gflops_reduction_pct"] == 38.7  # no baseline run: 100 * (1 - 190 / 310) = 38.71
    assert qa["gflops_paper"] is None and qa["gflops_paper_source"] is None  # no printed or recounted value


def test_a_row_without_a_record_is_not_run_and_has_no_number_of_ours(table):
    missing = _row(table, "msrvtt_qa", "none")
    assert missing["run"] == NOT_RUN and missing["record"] is None and missing["schedule"] is None
    assert missing["acc"] is None and missing["acc_delta"] is None and missing["gflops"] is None
    assert missing["gflops_reduction_pct"] is None
    assert (missing["gflops_paper"], missing["gflops_paper_source"]) == (303.3, "recount")
    shown = render.display_table(SPEC, table)
    cells = shown.iloc[2].to_dict()
    assert cells["Acc"] == "not run (–)" and cells["GFLOPs"] == "not run" and cells["reduction"] == ""
    assert shown.iloc[1]["T2V R@1"] == "47.50 (50.0, -2.5)" and shown.iloc[1]["reduction"] == "40.0%"


def test_a_table_row_takes_only_its_own_settings(monkeypatch):
    monkeypatch.setattr(rows, "row_settings", lambda table, dataset, backbone, method:
                        {"schedule": [0] * 12} if (table, method) == ("mine", "none") else {})
    runs = RUNS.copy()
    runs["schedule"] = [[600, 200, 100], [5] * 12, [1]]  # the baseline run was run with another schedule
    table = build_table(SPEC, runs, REF)
    assert _row(table, "msrvtt", "none")["run"] == NOT_RUN
    # without a baseline run, vid-TLDR's reduction is against its record's own count: 1 - 180 / 303
    assert _row(table, "msrvtt", "vidtldr")["gflops_reduction_pct"] == 40.6


def test_no_reduction_without_a_count_to_compare_with(monkeypatch):
    monkeypatch.setattr(rows, "row_settings", lambda *key: {})
    runs = RUNS.iloc[[2]].copy()
    runs["gflops_base"] = 0.0
    assert _row(build_table(SPEC, runs, REF), "msrvtt_qa", "vidtldr")["gflops_reduction_pct"] is None
    runs["gflops"] = None
    runs["gflops_base"] = 310.0
    got = _row(build_table(SPEC, runs, REF), "msrvtt_qa", "vidtldr")
    assert got["gflops"] is None and got["gflops_reduction_pct"] is None


def test_run_status():
    assert run_status(None) == "not run"
    assert run_status({"partial": False}) == "complete" and run_status({}) == "complete"
    assert run_status({"partial": True, "n": 10, "n_total": 1000, "limit_unit": "videos"}) == "partial (10/1000 videos)"
    # pandas turns a count column into floats once one record lacks it: still whole numbers
    assert run_status({"partial": True, "n": 10.0, "n_total": 1000.0, "limit_unit": "videos"}) == \
        "partial (10/1000 videos)"
    assert run_status({"partial": True, "n": float("nan"), "n_total": None, "limit_unit": "questions"}) == \
        "partial (?/? questions)"


def test_partial_counts_stay_whole_numbers_beside_a_record_without_counts(tmp_path):
    import json

    for name, record in (("p", {"status": "complete", "partial": True, "counts": {"videos": 10, "videos_total": 1000}}),
                         ("old", {"status": "complete"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "record.json").write_text(json.dumps(record))
    runs = rows.load_runs([tmp_path])
    partial = runs[runs.partial.astype(bool)].iloc[0].to_dict()
    assert run_status(partial) == "partial (10/1000 videos)"


def test_row_metrics_split_retrieval_and_qa():
    fig1 = TABLES["fig1"]
    assert row_metrics(fig1, "msrvtt") == ["r1_mean"] and row_metrics(fig1, "msrvtt_qa") == ["acc"]
    assert row_metrics(SPEC, "didemo") == ["t2v_r1", "v2t_r1"] and row_metrics(SPEC, "msvd_qa") == ["acc"]
