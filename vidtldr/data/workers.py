"""How many processes decode videos (``data.num_workers``), and how many threads each may use.

``auto`` is the number of cores this process may run on (``os.sched_getaffinity``: a container's or
a job scheduler's CPU set, not the machine's core count), shared between the data-parallel ranks
on this machine, capped at :data:`AUTO_CAP`. On a CPU run the encoder needs cores too, so one core
is left to it. Each worker decodes with one thread (decord and PyAV are opened single-threaded,
torch's resize runs on one thread), so ``N`` workers occupy at most ``N`` cores.
"""

from __future__ import annotations

import os

AUTO = "auto"
# Beyond this, more decode processes mostly add memory (each holds a decoder and prefetched batches).
AUTO_CAP = 8


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def local_ranks() -> int:
    """Processes of one data-parallel run on this machine (torchrun sets LOCAL_WORLD_SIZE)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def auto_workers(cores: int, device_type: str, ranks: int = 1, cap: int = AUTO_CAP) -> int:
    """``data.num_workers=auto``: this rank's share of the cores, one left to a CPU encoder, capped;
    at least 1 (decoding then overlaps the encoder)."""
    share = max(1, cores // max(1, ranks))
    if device_type == "cpu":
        share -= 1
    return max(1, min(cap, share))


def resolve_num_workers(value, device_type: str) -> int:
    """The worker count a run uses for ``data.num_workers`` (an integer >= 0, or ``auto``).
    Validation (one message naming the key) is the resolver's; this only turns ``auto`` into a number."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return auto_workers(usable_cores(), device_type, local_ranks())
    return int(value)


def worker_init(_worker_id: int = 0) -> None:
    """DataLoader worker init: one compute thread per worker, so that N workers beside the encoder
    do not oversubscribe the cores (the DataLoader sets torch's threads to 1 too; this also covers
    OpenMP/MKL code loaded later and makes the choice explicit)."""
    import torch

    torch.set_num_threads(1)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
