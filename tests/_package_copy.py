"""A copy of the package with a contributor's new files added, and commands run against it: how the
extension-contract tests show that a new reducer, task or backbone family needs only its own files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import vidtldr


def package_copy(root: Path, new_files: dict[str, str]) -> Path:
    """``root/vidtldr``: the package as it is, plus each ``new_files`` entry (a path inside the
    package -> its text, dedented); returns ``root``, the folder to run from."""
    pkg = root / "vidtldr"
    shutil.copytree(Path(vidtldr.__file__).parent, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in new_files.items():
        (pkg / name).write_text(textwrap.dedent(text))
    return root


def run_in(root: Path, *args: str) -> subprocess.CompletedProcess:
    """``python <args>`` importing the copy under ``root``; the test fails with its stderr unless it
    exits 0."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def last_json(proc: subprocess.CompletedProcess) -> dict:
    """The one JSON line a command prints last."""
    return json.loads(proc.stdout.strip().splitlines()[-1])
