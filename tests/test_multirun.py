"""Hydra sweeps: a local `-m` multirun writes one record per point; the SLURM launcher config
composes onto hydra-submitit-launcher (skipped when that optional plugin is not installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from vidtldr.config_utils import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent


def _have_module(name: str) -> bool:
    # find_spec on a dotted name raises when the parent package (hydra_plugins) is absent
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


HAVE_SUBMITIT = _have_module("hydra_plugins.hydra_submitit_launcher")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("multirun_cache")


def _sweep(cache: Path, sweep_dir: Path, *overrides: str) -> list[dict]:
    env = {**os.environ, "VIDTLDR_CACHE": str(cache), "VIDTLDR_RUNS": str(cache / "runs")}
    proc = subprocess.run([sys.executable, "-m", "vidtldr.eval", "-m", f"hydra.sweep.dir={sweep_dir}",
                           "print_table=false", *overrides], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/record.json"))]


def test_local_multirun_writes_one_record_per_point(cache, tmp_path):
    records = _sweep(cache, tmp_path / "sweep", "merge.r=[48,24],[24]")
    assert [r["run_dir"] for r in records] == [str(tmp_path / "sweep" / "0"), str(tmp_path / "sweep" / "1")]
    assert [r["status"] for r in records] == ["complete", "complete"]
    assert [r["run"]["schedule"] for r in records] == [[48, 24, 0, 0], [24, 0, 0, 0]]
    assert [r["token_counts"][-1] for r in records] == [124, 172]
    assert [r["run"]["schedule_spec"] for r in records] == [[48, 24], [24]]


def _launcher(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True).hydra.launcher


@pytest.mark.skipif(not HAVE_SUBMITIT, reason="hydra-submitit-launcher not installed (pip install -e '.[slurm]')")
def test_slurm_launcher_config_composes():
    launcher = _launcher("hydra.launcher.partition=gpu", "hydra.launcher.tasks_per_node=4",
                         "hydra.launcher.gpus_per_node=4")
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.tasks_per_node == 4 and launcher.gpus_per_node == 4
    assert launcher.timeout_min == 240 and launcher.array_parallelism == 32
    folder = launcher.submitit_folder  # job logs beside the sweep's records
    assert "/multirun/" in folder and folder.endswith("/.submitit/%j")


@pytest.mark.skipif(not HAVE_SUBMITIT, reason="hydra-submitit-launcher not installed (pip install -e '.[slurm]')")
def test_submitit_local_launcher_runs_the_sweep(cache, tmp_path):
    """The same plugin's local executor: the job pickling and dispatch path that SLURM uses."""
    records = _sweep(cache, tmp_path / "sweep", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                     "merge=none")
    assert [(r["run"]["merge"], r["status"]) for r in records] == [("none", "complete")]
