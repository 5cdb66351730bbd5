"""Fault injection: interrupted, killed, concurrent and damaged runs of the tiny model.

After every fault the next run must give exactly the clean run's metrics or stop with a clear one-line
message, and a complete record is never lost. Faults fire at fixed points (monkeypatched functions,
in-process or in a child process started from a small script), never by racing a timer.
Run alone with ``pytest -m faults``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vidtldr.errors import DiskFullError, RunDirError, RunInterrupted
from vidtldr.run import runner
from vidtldr.run.runner import run

from _eval_helpers import make_cfg, read

pytestmark = pytest.mark.faults
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The clean run: its cache (tiny data + features) is the template the scenarios copy."""
    cache = tmp_path_factory.mktemp("faults_clean")
    record = run(make_cfg(cache), cache / "runs" / "clean", progress=False)
    assert record["status"] == "complete"
    return cache, record


def fresh_cache(clean, tmp_path, features: bool = False) -> Path:
    """A cache holding the generated tiny data (and, with ``features``, the clean run's features)."""
    cache = tmp_path / "cache"
    shutil.copytree(clean[0] / "tiny_data", cache / "tiny_data")
    if features:
        shutil.copytree(clean[0] / "features", cache / "features")
    return cache


def same_metrics(record: dict, clean) -> bool:
    return record["status"] == "complete" and record["metrics"] == clean[1]["metrics"]


# ------------------------------------------------------------------ finished records are never lost


def test_complete_record_is_refused_not_replaced(clean, tmp_path):
    cache = fresh_cache(clean, tmp_path, features=True)
    run_dir = tmp_path / "run"
    first = run(make_cfg(cache), run_dir, progress=False)
    before = (run_dir / "record.json").read_bytes()
    # Before the fix a second run (here one that fails on a typo within seconds) replaced it by "failed".
    with pytest.raises(RunDirError, match="eval.overwrite=true"):
        run(make_cfg(cache, "data.batch_size=0"), run_dir, progress=False)
    assert (run_dir / "record.json").read_bytes() == before
    again = run(make_cfg(cache, "eval.overwrite=true"), run_dir, progress=False)
    aside = list(run_dir.glob("record.replaced-*.json"))
    assert len(aside) == 1 and aside[0].read_bytes() == before
    assert again["replaced"] == str(aside[0]) and again["metrics"] == first["metrics"]


def test_failed_run_leaves_one_line_reason_and_resumes(clean, tmp_path):
    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    with pytest.raises(Exception):
        run(make_cfg(cache, "data.batch_size=0"), run_dir, progress=False)
    failed = read(run_dir)
    assert failed["status"] == "failed" and "data.batch_size" in failed["error"] and "\n" not in failed["error"]
    assert same_metrics(run(make_cfg(cache), run_dir, progress=False), clean)  # failed records are replaced


def test_failed_run_never_replaces_a_complete_record_written_meanwhile(clean, tmp_path, monkeypatch):
    """Two runs into one directory: the one that fails last must not clobber the one that finished."""
    cache = fresh_cache(clean, tmp_path, features=True)
    run_dir = tmp_path / "run"
    real_gflops = runner.gflops_entry

    def other_run_finishes_then_this_one_fails(*args, **kwargs):
        monkeypatch.setattr(runner, "gflops_entry", real_gflops)
        assert run(make_cfg(cache), run_dir, progress=False)["status"] == "complete"
        raise RuntimeError("late failure")

    monkeypatch.setattr(runner, "gflops_entry", other_run_finishes_then_this_one_fails)
    with pytest.raises(RuntimeError, match="late failure"):
        run(make_cfg(cache), run_dir, progress=False)
    assert read(run_dir)["status"] == "complete"


# ------------------------------------------------------------------ signals


def test_sigterm_is_interrupted_like_ctrl_c(clean, tmp_path, monkeypatch):
    """Before the fix SIGTERM (a scheduler's time limit) left ``status: running`` forever."""
    import vidtldr.run.runner_features as features

    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    real_save, saved = features.FeatureCache.save, []

    def save_then_sigterm(self, item, tensors):
        real_save(self, item, tensors)
        saved.append(item)
        if len(saved) == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(features.FeatureCache, "save", save_then_sigterm)
    with pytest.raises(RunInterrupted):
        run(make_cfg(cache), run_dir, progress=False)
    record = read(run_dir)
    assert record["status"] == "interrupted" and record["error"] == "interrupted by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is only the run's
    monkeypatch.undo()
    resumed = run(make_cfg(cache), run_dir, progress=False)
    assert same_metrics(resumed, clean) and resumed["counts"]["videos_from_cache"] == 3


# ------------------------------------------------------------------ full disk


def test_full_disk_is_one_clear_message(clean, tmp_path, monkeypatch):
    """ENOSPC while shards are written: one DiskFullError naming the path, no temp file left, and the
    record says failed (before the fix: chained tracebacks and ``status: running``)."""
    import errno

    import vidtldr.run.cache as cache_module

    cache = fresh_cache(clean, tmp_path)
    run_dir = tmp_path / "run"
    real_fsync, calls = cache_module.os.fsync, []

    def fsync_full(fd):
        calls.append(fd)
        if len(calls) == 3:  # the record, then the first shards: the disk fills on the third write
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(cache_module.os, "fsync", fsync_full)
    with pytest.raises(DiskFullError, match="no space left on the device holding .*features"):
        run(make_cfg(cache), run_dir, progress=False)
    monkeypatch.undo()
    assert not list(cache.rglob("*.tmp"))
    record = read(run_dir)
    assert record["status"] == "failed" and record["error"].startswith("DiskFullError: no space left")
    assert same_metrics(run(make_cfg(cache), run_dir, progress=False), clean)


def _cli(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "vidtldr.eval", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_refuses_a_finished_run_directory_with_exit_2(clean, tmp_path):
    cache = fresh_cache(clean, tmp_path, features=True)
    run_dir = tmp_path / "run"
    run(make_cfg(cache), run_dir, progress=False)
    before = (run_dir / "record.json").read_bytes()
    out = _cli([f"paths.cache={cache}", f"hydra.run.dir={run_dir}", "print_table=false"], tmp_path)
    assert out.returncode == 2, out.stderr
    assert "holds a complete record" in out.stderr and "Traceback" not in out.stderr
    assert (run_dir / "record.json").read_bytes() == before
