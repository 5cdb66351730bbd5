"""Tables from run records: our numbers beside the paper's, "not run" rows, partial runs,
choice among several records, output formats, and the reference sheet itself."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from vidtldr.report import reference, render, results, rows, tables
from vidtldr.run.record import write_record

REF = Path(__file__).resolve().parent.parent / "vidtldr" / "report" / "paper_reference.csv"


def fake_record(run_dir: Path, *, dataset="msrvtt", setting="finetuned", backbone="umt_l", merge="vidtldr",
                t2v_r1=60.0, v2t_r1=59.0, gflops=540.0, base=984.6, partial=False, created="2026-01-01T00:00:00",
                status="complete", acc=None, **settings) -> dict:
    """A record of a run; its settings are those of its paper row unless ``settings`` override some
    (``schedule``, ``num_frames``, ``k_test``, ``precision``, ``checkpoint``, ``eval`` config keys)."""
    table = ("zeroshot" if setting == "zeroshot" else "qa" if dataset.endswith("_qa")
             else "fig1" if merge == "tome" else "finetuned")
    row_cfg = rows.row_settings(table, dataset, backbone, merge) or {}
    schedule = settings.pop("schedule", row_cfg.get("schedule"))
    resolved = {k: row_cfg.get(k) for k in ("num_frames", "k_test", "max_txt_l", "max_q_len", "max_a_len",
                                            "data_source")}
    resolved.update(precision="fp32", checkpoint=f"/ckpt/{row_cfg.get('checkpoint_file')}")
    model_cfg = {"checkpoint": settings.pop("explicit_checkpoint", None)}
    eval_cfg = {"attention": "fused", "token_store_dtype": "fp32", **settings.pop("eval", {})}
    resolved.update(settings)
    metrics = ({"acc": acc} if acc is not None else
               {"itm": {"img_r1": t2v_r1, "img_r5": 80.0, "img_r10": 88.0, "txt_r1": v2t_r1, "txt_r5": 81.0,
                        "txt_r10": 89.0, "r_mean": 70.0, "img_medr": 1.0, "txt_medr": 1.0},
                "itc": {"img_r1": t2v_r1 - 5, "img_r5": 70.0, "img_r10": 80.0, "txt_r1": v2t_r1 - 5, "txt_r5": 70.0,
                        "txt_r10": 80.0, "r_mean": 60.0}})
    record = {"status": status, "created": created, "partial": partial,
              "run": {"task": "qa" if acc is not None else "retrieval", "dataset": dataset, "dataset_base": dataset,
                      "setting": setting, "model": backbone, "backbone": backbone, "merge": merge,
                      "schedule": schedule},
              "resolved": resolved, "config": {"model": model_cfg, "eval": eval_cfg},
              "counts": {"videos": 10 if partial else 1000, "videos_total": 1000},
              "gflops": {"paper": gflops, "base_paper": base}, "metrics": metrics}
    write_record(run_dir, record)
    return record


def row(table: pd.DataFrame, dataset: str, backbone: str, method: str) -> dict:
    hit = table[(table.dataset == dataset) & (table.backbone == backbone) & (table.method == method)]
    assert len(hit) == 1
    return hit.iloc[0].to_dict()


def test_ours_beside_paper_with_deltas_and_not_run(tmp_path):
    fake_record(tmp_path / "runs" / "a", t2v_r1=60.0, gflops=540.0)
    fake_record(tmp_path / "runs" / "b", merge="none", t2v_r1=61.0, gflops=984.6)
    table = tables.build_table(tables.TABLES["finetuned"], rows.load_runs([tmp_path / "runs"]),
                                reference.load_reference())
    ours = row(table, "msrvtt", "umt_l", "vidtldr")
    assert ours["run"] == "complete"
    assert ours["t2v_r1"] == 60.0 and ours["t2v_r1_paper"] == 58.1 and ours["t2v_r1_delta"] == pytest.approx(1.9)
    assert ours["gflops"] == 540.0 and ours["gflops_reduction_pct"] == pytest.approx(45.2)
    missing = row(table, "didemo", "umt_l", "vidtldr")
    assert missing["run"] == tables.NOT_RUN
    assert pd.isna(missing["t2v_r1"]) and missing["t2v_r1_paper"] == 72.3  # the paper's number stays in its column
    shown = render.display_table(tables.TABLES["finetuned"], table)
    didemo = shown[(shown.Dataset == "DiDeMo") & (shown.Backbone == "UMT-L/16") & (shown.Method == "+vid-TLDR")]
    assert didemo.iloc[0]["T2V R@1"].startswith("not run") and didemo.iloc[0]["GFLOPs"] == "not run"
    msrvtt = shown[(shown.Dataset == "MSRVTT") & (shown.Backbone == "UMT-L/16") & (shown.Method == "+vid-TLDR")]
    assert msrvtt.iloc[0]["T2V R@1"] == "60.00 (58.1, +1.9)"


def test_partial_and_failed_records(tmp_path):
    fake_record(tmp_path / "p", partial=True, t2v_r1=10.0, created="2026-02-01")
    fake_record(tmp_path / "f", status="failed", t2v_r1=99.0, created="2026-03-01")
    runs = rows.load_runs([tmp_path])
    assert len(runs) == 1  # the failed run is not a result
    table = tables.build_table(tables.TABLES["finetuned"], runs, reference.load_reference())
    assert row(table, "msrvtt", "umt_l", "vidtldr")["run"] == "partial (10/1000 videos)"
    # A complete record, even an older one, wins over a partial one.
    fake_record(tmp_path / "c", t2v_r1=50.0, created="2025-12-01")
    table = tables.build_table(tables.TABLES["finetuned"], rows.load_runs([tmp_path]), reference.load_reference())
    assert row(table, "msrvtt", "umt_l", "vidtldr")["t2v_r1"] == 50.0


def test_fig1_qa_and_zeroshot_rows(tmp_path):
    fake_record(tmp_path / "a", backbone="umt_b", t2v_r1=51.0, v2t_r1=50.0, gflops=178.0, base=303.3)
    fake_record(tmp_path / "q", dataset="msrvtt_qa", backbone="umt_b", acc=44.5, gflops=188.5, base=303.3)
    fake_record(tmp_path / "z", setting="zeroshot", merge="none", t2v_r1=40.0)
    runs = rows.load_runs([tmp_path])
    ref = reference.load_reference()
    fig1 = tables.build_table(tables.TABLES["fig1"], runs, ref)
    ret = row(fig1, "msrvtt", "umt_b", "vidtldr")
    assert ret["r1_mean"] == 50.5 and ret["r1_mean_paper"] == 50.8 and ret["gflops_paper"] == 178.0
    qa = row(fig1, "msrvtt_qa", "umt_b", "vidtldr")
    assert qa["acc"] == 44.5 and qa["acc_paper"] == 44.8
    assert pd.isna(qa.get("r1_mean"))  # a QA row has no retrieval R@1
    assert row(fig1, "msrvtt", "umt_b", "tome")["run"] == tables.NOT_RUN
    zs = tables.build_table(tables.TABLES["zeroshot"], runs, ref)
    assert row(zs, "msrvtt", "umt_l", "none")["t2v_r1"] == 40.0
    assert row(zs, "msrvtt", "umt_l", "none")["t2v_r1_paper"] == 40.7
    assert row(zs, "msrvtt", "umt_l", "none")["gflops_paper"] == 267.8  # 4-frame baseline
    # The fine-tuned table does not pick up the zero-shot run.
    ft = tables.build_table(tables.TABLES["finetuned"], runs, ref)
    assert row(ft, "msrvtt", "umt_l", "none")["run"] == tables.NOT_RUN


def test_only_records_with_the_rows_settings_fill_a_paper_row(tmp_path):
    published = [550, 400] + [0] * 22  # UMT-L/16 MSRVTT, the official README's schedule
    fake_record(tmp_path / "published", t2v_r1=58.0, schedule=published, created="2026-01-01")
    # Newer records of the same (setting, dataset, backbone, method), each run with other settings.
    others = {"sched": dict(schedule=[600, 200] + [0] * 22), "frames": dict(num_frames=8),
              "k": dict(k_test=16), "txt": dict(max_txt_l=64), "bf16": dict(precision="bf16"),
              "store": dict(eval={"token_store_dtype": "fp16"}), "attn": dict(eval={"attention": "materialized"}),
              "ckpt": dict(checkpoint="/x/my_finetune.pth", explicit_checkpoint="/x/my_finetune.pth")}
    for i, (name, extra) in enumerate(others.items()):
        fake_record(tmp_path / name, t2v_r1=10.0 + i, created=f"2026-02-0{i + 1}", **extra)
    runs = rows.load_runs([tmp_path])
    table = tables.build_table(tables.TABLES["finetuned"], runs, reference.load_reference())
    ours = row(table, "msrvtt", "umt_l", "vidtldr")
    assert ours["t2v_r1"] == 58.0 and ours["record"].endswith("published/record.json")
    assert ours["schedule"] == published
    # fp16 (the official autocast) and the default file given explicitly are the row's settings.
    fake_record(tmp_path / "fp16", t2v_r1=57.0, precision="fp16", created="2026-03-01",
                explicit_checkpoint="/elsewhere/ret_msrvtt_l16_25m.pth")
    table = tables.build_table(tables.TABLES["finetuned"], rows.load_runs([tmp_path]), reference.load_reference())
    assert row(table, "msrvtt", "umt_l", "vidtldr")["t2v_r1"] == 57.0
    # Without its own record the row is "not run", and every record is still in the runs table.
    (tmp_path / "published" / "record.json").unlink()
    (tmp_path / "fp16" / "record.json").unlink()
    runs = rows.load_runs([tmp_path])
    table = tables.build_table(tables.TABLES["finetuned"], runs, reference.load_reference())
    assert row(table, "msrvtt", "umt_l", "vidtldr")["run"] == tables.NOT_RUN
    assert len(tables.runs_table(runs)) == len(others)


def test_files_written_in_three_formats(tmp_path):
    fake_record(tmp_path / "runs" / "a")
    written = results.build_all([tmp_path / "runs"], tmp_path / "out")
    for name in ("finetuned", "zeroshot", "qa", "fig1"):
        md, csv, tex = (written[name][k].read_text() for k in ("md", "csv", "tex"))
        assert md.startswith("# ") and "| Dataset |" in md
        assert csv.splitlines()[0].startswith("dataset,backbone,method,run")
        assert "\\begin{tabular}" in tex and "\\bottomrule" in tex and "_" not in tex.replace("\\_", "")
    assert "60.0" in written["runs"]["csv"].read_text()


def test_cli_writes_tables(tmp_path, capsys):
    fake_record(tmp_path / "runs" / "a")
    assert results.main([f"runs=[{tmp_path / 'runs'}]", f"out={tmp_path / 'o'}", "tables=[qa]"]) == 0
    assert (tmp_path / "o" / "qa.md").is_file() and not (tmp_path / "o" / "fig1.md").exists()
    with pytest.raises(SystemExit) as exc:
        results.main([f"runs={tmp_path}", f"out={tmp_path / 'o'}", "tables=[nope]"])
    assert exc.value.code == 2 and "unknown table" in capsys.readouterr().err


def test_cli_old_flags_name_their_override(tmp_path, capsys):
    for flag, new in (("--runs", "runs=[DIR,...]"), ("--out", "out=DIR"), ("--tables", "tables=[NAME,...]")):
        with pytest.raises(SystemExit) as exc:
            results.main([flag, str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and err[0].endswith(f"use {new}") and flag in err[0]


def test_cli_missing_runs_root_is_an_error_and_no_records_a_warning(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        results.main([f"runs={tmp_path / 'nonexistent'}", f"out={tmp_path / 'o'}"])
    err = capsys.readouterr().err
    assert exc.value.code != 0 and len(err.strip().splitlines()) == 1 and "nonexistent" in err
    assert not (tmp_path / "o").exists()
    (tmp_path / "empty").mkdir()
    fake_record(tmp_path / "empty" / "f", status="failed")
    assert results.main([f"runs={tmp_path / 'empty'}", f"out={tmp_path / 'o'}", "tables=qa"]) == 0
    assert "warning: no complete run records" in capsys.readouterr().err


def test_reference_sheet_is_complete_and_sourced():
    ref = reference.load_reference(REF)
    assert ref["provenance"].str.len().min() > 0
    assert not ref.duplicated(["table", "setting", "dataset", "backbone", "method", "metric"]).any()
    # Spot checks transcribed separately from the paper and the UMT model zoo (not from this sheet), at least
    # one per block of the sheet: leaderboard, zero-shot, QA, Figure 1, GFLOPs, baselines, claims.
    expect = {("finetuned", "lsmdc", "umt_l", "vidtldr", "v2t_r10"): 70.2,
              ("finetuned", "didemo", "umt_l", "vidtldr", "t2v_r5"): 91.2,
              ("finetuned", "ssv2_template", "umt_l", "vidtldr", "t2v_r1"): 90.2,
              ("zeroshot", "msvd", "umt_l", "vidtldr", "v2t_r1"): 75.7,
              ("qa", "msrvtt_qa", "umt_l", "vidtldr", "acc"): 47.0,
              ("fig1", "msrvtt", "umt_b", "vidtldr", "r1_mean"): 50.8,
              ("fig1", "didemo", "umt_b", "tome", "gflops"): 223.9,
              ("fig1", "msvd_qa", "umt_b", "none", "acc"): 49.5,
              ("gflops", "msrvtt", "umt_l", "vidtldr", "gflops"): 543.4,
              ("gflops", "didemo", "umt_b", "vidtldr", "gflops"): 212.8,
              ("finetuned", "didemo", "umt_l", "none", "t2v_r10"): 93.5,
              ("zeroshot", "lsmdc", "umt_b", "none", "t2v_r1"): 19.1,
              ("claims", "didemo", "umt_l", "vidtldr", "gflops_reduction_pct"): 42.1,
              ("zeroshot", "anet", "umt_l", "vidtldr", "v2t_r10"): 79.1,
              ("qa", "msvd_qa", "umt_l", "vidtldr", "acc"): 54.9,
              ("fig1", "ssv2_template", "umt_b", "tome", "gflops"): 241.4,
              ("finetuned", "msvd", "umt_b", "none", "v2t_r1"): 73.3,
              ("qa", "anet_qa", "umt_l", "none", "acc"): 47.9}
    for (table, dataset, backbone, method, metric), value in expect.items():
        hit = ref[(ref.table == table) & (ref.dataset == dataset) & (ref.backbone == backbone)
                  & (ref.method == method) & (ref.metric == metric)]
        assert hit["value"].tolist() == [value]
