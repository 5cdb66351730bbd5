"""The scale benchmark's plumbing on tiny sizes: scaled datasets, one measured subprocess per row,
the JSON/Markdown report. No memory or time assertions (those numbers belong in results/)."""

from __future__ import annotations

import json

import pytest

from vidtldr.analysis.bench.scale import bench, make_scaled_dataset
from vidtldr.data.annotations import load_split
from vidtldr.data.registry import load_dataset_config
from vidtldr.run.runner import ensure_tiny_data


def test_scaled_dataset_has_distinct_videos_over_the_same_files(tmp_path):
    tiny = ensure_tiny_data(tmp_path / "cache", "msrvtt")
    root = make_scaled_dataset(tiny, tmp_path / "data", 17)
    split = load_split(load_dataset_config("msrvtt"), str(root))
    assert len(split.videos) == len(set(split.videos)) == len(split.texts) == 17
    assert split.txt2img == list(range(17)) and split.img2txt == [[i] for i in range(17)]
    files = {p.resolve() for p in (root / "videos" / "msrvtt").iterdir()}
    assert len(files) == 7  # seven real clips behind seventeen names


@pytest.mark.slow
def test_report_schema(tmp_path):
    result = bench([2, 3], tmp_path / "out", tmp_path / "work", modes=("cold", "memory"))
    saved = json.loads((tmp_path / "out" / "bench_scale.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert [(r["clips"], r["mode"]) for r in saved["rows"]] == [(2, "cold"), (2, "memory"), (3, "cold"),
                                                               (3, "memory")]
    for row in saved["rows"]:
        assert row["rc"] == 0 and row["status"] == "complete" and row["peak_rss_mib"] > 0
        assert row["videos"] == row["texts"] == row["clips"]
    cold = [r for r in saved["rows"] if r["mode"] == "cold"]
    assert [r["videos_decoded"] for r in cold] == [2, 3] and [r["store_bytes"] for r in cold] == [2 * 31744, 3 * 31744]
    assert set(saved["ratios"]) == {"cold", "memory"}
    md = (tmp_path / "out" / "bench_scale.md").read_text()
    assert "| 3 | memory |" in md and "Peak RSS ratio 3 / 2 clips" in md


def test_options_use_the_override_grammar_and_are_checked_before_any_run(tmp_path, capsys):
    from vidtldr.analysis.bench.scale import main, options

    opts = options(["sizes=[2,3]", "modes=[cold]", f"out={tmp_path}", "eval.k_test=2", "data.batch_size=1"])
    assert opts["sizes"] == [2, 3] and opts["modes"] == ["cold"] and opts["k_test"] == 2 and opts["batch_size"] == 1
    for argv, expected in ((["--sizes", "2"], "--sizes was replaced by the override grammar of every command: use "
                                                "sizes=[N,...]"),
                           (["modes=[hot]"], "modes=hot"), (["sizes=[0]"], "sizes=0: out of range")):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "bench_scale.json").exists()
