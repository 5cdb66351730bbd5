import json

import pytest

from vidtldr.data.text import pre_text


def _cases(data_formats_dir):
    return json.loads((data_formats_dir / "pre_text_cases.json").read_text(encoding="utf-8"))["cases"]


def test_pre_text_reproduces_every_official_case(data_formats_dir):
    cases = _cases(data_formats_dir)
    assert len(cases) > 20
    mismatches = [(c["raw"], pre_text(c["raw"]), c["pre_text"]) for c in cases if pre_text(c["raw"]) != c["pre_text"]]
    assert mismatches == []


@pytest.mark.parametrize("raw,want", [
    # README rules stated independently of the case file
    ("<PERSON> runs", "person runs"),
    ("a\tb", "a\tb"),          # a single tab survives
    ("a\t\tb", "a b"),         # a run of two collapses
    ("\nx", "\nx"),            # a leading newline survives rstrip("\n").strip(" ")
    ("Putting [something] on it", "putting [something] on it"),
])
def test_pre_text_rules(raw, want):
    assert pre_text(raw) == want
