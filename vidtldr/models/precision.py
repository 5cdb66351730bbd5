"""Device and numeric precision for inference.

CPU float32 is the default and the reference (parity is proven there). On CUDA, ``fp16`` (what the
official evaluation uses: ``torch.cuda.amp.autocast``) and ``bf16`` run under autocast; weights
stay float32. CPU autocast is offered for ``bf16`` only (float16 matmuls on CPU are slow and not
what the official code ran).
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

import torch

from vidtldr.errors import ConfigError

Precision = Literal["fp32", "fp16", "bf16"]
PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"cpu"`` -> CPU; ``"cuda"``/``"cuda:N"`` only when CUDA is available."""
    dev = torch.device("cpu" if device is None else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} requested but CUDA is not available (torch {torch.__version__})")
    return dev


def use_deterministic_kernels() -> None:
    """Deterministic kernels for the rest of the process. On CUDA the merges' scatter-add otherwise
    accumulates with atomics, whose order varies between runs: near a tie, two runs (or the fused and
    the materialized execution) can then merge different tokens. cuBLAS needs its workspace setting
    for this, read when its first handle is made, so it is set here if the user has not."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device a model's weights are on (where its inputs must go)."""
    return next(model.parameters()).device


def autocast_context(device: str | torch.device, precision: Precision = "fp32"):
    """A context manager for running the model at ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    dev = torch.device(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if dev.type == "cpu" and precision == "fp16":
        raise ConfigError("precision=fp16 is CUDA-only here; on CPU use fp32 (the reference) or bf16")
    return torch.autocast(device_type=dev.type, dtype=_DTYPES[precision])


__all__ = ["autocast_context", "resolve_device", "PRECISIONS", "Precision"]
