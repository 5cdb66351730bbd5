"""validate / inspect / bench CLIs and manifests on tiny data."""

import json
import subprocess
import sys

import pytest

from vidtldr.data import validate as V
from vidtldr.data.bench import decode_throughput
from vidtldr.data.inspect import main as inspect_main
from vidtldr.data.manifests import count_mismatches, load_manifest
from vidtldr.data.registry import all_dataset_configs
from vidtldr.data.tiny import CLIPS, make_tiny_dataset, write_clip


@pytest.fixture
def tiny_msrvtt(tmp_path):
    make_tiny_dataset(tmp_path, ["msrvtt", "msrvtt_qa"])
    return tmp_path


def _run_main(capsys, *args):
    code = V.main(list(args))
    out = capsys.readouterr().out.splitlines()
    return code, out, json.loads(out[-1])


def test_clean_tiny_dataset_passes(tiny_msrvtt, capsys, tmp_path):
    code, out, rep = _run_main(capsys, "dataset=msrvtt", f"paths.data={tiny_msrvtt}", "manifest=false",
                               f"out={tmp_path}")
    assert code == 0 and rep["ok"] and rep["problems"] == []
    assert rep["counts"] == {"records": 7, "videos": 7, "texts": 7}
    assert json.loads((tmp_path / "validate_msrvtt.json").read_text())["ok"] is True
    assert any("OK" in line for line in out)


def test_the_old_report_key_names_out(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        V.main(["dataset=msrvtt", f"report={tmp_path / 'r.json'}"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "vidtldr.data.validate: error: report= was renamed: use out= (the folder written into; the file names "
        "inside are fixed)"]


def test_count_mismatch_against_manifest(tiny_msrvtt, capsys):
    code, _, rep = _run_main(capsys, "dataset=msrvtt", f"paths.data={tiny_msrvtt}")
    assert code == 1
    # the tiny MSRVTT file has 7 clips with one caption each; the 1k-A manifest expects 1000 of each
    assert [(p["kind"], p["message"]) for p in rep["problems"]] == [
        ("count_mismatch", f"{key}: found 7, manifest expects 1000") for key in ("records", "videos", "texts")]
    assert all(p["file"].endswith("msrvtt_ret_test1k.yaml") for p in rep["problems"])


def test_missing_corrupt_and_bad_width_videos(tiny_msrvtt, capsys):
    vdir = tiny_msrvtt / "videos" / "msrvtt"
    (vdir / CLIPS[0].name).unlink()
    (vdir / CLIPS[1].name).write_bytes(b"garbage" * 100)
    write_clip(vdir / CLIPS[2].name, 5, 5, 48, 32)  # decord 0.6.0 width bug
    code, out, rep = _run_main(capsys, "dataset=msrvtt", f"paths.data={tiny_msrvtt}", "manifest=false")
    assert code == 1
    by_file = {p["file"].rsplit("/", 1)[-1]: p for p in rep["problems"]}
    assert by_file[CLIPS[0].name]["kind"] == "missing_video"
    assert by_file[CLIPS[1].name]["kind"] == "unreadable_video"
    assert by_file[CLIPS[2].name]["kind"] == "unreadable_video"
    assert "width 48" in by_file[CLIPS[2].name]["message"]
    assert any("missing_video: 1" in line for line in out)


def test_existence_only_mode_does_not_decode(tiny_msrvtt, capsys):
    (tiny_msrvtt / "videos" / "msrvtt" / CLIPS[1].name).write_bytes(b"garbage")
    # decode=false: existence only
    code, _, rep = _run_main(capsys, "dataset=msrvtt", f"paths.data={tiny_msrvtt}", "manifest=false", "decode=false")
    assert code == 0 and rep["decode"] is False


def test_schema_errors_have_record_and_field(tiny_msrvtt, capsys):
    anno = tiny_msrvtt / "anno_downstream" / "msrvtt_ret_test1k.json"
    recs = json.loads(anno.read_text())
    recs[2]["caption"] = 42
    del recs[4]["video"]
    anno.write_text(json.dumps(recs))
    code, out, rep = _run_main(capsys, "dataset=msrvtt", f"paths.data={tiny_msrvtt}", "manifest=false")
    assert code == 1
    schema = [(p["record"], p["field"]) for p in rep["problems"] if p["kind"] == "schema"]
    assert schema == [(2, "caption"), (4, "video")]
    assert any("record 2, field 'caption'" in line for line in out)


def test_malformed_and_missing_annotation(tiny_msrvtt, capsys):
    anno = tiny_msrvtt / "anno_downstream" / "msrvtt_qa_test.json"
    anno.write_text('[{"video": "x.mp4",')
    code, _, rep = _run_main(capsys, "dataset=msrvtt_qa", f"paths.data={tiny_msrvtt}", "manifest=false")
    assert code == 1 and rep["problems"][0]["kind"] == "invalid_json"
    anno.unlink()
    code, _, rep = _run_main(capsys, "dataset=msrvtt_qa", f"paths.data={tiny_msrvtt}", "manifest=false")
    assert code == 1 and rep["problems"][0]["kind"] == "missing_annotation"


def test_qa_wrong_field_type(tiny_msrvtt, capsys):
    anno = tiny_msrvtt / "anno_downstream" / "msrvtt_qa_test.json"
    recs = json.loads(anno.read_text())
    recs[1]["question_id"] = [1]
    anno.write_text(json.dumps(recs))
    code, _, rep = _run_main(capsys, "dataset=msrvtt_qa", f"paths.data={tiny_msrvtt}", "manifest=false")
    assert code == 1
    assert [(p["record"], p["field"]) for p in rep["problems"]] == [(1, "question_id")]


def test_cli_usage_errors_exit_2(tmp_path):
    res = subprocess.run([sys.executable, "-m", "vidtldr.data.validate", "dataset=nope", f"paths.data={tmp_path}"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "dataset/nope" in res.stderr and "msrvtt" in res.stderr  # lists the known ones
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) <= 30
    res = subprocess.run([sys.executable, "-m", "vidtldr.data.validate", f"paths.data={tmp_path}"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "dataset" in res.stderr and "Traceback" not in res.stderr


def test_manifests_cover_every_config_and_never_invent_checksums():
    for name, cfg in all_dataset_configs().items():
        man = load_manifest(cfg["annotation"])
        assert man is not None, name
        assert name in man["datasets"] and man["video_dir"] == cfg["video_dir"]
        assert man["answer_list"] == cfg.get("answer_list")
        assert man["provenance"]["annotations"] and man["provenance"]["videos"]
        assert all(v is None for v in man["checksums"].values())
    assert load_manifest("didemo_ret_test.json")["quirks"]
    assert count_mismatches({"videos": 3, "texts": None}, {"videos": 2, "texts": 9}) == ["videos: found 2, manifest expects 3"]


def test_inspect_cli_last_line_json_and_sheet(tmp_path, capsys):
    clip = write_clip(tmp_path / "c.mp4", 7, 5, 40, 30)
    sheet = tmp_path / "s.png"
    assert inspect_main([str(clip), "--num-frames", "12", "--trimmed30", "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out.splitlines()
    res = json.loads(out[-1])
    assert res["num_video_frames"] == 7 and res["fps"] == pytest.approx(5.0)
    assert res["indices"] == [0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6]
    from PIL import Image

    with Image.open(sheet) as im:
        assert im.width > 224 * 6 and im.height > 224 * 2  # 12 frames, 6 per row, 224x224 each


def test_inspect_frame_count_option(tmp_path, capsys):
    clip = write_clip(tmp_path / "c.mp4", 20, 10, 40, 30)
    assert inspect_main([str(clip), "--num-frames", "4"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["indices"] == [2, 7, 12, 17]


def test_bench_reports_throughput(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", 6, 5, 40, 30)
    res = decode_throughput([clip, clip], num_frames=2, size=32, repeats=1, warmup=0)
    assert res["clips"] == 2 and res["clips_per_s"] > 0 and len(res["seconds"]) == 1
