"""The run record's git commit names the checkout that tracks the package, and nothing else."""

import shutil
import subprocess

import pytest

from vidtldr.run import record

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _git(cwd, *args):
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout with one commit, and a package folder ``site/vidtldr`` inside it whose module
    ``run/record.py`` is where ``git_info`` believes it lives."""
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    (tmp_path / "README").write_text("x\n")
    _git(tmp_path, "add", "README")
    _git(tmp_path, "commit", "-qm", "first")
    package = tmp_path / "site" / "vidtldr"
    (package / "run").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "run" / "record.py").write_text("")
    monkeypatch.setattr(record, "__file__", str(package / "run" / "record.py"))
    return tmp_path, package


def test_package_installed_inside_an_unrelated_checkout_reports_no_commit(checkout):
    assert record.git_info() == {"commit": None, "dirty": None}


def test_package_tracked_by_the_checkout_reports_its_commit(checkout):
    root, package = checkout
    _git(root, "add", str(package / "__init__.py"))
    _git(root, "commit", "-qm", "package")
    info = record.git_info()
    assert info["commit"] == _git(root, "rev-parse", "HEAD") and info["dirty"] is False
