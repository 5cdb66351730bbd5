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
        assert all((ROOT / t).is_file() for t in mutant.tests), mutant.name


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
