"""Data-parallel evaluation under ``torchrun`` (or ``srun``): a thin layer over ``torch.distributed``.

A run with ``WORLD_SIZE > 1`` in its environment splits the work by rank:

* video feature extraction: each rank encodes a contiguous share of the distinct videos and writes
  the per-video cache shards (the cache directory is shared on disk), then all ranks meet at a
  barrier;
* ITM re-ranking: each rank scores a contiguous share of the rows of both matrices (videos for
  video->text, texts for text->video); the rows are combined with one ``all_reduce`` (sum) in
  which every rank contributes zeros outside its own rows, so the combined matrices are bit-for-bit
  the single-process ones;
* rank 0 computes the metrics and is the only rank that writes the run record.

Without a distributed environment every helper degrades to the single-process behaviour, so the
runner calls them unconditionally.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

from vidtldr.errors import ConfigError

log = logging.getLogger(__name__)

# A rank that waits longer than this at a collective (e.g. another rank died while decoding) fails
# instead of hanging forever; generous because rank 0 may build a large feature store meanwhile.
DEFAULT_TIMEOUT_MIN = 60


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False  # True when this module created the process group (and should destroy it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend}


SINGLE = DistContext()


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's environment: torchrun's ``RANK`` /
    ``WORLD_SIZE`` / ``LOCAL_RANK``, else SLURM's task variables (one task per GPU under ``srun``
    or the submitit launcher with ``tasks_per_node > 1``), else a single process."""
    env = os.environ
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def _slurm_rendezvous() -> None:
    """Under SLURM without torchrun, ``init_process_group("env://")`` still needs the master's
    address and port; submitit's helper derives them from the job's node list when available."""
    if "MASTER_ADDR" in os.environ and "MASTER_PORT" in os.environ:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment
    except ImportError as exc:
        raise ConfigError("a multi-task SLURM job needs MASTER_ADDR and MASTER_PORT (or the submitit package) "
                          "to set up torch.distributed; or start the ranks with torchrun") from exc
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def init(device: str = "cpu", timeout_min: int = DEFAULT_TIMEOUT_MIN) -> DistContext:
    """Join (or create) the default process group when the environment names more than one rank.
    gloo on CPU, nccl on CUDA, where each rank takes the GPU of its local rank."""
    rank, world, local = env_world()
    if world <= 1:
        return SINGLE
    on_cuda = torch.device(device).type == "cuda"
    backend = "nccl" if on_cuda else "gloo"
    if dist.is_available() and dist.is_initialized():
        return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                           backend=dist.get_backend(), owns_group=False)
    if not dist.is_available():
        raise ConfigError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    if "RANK" not in os.environ:
        _slurm_rendezvous()
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    if on_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_min))
    log.info("torch.distributed: rank %d of %d (%s)", rank, world, backend)
    return DistContext(rank=rank, world_size=world, local_rank=local, backend=backend, owns_group=True)


def device_for(ctx: DistContext, device: str) -> str:
    """``cuda`` means this rank's own GPU when several ranks share a node."""
    if ctx.enabled and device == "cuda":
        return f"cuda:{ctx.local_rank}"
    return device


def shutdown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


# ----------------------------------------------------------------------------- sharding


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous share ``[lo, hi)`` of ``n`` items for ``rank``: sizes differ by at most one, and the
    shares tile ``range(n)`` in order (as the official ``start = rank * step`` split, but balanced)."""
    base, extra = divmod(n, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def shard(items: Sequence[Any], ctx: DistContext) -> list:
    lo, hi = shard_bounds(len(items), ctx.rank, ctx.world_size)
    return list(items[lo:hi])


# ----------------------------------------------------------------------------- collectives


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def _comm_device(ctx: DistContext) -> torch.device:
    # nccl moves CUDA tensors only; gloo CPU tensors.
    return torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else torch.device("cpu")


def combine_rows(matrix: torch.Tensor, own_rows: Sequence[int], ctx: DistContext) -> torch.Tensor:
    """Every rank holds the full-size ``matrix`` but only ``own_rows`` of it are its results; the
    other rows are zeroed before a sum over ranks, so each row comes from its owner exactly (x + 0 is
    exact in floating point; the official code sums -100-filled matrices, which shifts whole rows)."""
    if not ctx.enabled:
        return matrix
    mine = torch.zeros(matrix.shape[0], dtype=torch.bool)
    mine[list(own_rows)] = True
    local = torch.where(mine.view(-1, *([1] * (matrix.dim() - 1))), matrix, torch.zeros((), dtype=matrix.dtype))
    local = local.to(_comm_device(ctx))
    dist.all_reduce(local, op=dist.ReduceOp.SUM)
    return local.to(matrix.device)


def all_gather_objects(obj: Any, ctx: DistContext) -> list:
    """One picklable object per rank, in rank order (small things: skipped videos, counters)."""
    if not ctx.enabled:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    if not ctx.enabled:
        return obj
    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]
