"""The package works when installed (not editable): the wheel carries the configs, manifests,
architectures, vocabulary and paper reference, and ``python -m vidtldr.eval`` run from an unrelated
directory finds them and writes only under that directory."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "vidtldr")


def _package_data(root: Path) -> set[str]:
    """Every non-Python file under vidtldr/ in the source tree (what the wheel must carry)."""
    return {p.relative_to(root).as_posix() for p in (root / "vidtldr").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (the build writes build/ and *.egg-info into its source)."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    # Without build isolation when setuptools is already here (no network needed); else pip fetches it.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, str(src), "-w", str(out)],
                   check=True, capture_output=True, text=True, cwd=src)
    (whl,) = out.glob("vidtldr-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_carries_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _package_data(ROOT)
    assert {"vidtldr/configs/config.yaml", "vidtldr/configs/dataset/msrvtt.yaml", "vidtldr/configs/model/tiny.yaml",
            "vidtldr/data_manifests/msrvtt_ret_test1k.yaml", "vidtldr/report/paper_reference.csv",
            "vidtldr/models/architectures/umt_b16.json", "vidtldr/models/vocab/tiny_vocab.txt"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"files of the package missing from the wheel (pyproject package-data): {missing}"


@pytest.mark.slow
def test_installed_wheel_runs_the_default_evaluation_from_any_directory(wheel, tmp_path):
    target, work = tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    before = {p for p in target.rglob("*") if "__pycache__" not in p.parts}
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDTLDR_")}
    env.update(PYTHONPATH=str(target), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline")
    where = subprocess.run([sys.executable, "-c", "import vidtldr; print(vidtldr.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(target), f"imported {where}, not the installed copy"

    proc = subprocess.run([sys.executable, "-m", "vidtldr.eval"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ITM re-ranked" in proc.stdout
    (record_path,) = (work / "runs" / "msrvtt" / "tiny_vidtldr").glob("*/record.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "complete"
    assert record["counts"]["videos"] == 7 and record["token_counts"][0] == 196
    assert (work / ".cache" / "vidtldr" / "tiny_data" / "msrvtt").is_dir()  # generated under the working directory
    assert record["git"] == {"commit": None, "dirty": None}  # the installed copy is not a git checkout
    after = {p for p in target.rglob("*") if "__pycache__" not in p.parts}
    assert after == before, f"the run wrote into the installed package: {sorted(map(str, after - before))}"

    # The console command the wheel installs lists every command and runs one from here.
    script = target / "bin" / "vidtldr"
    assert script.is_file(), sorted(p.name for p in (target / "bin").iterdir()) if (target / "bin").is_dir() else None
    helped = subprocess.run([str(script), "--help"], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "  flops " in helped.stdout and "  eval " in helped.stdout, helped.stderr
    flops = subprocess.run([str(script), "flops", "model=tiny"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=300)
    assert flops.returncode == 0, flops.stderr[-2000:]
    assert json.loads(flops.stdout.strip().splitlines()[-1])["tokens_per_layer"][0] == 196  # 4 frames x (224/32)^2
