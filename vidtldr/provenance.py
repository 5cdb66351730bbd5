"""Where and with what a result was produced: the one machine block every benchmark writes
(``results/bench*.json``, ``bench_scale.json``, ``compare.json``) and the package versions every run
record holds. One shape, so a reader of any result finds the same keys."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from typing import Iterable, Optional

# Packages whose versions can change numbers or behaviour.
PACKAGES = ("vidtldr", "torch", "numpy", "transformers", "hydra-core", "omegaconf", "decord", "av",
            "fvcore", "pandas", "wandb")


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, Optional[str]]:
    """Python's version and each package's installed version (None when it is not installed)."""
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def load_average() -> Optional[list[float]]:
    """The 1, 5 and 15 minute load averages, rounded (None where the system has none): on a shared
    machine they say how much of a wall-clock time was waiting for a core."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine(device: Optional[str] = None) -> dict:
    """The machine block: platform, CPU, cores, Python, torch and its threads, OMP_NUM_THREADS, and
    with a CUDA ``device`` the GPU's name. No host name: results are committed and shared."""
    import torch

    info = {"platform": platform.platform(), "machine": platform.machine(), "processor": cpu_name(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    if device is not None:
        info["device"] = device
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info
