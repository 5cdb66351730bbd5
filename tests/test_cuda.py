"""The GPU paths: float32 parity with the official golden outputs on CUDA, and CUDA-only behaviour.

Every test here is marked ``cuda`` and skipped without a GPU; ``pytest -m cuda`` runs exactly this
subset (plus the autocast test in test_models_precision.py). They need only torch, numpy and the
package itself (no Hydra, no video decoders), so they run on a bare GPU image. What was last
verified, on which card, is recorded in docs/testing.md."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

pytestmark = pytest.mark.cuda


def test_parity_script_passes_on_cuda_in_float32(umt_tiny_dir):
    """The whole golden comparison (token counts and merge indices exactly, floats within 1e-4) with
    the model on the GPU. TF32 is switched off so that float32 means float32 on Ampere and later."""
    env = {**os.environ, "NVIDIA_TF32_OVERRIDE": "0", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_parity.py"), str(umt_tiny_dir),
                           "--device", "cuda"], capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    assert not [line for line in lines if line.startswith("FAIL  ")]
    for mode in ("fused", "materialized"):
        assert any(line.startswith("PASS") and f"[{mode}] vidtldr_on.merge_trace[1].src_idx " in line for line in lines)


def test_device_resolution_and_itm_rerank_on_cuda(umt_tiny_dir):
    from vidtldr.models import build_model, config_from_official, load_checkpoint
    from vidtldr.models.precision import resolve_device
    from vidtldr.tasks.retrieval import encode_texts, itc_scores, itm_rerank

    resolve_device("cuda")  # no error where a GPU exists
    model = build_model(config_from_official(umt_tiny_dir / "config.json", umt_tiny_dir / "bert_config.json"))
    load_checkpoint(model, umt_tiny_dir / "checkpoint.pth")
    inputs = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)
    official = torch.load(umt_tiny_dir / "expected.pt", weights_only=True)["vidtldr_off"]
    model = model.cuda().eval()
    with torch.no_grad():
        out = model.encode_vision(inputs["videos"].cuda())
    text = encode_texts(model, inputs["input_ids"], inputs["attention_mask"])
    scores = itm_rerank(model, itc_scores(model.itc_vision(out.pooled).float().cpu(), text.feat), text,
                        out.tokens.float().cpu(), k_test=4)
    assert scores.i2t.device.type == "cpu"  # score matrices come back to the host
    assert torch.equal(scores.i2t == -100.0, official["i2t"] == -100.0)
    assert torch.equal(scores.t2i == -100.0, official["t2i"] == -100.0)
    kept = official["i2t"] != -100.0
    assert torch.allclose(scores.i2t[kept], official["i2t"][kept].float(), atol=1e-3)


@pytest.mark.parametrize("name", ["random", "tome", "vidtldr", "fastv"])  # fastv: the pruners' apply_keep
def test_reducers_keep_their_tensors_on_the_gpu_and_decide_as_on_the_cpu(name):
    """Provenance, sizes and trace indices are made on the tokens' device (a CPU tensor there would
    fail or copy every block), and the decisions are the CPU's (random drop draws on the CPU)."""
    from vidtldr.reduce import ReductionState, build_reducer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 8, generator=g)
    aux = {"keys": torch.randn(2, 16, 4, generator=g), "neg_entropy": -torch.rand(2, 16, 1, generator=g),
           "attn": torch.randn(2, 16, 16, generator=g).softmax(dim=-1)}
    runs = {}
    for device in ("cpu", "cuda"):
        state = ReductionState(trace_source=True, record_trace=True)
        out = build_reducer(name, [4]).reduce(x.to(device), 0, state, {k: v.to(device) for k, v in aux.items()})
        runs[device] = (out, state)
    (out_cpu, cpu), (out, gpu) = runs["cpu"], runs["cuda"]
    assert out.device.type == gpu.source.device.type == "cuda"
    torch.testing.assert_close(gpu.source.cpu(), cpu.source)  # vid-TLDR's rows carry saliencies
    torch.testing.assert_close(out.cpu(), out_cpu)
    for key, value in cpu.trace[0].items():
        if key.endswith("_idx"):
            assert gpu.trace[0][key].device.type == "cuda" and torch.equal(gpu.trace[0][key].cpu(), value), key
