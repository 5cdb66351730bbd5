"""make bench-decode end to end at a tiny size: the report names the machine and its load, every
decoder's frames are compared with decord's, and the frame cache's warm read is reported beside the
encoder's recorded time."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import ROOT

from vidtldr.analysis.bench.decode import main


@pytest.mark.slow
def test_bench_decode_writes_its_report(tmp_path, capsys):
    for name in ("bench_eval.json", "bench_eval_cuda.json"):  # the encoder's measured seconds per video
        shutil.copy(ROOT / "results" / name, tmp_path / name)
    assert main(["--out", str(tmp_path), "--msrvtt-videos", "1", "--msrvtt-seconds", "2", "--anet-videos", "1", "--anet-seconds", "1",
                 "--repeats", "1", "--note", "test run"]) == 0
    result = json.loads((tmp_path / "bench_decode.json").read_text())
    md = (tmp_path / "bench_decode.md").read_text()
    assert "test run" in md and "load average" in md and f"{result['machine']['cores']} cores" in md
    for kind in ("msrvtt", "anet"):
        rows = {r["decoder"]: r for r in result["kinds"][kind]["decoders"]}
        assert rows["pyav"]["frames_equal_decord"] is True and rows["pyav"]["max_abs_diff"] == 0
        assert {r["num_workers"] for r in result["kinds"][kind]["workers"]} >= {0, 1, 2}
        assert result["kinds"][kind]["frame_cache"]["entry_mib"] > 1.7  # 12 x 3 x 224 x 224 bytes = 1.72 MiB
    assert {r["encoder"] for r in result["share"]} == {"cpu", "cuda"}
    for r in result["share"]:  # rounded to 0.1: seconds of decoding beside 17 ms of GPU encoder read 100.0, a warm cache beside 50 s of CPU encoder 0.0
        assert 0 <= r["decode_share_pct"] <= 100
        assert abs(r["decode_share_pct"] - 100 * r["decode_ms"] / (r["decode_ms"] + r["encoder_ms"])) < 0.2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]).keys() == {"msrvtt_ms", "anet_ms"}
