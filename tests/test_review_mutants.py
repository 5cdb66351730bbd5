"""The reviewers' hand-made mutants (scripts/review_mutants.py) stay applicable to the code."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from conftest import ROOT


def _script():
    spec = importlib.util.spec_from_file_location("review_mutants", ROOT / "scripts" / "review_mutants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("review_mutants", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_entry_matches_the_code_exactly_once_and_names_existing_tests():
    script = _script()
    assert len(script.MUTANTS) >= 4
    for mutant in script.MUTANTS:
        text = (ROOT / mutant.path).read_text()
        for old, new in mutant.replacements:
            assert text.count(old) == 1, f"{mutant.name}: {old!r} no longer matches {mutant.path} exactly once"
            assert old != new
        for test in mutant.tests:  # a file, or one test in it (file::name)
            file, _, name = test.partition("::")
            assert (ROOT / file).is_file(), (mutant.name, test)
            assert not name or f"def {name.split('[')[0]}(" in (ROOT / file).read_text(), (mutant.name, test)


def test_a_stale_entry_is_an_error_naming_it(tmp_path):
    script = _script()
    (tmp_path / "vidtldr").mkdir()
    (tmp_path / "vidtldr" / "x.py").write_text("A = 1\n")
    stale = script.Mutant("stale-one", "a change", "vidtldr/x.py", (("A = 2", "A = 3"),), ())
    with pytest.raises(SystemExit, match=r"stale-one: 'A = 2' occurs 0 times in vidtldr/x.py"):
        script.apply(stale, tmp_path)
    fine = script.Mutant("fine", "a change", "vidtldr/x.py", (("A = 1", "A = 5"),), ())
    script.apply(fine, tmp_path)
    assert (tmp_path / "vidtldr" / "x.py").read_text() == "A = 5\n"


def _tree(root, tests: str):
    """A repository with a one-line package and one test file."""
    (root / "vidtldr").mkdir(parents=True)
    (root / "vidtldr" / "x.py").write_text("A = 1\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text(tests)
    (root / "scripts").mkdir()
    (root / "pyproject.toml").write_text("")


def test_only_a_test_that_passes_without_the_mutant_kills_it(tmp_path, monkeypatch):
    script = _script()
    _tree(tmp_path / "repo", "from vidtldr.x import A\n\n\ndef test_a():\n    assert A == 1\n\n\n"
                             "def test_broken():\n    assert False\n")
    monkeypatch.setattr(script, "ROOT", tmp_path / "repo")
    unmutated = tmp_path / "unmutated"
    unmutated.mkdir()
    script.scratch_copy(unmutated)
    mutant = script.Mutant("a-is-2", "A is 2", "vidtldr/x.py", (("A = 1", "A = 2"),), ("tests/test_x.py::test_a",))
    row = script.run_mutant(mutant, unmutated)
    assert (row["failed"], row["passed"]) == (["tests/test_x.py::test_a"], 0)
    # a test that fails without the mutant too (it needs a git checkout, or it is broken) proves nothing
    broken = script.Mutant("a-is-3", "A is 3", "vidtldr/x.py", (("A = 1", "A = 3"),), ("tests/test_x.py",))
    with pytest.raises(SystemExit, match=r"a-is-3: tests/test_x.py::test_broken fail\(s\) without the mutant too"):
        script.run_mutant(broken, unmutated)
