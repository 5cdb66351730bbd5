"""scripts/check_data_parity.py on the committed fixture, and on altered copies of it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "check_data_parity.py"


def _run(folder):
    return subprocess.run([sys.executable, str(SCRIPT), str(folder)], capture_output=True, text=True, timeout=600)


def test_parity_passes_on_committed_fixture(data_formats_dir):
    res = _run(data_formats_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert not [l for l in lines if l.startswith("FAIL")]
    # one line per compared item: pre_text cases, every format folder, every video
    assert sum(l.startswith("OK   pre_text") for l in lines) == 29
    for fmt in ("msvd", "ssv2_template", "msrvtt_qa", "lsmdc_paragraph_zs_anet_l16"):
        assert any(l.startswith(f"OK   format {fmt}: ") for l in lines), fmt
    assert any("video m7_730f_23.976fps_32x24.mp4 n12_trim30: indices" in l for l in lines)


@pytest.fixture
def fixture_copy(data_formats_dir, tmp_path):
    dst = tmp_path / "fx"
    # Only what the altered checks need: text cases + two formats + videos (skip the .pt to stay fast).
    dst.mkdir()
    shutil.copy(data_formats_dir / "pre_text_cases.json", dst)
    for fmt in ("msvd", "ssv2_label"):
        shutil.copytree(data_formats_dir / fmt, dst / f"renamed_{fmt}")
    return dst


def test_parity_discovers_renamed_folders_and_flags_mismatches(fixture_copy):
    assert _run(fixture_copy).returncode == 0
    exp = fixture_copy / "renamed_msvd" / "expected.json"
    data = json.loads(exp.read_text())
    data["text"][1] = "something else"
    exp.write_text(json.dumps(data))
    res = _run(fixture_copy)
    assert res.returncode == 1
    assert "FAIL format renamed_msvd: text" in res.stdout


def test_parity_with_other_record_counts(fixture_copy):
    folder = fixture_copy / "renamed_ssv2_label"
    anno = json.loads((folder / "annotation.json").read_text())[:2]
    (folder / "annotation.json").write_text(json.dumps(anno))
    exp = json.loads((folder / "expected.json").read_text())
    exp.update(text=exp["text"][:2], image=exp["image"][:2], txt2img=exp["txt2img"][:2], img2txt=exp["img2txt"][:2],
               len_dataset=2, getitem=exp["getitem"][:2])
    (folder / "expected.json").write_text(json.dumps(exp))
    assert _run(fixture_copy).returncode == 0


def test_parity_flags_wrong_frame_indices(data_formats_dir, tmp_path):
    import torch

    dst = tmp_path / "fx"
    (dst / "videos").mkdir(parents=True)
    pt = torch.load(data_formats_dir / "frames_expected.pt", weights_only=True)
    name = "m2_7f_5fps_32x32.mp4"
    shutil.copy(data_formats_dir / "videos" / name, dst / "videos" / name)
    pt["videos"] = {name: pt["videos"][name]}
    pt["full_examples"] = []
    assert _run_with(pt, dst).returncode == 0
    pt["videos"][name]["settings"]["n12"]["indices"][3] += 1
    res = _run_with(pt, dst)
    assert res.returncode == 1 and f"FAIL video {name} n12: indices" in res.stdout


def _run_with(pt, dst):
    import torch

    torch.save(pt, dst / "frames_expected.pt")
    return _run(dst)
