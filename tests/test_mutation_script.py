"""scripts/mutation.py's verdicts: an equivalent or judged mutant counts only while its listed line is
still the mutated line, and the report shows each survivor's verdict."""

import importlib.util
import sys

from conftest import ROOT

_spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts" / "mutation.py")
mutation = sys.modules.setdefault("mutation_script", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(mutation)  # registered first: its dataclasses look their module up

EQ = {"m.x__mutmut_1": {"name": "m.x__mutmut_1", "line": "a = b", "why": "the same value"}}
VERDICTS = {"m.x__mutmut_2": {"name": "m.x__mutmut_2", "line": "raise ValueError(None)", "why": "wording only"}}


def test_equivalent_only_while_its_line_matches():
    assert mutation.judge("m.x__mutmut_1", "survived", "a = b", EQ, VERDICTS) == (True, "equivalent: the same value")
    equivalent, verdict = mutation.judge("m.x__mutmut_1", "survived", "a = c", EQ, VERDICTS)
    assert not equivalent and "STALE" in verdict
    equivalent, verdict = mutation.judge("m.x__mutmut_1", "no tests", "a = b", EQ, VERDICTS)
    assert not equivalent and "'no tests'" in verdict


def test_a_verdict_explains_a_survivor_without_excusing_it():
    assert mutation.judge("m.x__mutmut_2", "survived", "raise ValueError(None)", EQ, VERDICTS) == \
        (False, "not killed: wording only")
    assert mutation.judge("m.x__mutmut_2", "survived", "raise ValueError()", EQ, VERDICTS) == (False, "not killed")
    assert mutation.judge("m.x__mutmut_3", "survived", "x", EQ, VERDICTS) == (False, "not killed")


def test_the_verdicts_files_name_mutants_of_the_targets_once():
    targets = {mutation.module_name(t.path) for t in mutation.TARGETS}
    for path in (mutation.EQUIVALENTS, mutation.VERDICTS):
        entries = mutation.load_entries(path)
        raw = mutation.json.loads(path.read_text())
        assert len(entries) == len(raw), f"{path.name}: a mutant is listed twice"
        for name, entry in entries.items():
            assert name.rsplit(".", 1)[0] in targets and entry["line"] and entry["why"], (path.name, name)
    assert not set(mutation.load_entries(mutation.EQUIVALENTS)) & set(mutation.load_entries(mutation.VERDICTS))


def test_decorated_functions_are_named_as_not_mutated():
    source = '''
import functools

@functools.lru_cache(maxsize=None)
def cached(x):
    return x

def plain(x):
    return x

class Box:
    @staticmethod
    def make():
        return Box()

    @property
    def size(self):
        return 1

    @staticmethod
    @functools.cache
    def both():
        return 2

    def plain(self):
        return 3
'''
    assert mutation.unmutated_functions(source) == [("cached", "x_cached"), ("Box.size", "x\u01c1Box\u01c1size"),
                                                    ("Box.both", "x\u01c1Box\u01c1both")]


def test_the_targets_hide_no_function_from_mutmut():
    """Every function of a mutated module is mutated: one behind a decorator (say @torch.no_grad()) would
    be left out by mutmut without a word, and its mistakes could never be caught. Allowed: one-line
    properties (the matches' ``r`` is ``src_idx.shape[1]``, checked by every merge-count test)."""
    allowed = {"vidtldr/reduce/vidtldr.py": ["Match.r"], "vidtldr/reduce/tome.py": ["ToMeMatch.r"]}
    for target in mutation.TARGETS:
        hidden = [name for name, mutmut_name in mutation.unmutated_functions((ROOT / target.path).read_text())
                  if not target.functions or any(mutation.re.fullmatch(mutation._glob(g), mutmut_name)
                                                 for g in target.functions)]
        assert hidden == allowed.get(target.path, []), (target.path, hidden)
