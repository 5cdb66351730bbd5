"""The `vidtldr` console command: `vidtldr <command> [overrides]` runs the same module as
`python -m vidtldr.<command>`, `vidtldr --help` lists every command with one line, and a new
command is found from its entry module alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from vidtldr import cli

# Every command the project documents (README, docs/architecture.md).
EXPECTED = {"eval", "flops", "bench", "bench_eval", "bench_scale", "bench_decode", "tune", "fidelity", "compare", "visualize",
            "results", "validate", "inspect"}


def _run(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_help_lists_every_command_with_one_line(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0]: line for line in out.split("commands:\n", 1)[1].splitlines() if line.strip()}
    assert set(listed) == EXPECTED
    assert all(len(line.split()) > 3 for line in listed.values())  # each has its summary


def test_no_command_or_an_unknown_one_is_an_error(capsys):
    assert cli.main([]) == 2
    assert "usage: vidtldr <command>" in capsys.readouterr().err
    assert cli.main(["evaluate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown command 'evaluate'" in err[0] and "eval" in err[0]


def test_a_new_command_is_found_from_its_entry_module(tmp_path):
    (tmp_path / "hello.py").write_text('"""Command `python -m vidtldr.hello`."""\n\nSUMMARY = "say hello"\n')
    (tmp_path / "helper.py").write_text('"""Not a command: no SUMMARY."""\n')
    (tmp_path / "broken.py").write_text("def (:\n")
    assert cli.commands(tmp_path) == {"hello": "say hello"}


@pytest.mark.slow
def test_vidtldr_flops_is_python_m_vidtldr_flops(tmp_path):
    args = ["model=tiny", "merge.r=[48,24]"]
    via_cli = _run("-m", "vidtldr.cli", "flops", *args, cwd=tmp_path)
    via_module = _run("-m", "vidtldr.flops", *args, cwd=tmp_path)
    assert via_cli.returncode == via_module.returncode == 0, via_cli.stderr[-2000:]
    a, b = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (via_cli, via_module))
    assert a == b and a["tokens_per_layer"] == [196, 148, 124, 124, 124]  # 4 frames x 49 patches, -48, -24


def test_a_command_error_keeps_its_one_line_and_exit_status(tmp_path):
    proc = _run("-m", "vidtldr", "bench-eval", "quick=maybe", cwd=tmp_path)  # python -m vidtldr = vidtldr
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("vidtldr.bench_eval: error: quick=maybe")
