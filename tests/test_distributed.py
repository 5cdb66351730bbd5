"""Data-parallel evaluation: sharding, exact row combination, ITM row subsets, and two CPU ranks
under torchrun (gloo) whose one record has exactly the single-process metrics."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vidtldr.run import distributed as D
from vidtldr.eval import rank_overrides
from vidtldr.tasks.retrieval import NOT_RERANKED, TextFeatures, itc_scores, itm_rerank
from vidtldr.run.runner import SCRATCH, run

from _eval_helpers import make_cfg, read, stable_view

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("n,world", [(0, 2), (1, 2), (7, 2), (7, 3), (128, 5), (3, 8)])
def test_shards_tile_the_items_in_order_and_balance(n, world):
    bounds = [D.shard_bounds(n, r, world) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(bounds[r][1] == bounds[r + 1][0] for r in range(world - 1))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1
    ctx = [D.DistContext(rank=r, world_size=world) for r in range(world)]
    assert sum((D.shard(list(range(n)), c) for c in ctx), []) == list(range(n))


def test_single_process_helpers_are_identities(monkeypatch):
    calls = []

    class _Recorder:  # stands in for torch.distributed: records what the helpers ask of it
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append(name)

    monkeypatch.setattr(D, "dist", _Recorder())
    m = torch.randn(3, 4)
    assert D.combine_rows(m, [0], D.SINGLE) is m
    assert D.all_gather_objects({"a": 1}, D.SINGLE) == [{"a": 1}]
    assert D.broadcast_object("x", D.SINGLE) == "x"
    assert D.shard(["a", "b"], D.SINGLE) == ["a", "b"]
    D.barrier(D.SINGLE)
    assert calls == []  # a single process never talks to torch.distributed
    D.barrier(D.DistContext(rank=0, world_size=2))
    assert calls == ["barrier"]  # with two ranks, every one waits at the barrier


def test_world_from_torchrun_or_slurm_environment(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"):
        monkeypatch.delenv(var, raising=False)
    assert D.env_world() == (0, 1, 0) and D.init() is D.SINGLE
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert D.env_world() == (3, 4, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert D.env_world() == (1, 2, 1)  # torchrun's variables win
    assert D.device_for(D.DistContext(rank=1, world_size=2, local_rank=1), "cuda") == "cuda:1"
    assert D.device_for(D.DistContext(rank=1, world_size=2, local_rank=1), "cpu") == "cpu"


def test_only_rank_0_keeps_hydra_outputs():
    assert rank_overrides({"RANK": "0", "WORLD_SIZE": "2"}) == []
    assert rank_overrides({}) == []
    extra = rank_overrides({"RANK": "1", "WORLD_SIZE": "2"})
    assert "hydra.output_subdir=null" in extra and any(".rank1.log" in x for x in extra)


class _ScoringModel(torch.nn.Module):
    """Stands in for UMT's ITM head: a fixed nonlinear score of (text, video) pairs, so the test is
    about which rows are scored and how they are combined, not about the encoder."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(8, 8, generator=torch.Generator().manual_seed(1)))

    def itm_logit(self, text_embeds, text_mask, vision_tokens):
        t = (text_embeds * text_mask[..., None]).sum(1) @ self.w
        return torch.tanh(t[:, None, :] * vision_tokens).sum((1, 2))


def test_itm_row_shares_recombine_to_the_full_matrices_exactly():
    """What the ranks do, in one process: each scores its rows; zero the others and sum."""
    gen = torch.Generator().manual_seed(0)
    model = _ScoringModel()
    tokens = torch.randn(6, 5, 8, generator=gen)
    text = TextFeatures(torch.randn(12, 4, 8, generator=gen), torch.ones(12, 4, dtype=torch.long),
                        torch.nn.functional.normalize(torch.randn(12, 3, generator=gen), dim=-1))
    i2t_emb = itc_scores(torch.nn.functional.normalize(torch.randn(6, 1, 3, generator=gen), dim=-1), text.feat)
    out = type("Out", (), {"tokens": tokens})
    full = itm_rerank(model, i2t_emb, text, out.tokens, k_test=3, chunk=2)
    world = 3
    i2t = torch.zeros_like(full.i2t)
    t2i = torch.zeros_like(full.t2i)
    for rank in range(world):
        ctx = D.DistContext(rank=rank, world_size=world)
        rows_v, rows_t = D.shard(range(6), ctx), D.shard(range(12), ctx)
        part = itm_rerank(model, i2t_emb, text, [out.tokens[i] for i in range(6)], k_test=3, chunk=2,
                          video_rows=rows_v, text_rows=rows_t)
        others_v = [i for i in range(6) if i not in rows_v]
        assert (part.i2t[others_v] == NOT_RERANKED).all()  # untouched rows keep the fill
        assert torch.equal(part.i2t_topk, full.i2t_topk) and torch.equal(part.t2i_topk, full.t2i_topk)
        keep_v = torch.zeros(6, 1, dtype=torch.bool)
        keep_v[rows_v] = True
        keep_t = torch.zeros(12, 1, dtype=torch.bool)
        keep_t[rows_t] = True
        i2t += torch.where(keep_v, part.i2t, 0.0)
        t2i += torch.where(keep_t, part.t2i, 0.0)
    assert torch.equal(i2t, full.i2t) and torch.equal(t2i, full.t2i)


def _combine_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ctx = D.DistContext(rank=rank, world_size=world, backend="gloo")
        full = torch.randn(7, 5, generator=torch.Generator().manual_seed(3)) * 1e3
        rows = D.shard(range(7), ctx)
        mine = torch.full_like(full, NOT_RERANKED)  # like itm_rerank: -100 outside this rank's rows
        mine[rows] = full[rows]
        combined = D.combine_rows(mine, rows, ctx)
        gathered = D.all_gather_objects(len(rows), ctx)
        if rank == 0:
            torch.save({"combined": combined, "full": full, "gathered": gathered}, out)
    finally:
        dist.destroy_process_group()


def test_combine_rows_over_two_gloo_ranks_is_exact(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_combine_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "out.pt")), nprocs=2, join=True)
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert torch.equal(got["combined"], got["full"]) and got["gathered"] == [4, 3]


# ----------------------------------------------------------------------------- torchrun, 2 CPU ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(cache: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VIDTLDR_CACHE": str(cache), "VIDTLDR_RUNS": str(cache / "runs")}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "vidtldr.eval", f"hydra.run.dir={run_dir}", "print_table=false",
           *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dist_cache")


@pytest.mark.slow
def test_two_ranks_write_one_record_with_the_single_process_metrics(cache, tmp_path):
    # The cache is off so the ranks really encode their halves (through the run's scratch shards)
    # instead of reading features the single-process run left behind.
    common = ("data.batch_size=2", "cache.enabled=false")
    single = run(make_cfg(cache, *common), tmp_path / "single", progress=False)
    proc = _torchrun(cache, tmp_path / "ddp", *common)
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = read(tmp_path / "ddp")
    assert record["status"] == "complete" and record["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert record["metrics"] == single["metrics"]  # exactly, both ITM re-ranked and ITC
    assert record["counts"] == single["counts"] and record["token_counts"] == single["token_counts"]
    assert record["counts"]["videos_decoded"] == 7  # 4 + 3, each video encoded once, by one rank
    a, b = stable_view(record), stable_view(single)
    a.pop("distributed")
    assert a == b
    # Rank 0 wrote the record and the Hydra outputs; rank 1 only its own log; no scratch left.
    names = sorted(p.name for p in (tmp_path / "ddp").iterdir())
    assert names == [".hydra", "eval.log", "eval.rank1.log", "record.json"]
    assert not (tmp_path / "ddp" / SCRATCH).exists()


@pytest.mark.slow
def test_two_ranks_qa_share_questions(cache, tmp_path):
    single = run(make_cfg(cache, "dataset=msrvtt_qa"), tmp_path / "single", progress=False)
    proc = _torchrun(cache, tmp_path / "ddp", "dataset=msrvtt_qa", "hydra.job.name=qa")
    assert proc.returncode == 0, proc.stderr[-4000:]
    record = read(tmp_path / "ddp")
    assert record["metrics"] == single["metrics"] and record["counts"]["questions"] == 7
    assert (tmp_path / "ddp" / "predictions.json").read_text() == (tmp_path / "single" / "predictions.json").read_text()
    # the cost counts both ranks' work: 6 clips and the official execution's 7 projections. The 7
    # questions split 4 + 3 (questions 0-3 on rank 0, 4-6 on rank 1); the clip with two questions
    # holds questions 0 and 1 (vidtldr/data/tiny.py), so both ranks project 3 clips each: 6 in all
    cost, alone = record["cost"], single["cost"]
    assert cost["gflops"]["answering_pairwise"] == alone["gflops"]["answering_pairwise"]
    assert cost["gflops"]["vision_encoder"] == alone["gflops"]["vision_encoder"]
    assert cost["kv_projections"] == 6 and cost["gflops"]["answering"] == alone["gflops"]["answering"]
