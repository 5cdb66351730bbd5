"""Parity with the official implementation's golden outputs (tests/fixtures/umt_tiny)."""

import shutil
import subprocess
import sys

import torch

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "check_parity.py"


def _run(folder, *extra):
    return subprocess.run([sys.executable, str(SCRIPT), str(folder), *extra], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)


def test_check_parity_passes_on_the_shared_fixture_in_both_attention_modes(umt_tiny_dir):
    proc = _run(umt_tiny_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert not [l for l in lines if l.startswith("FAIL  ")]
    # Every expected output section is checked under both execution modes.
    for mode in ("fused", "materialized"):
        for entry in ("vidtldr_on.vision_embeds", "vidtldr_on.merge_trace[1].src_idx", "vidtldr_off.i2t",
                      "vidtldr_on.metrics_itm.img_r1", "qa.vidtldr_on.topk_ids", "qa.vidtldr_on.topk_probs"):
            assert any(l.startswith("PASS") and f"[{mode}] {entry} " in l for l in lines), (mode, entry)
    # ITM re-ranking and QA question encoding are also checked with the grouped engine.
    for mode in ("fused", "materialized"):
        for entry in ("vidtldr_on.grouped.i2t", "vidtldr_off.grouped.t2i", "vidtldr_on.grouped.t2i_topk_idx",
                      "vidtldr_on.grouped.metrics_itm.r_mean", "qa.vidtldr_on.grouped.topk_ids",
                      "qa.vidtldr_on.grouped.question_states"):
            assert any(l.startswith("PASS") and f"[{mode}] {entry} " in l for l in lines), (mode, entry)
    assert any(l.startswith("PASS  merge.fractional_r_batch4.src_idx") for l in lines)
    assert any(l.startswith("PASS  text.input_ids") for l in lines)


def test_check_parity_fails_when_a_golden_tensor_is_perturbed(umt_tiny_dir, tmp_path):
    folder = tmp_path / "fixture"
    shutil.copytree(umt_tiny_dir, folder)
    expected = torch.load(folder / "expected.pt", weights_only=True)
    expected["vidtldr_on"]["vision_embeds"][0, 0, 0] += 1e-3  # 10x the float tolerance
    expected["vidtldr_on"]["t2i_topk_idx"][0] = expected["vidtldr_on"]["t2i_topk_idx"][0].flip(0)
    torch.save(expected, folder / "expected.pt")
    proc = _run(folder, "--attention", "fused")
    assert proc.returncode == 1
    failed = [l for l in proc.stdout.splitlines() if l.startswith("FAIL  ")]
    assert len(failed) == 3, failed  # the embeddings, and the candidates under each ITM engine
    assert any("vidtldr_on.vision_embeds" in l for l in failed)
    assert any("vidtldr_on.t2i_topk_idx" in l for l in failed)
    assert any("vidtldr_on.grouped.t2i_topk_idx" in l for l in failed)
