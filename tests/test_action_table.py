"""The action-recognition table: its planned runs (vid-TLDR's UMT schedules as fractions, by hand),
the refusal without checkpoints and data, and the rendered rows with the VideoMAE paper's numbers."""

import subprocess
import sys
from pathlib import Path

import pytest

from vidtldr.report.plan import plan
from vidtldr.report.reference import load_reference, paper_value

ROOT = Path(__file__).resolve().parent.parent


def _resolved(run):
    from vidtldr.config_utils import compose_config
    from vidtldr.run.runspec import resolve_model

    return resolve_model(compose_config(run.all_overrides()))


def test_schedules_are_the_umt_fractions():
    runs = plan("action")
    assert len(runs) == 12 and {r.model for r in runs} == {"videomae_b", "videomae_l"}
    assert {r.overrides for r in runs if r.merge != "none"} == {("merge.r=umt_fractions",)}

    def schedule(dataset, model, merge):
        run = [r for r in runs if (r.dataset, r.model, r.merge) == (dataset, model, merge)][0]
        spec = _resolved(run)
        assert spec.schedule_spec == "umt_fractions" and "no vid-TLDR schedule was published" in spec.schedule_note
        return [e for e in spec.schedule if e]

    # UMT-B MSRVTT removes 600, 200, 100 of 2352 tokens: 600/2352 = 0.255102.., 200/1752 = 0.114155..,
    # 100/1552 = 0.064433.., each taken up to 4 decimals (so it gives back 600, 200, 100 of UMT's tokens)
    assert schedule("kinetics400", "videomae_b", "tome") == [0.2552, 0.1142, 0.0645]
    # UMT-L SSv2-label removes 450, 250, 100: 450/2352 = 0.19132.., 250/1902 = 0.13144.., 100/1652 = 0.06053..
    assert schedule("ssv2", "videomae_l", "vidtldr") == [0.1914, 0.1315, 0.0606]


def test_paper_numbers_with_provenance():
    ref = load_reference()
    for dataset, backbone, value in (("kinetics400", "videomae_b", 81.5), ("kinetics400", "videomae_l", 85.2),
                                     ("ssv2", "videomae_b", 70.8), ("ssv2", "videomae_l", 74.3)):
        got, provenance = paper_value(ref, ("action",), "finetuned", dataset, backbone, "none", "top1")
        assert got == value and "VideoMAE paper" in provenance


def test_table_action_refuses_without_checkpoints_and_data(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "paper_table.py"), "action", "--runs",
                          str(tmp_path / "runs"), "--", f"paths.data={tmp_path}/data",
                          f"paths.checkpoints={tmp_path}/ckpt"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "8 input(s) of the action table (12 runs) are missing" in res.stderr
    assert f"{tmp_path}/ckpt/MCG-NJU/videomae-large-finetuned-ssv2" in res.stderr
    assert "k400_val.csv" in res.stderr and "VideoMAE's list files" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_rendered_rows_name_the_baseline_and_the_reference(tmp_path):
    from vidtldr.report.results import build_all

    (tmp_path / "runs").mkdir()
    paths = build_all([tmp_path / "runs"], tmp_path / "out", ["action"])["action"]
    text = paths["md"].read_text()
    assert "| Kinetics-400 | VideoMAE-B/16 | VideoMAE | not run (81.5) |" in text
    assert "| SSv2 | VideoMAE-L/16 | +ToMe |" in text
    # the one model-card figure that could be read (VideoMAE-B K400: top-1 80.9, top-5 94.7), with its provenance
    assert "| Kinetics-400 | VideoMAE-B/16 | VideoMAE | not run (81.5) | not run (–) | 80.9 / 94.7 |" in text
    assert "| Kinetics-400 | VideoMAE-L/16 | VideoMAE | not run (85.2) | not run (–) | – |" in text
    assert "third-party copy of the card (the huggingface.co page was not readable from our machine" in text
    import pandas as pd

    table = pd.read_csv(paths["csv"])
    base = table[(table.dataset == "kinetics400") & (table.backbone == "videomae_b") & (table.method == "none")].iloc[0]
    assert (base.top1_card, base.top5_card) == (80.9, 94.7)
    assert "openllmlist.com/videomae-base-finetuned-kinetics-by-mcg-nju" in base.card_source
    assert table.top1_card.notna().sum() == 1  # no figure for the other cards
    assert sorted(p.suffix for p in paths.values()) == [".csv", ".md", ".tex"]


@pytest.mark.parametrize("clips, crops", [(5, 3), (1, 1)])
def test_only_the_protocols_views_fill_a_row(clips, crops):
    from vidtldr.report.rows import row_settings, settings_mismatch

    expected = row_settings("action", "kinetics400", "videomae_b", "none")
    assert expected["views"]["views"] == 15
    run = {**expected, "precision": "fp32", "token_store_dtype": "fp32",
           "views": {**expected["views"], "clips": clips, "crops": crops, "views": clips * crops}}
    assert (settings_mismatch(run, expected) == []) == (clips * crops == 15)
