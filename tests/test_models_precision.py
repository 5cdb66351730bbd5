"""Device and precision options: CPU float32 is the default; autocast is opt-in."""

import pytest
import torch

from vidtldr.errors import ConfigError
from vidtldr.models import build_model, config_from_official, load_checkpoint
from vidtldr.models.precision import autocast_context, resolve_device


def test_fp32_is_a_no_op_and_fp16_on_cpu_is_refused():
    with autocast_context("cpu", "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ConfigError, match="CUDA-only"):
        autocast_context("cpu", "fp16")
    with pytest.raises(ConfigError, match="precision must be"):
        autocast_context("cpu", "fp8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")


def test_bf16_autocast_runs_close_to_fp32(umt_tiny_dir):
    model = build_model(config_from_official(umt_tiny_dir / "config.json"))
    load_checkpoint(model, umt_tiny_dir / "checkpoint.pth")
    videos = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)["videos"][:2]
    with torch.no_grad():
        ref = model.encode_vision(videos).tokens
        for mode in ("fused", "materialized"):
            model.set_attention(mode)
            with autocast_context("cpu", "bf16"):
                low = model.encode_vision(videos).tokens
            assert low.dtype == torch.bfloat16
            assert (low.float() - ref).abs().max() < 0.25  # bf16 keeps ~3 significant digits


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_autocast_matches_cpu(umt_tiny_dir, precision):
    model = build_model(config_from_official(umt_tiny_dir / "config.json"))
    load_checkpoint(model, umt_tiny_dir / "checkpoint.pth")
    videos = torch.load(umt_tiny_dir / "inputs.pt", weights_only=True)["videos"]
    with torch.no_grad():
        ref = model.encode_vision(videos).tokens
        model.cuda()
        with autocast_context("cuda", precision):
            low = model.encode_vision(videos.cuda()).tokens
    assert (low.float().cpu() - ref).abs().max() < 0.25


def test_deterministic_kernels_switch_torch_and_cublas(monkeypatch):
    from vidtldr.models.precision import use_deterministic_kernels

    import os

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "unset")
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")  # restored to its original state after the test
    before = torch.are_deterministic_algorithms_enabled()
    try:
        use_deterministic_kernels()
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before)
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
