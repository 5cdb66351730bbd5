#!/usr/bin/env python
"""Hand-made mutants from code review: each must make the test suite fail.

    python scripts/review_mutants.py [--no-write] [--only NAME ...]

mutmut (``scripts/mutation.py``) makes small syntactic changes; a reviewer reading the code finds
mistakes of another kind (a cache key field dropped, a schedule applied to one block only). Each
entry of :data:`MUTANTS` is such a mistake written as text replacements in one file. For each, the
package and the tests are copied to a scratch folder, the replacement is applied (it must match
exactly once: a stale entry is an error, not a pass) and the listed test files (or single tests,
``file::name``) are run there without ``-x`` (slow and CUDA tests left out), with the scratch copy
first on ``PYTHONPATH`` so that any subprocess a test starts imports the mutated package too; the
mutant is *killed* when at least one test fails. The tests that failed are then run again in an
unmutated scratch copy: one that fails there too (it needs a git checkout, or it is broken) proves
nothing, and is an error naming it. None of the listed files runs the parity script, so no kill is
the parity check's.

Prints one line per mutant and, last, one JSON object ``{"killed": n, "survived": n}``; writes
``results/review_mutants.md`` with the failing tests of each. Exit status 1 if any survived.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "results" / "review_mutants.md"
SELECTION = "not slow and not cuda"


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str
    replacements: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


MUTANTS = (
    Mutant("cache-key-attention-trimmed30",
           "the video feature-cache key loses the attention mode and the 30 s trim",
           "vidtldr/run/assemble.py",
           (('"trimmed30": spec.trimmed30,\n', "\n"), (', "attention": attention}', "}")),
           ("tests/test_cache_keys.py",)),
    Mutant("fraction-first-block-only",
           "one fraction for every block (merge.r=0.1) reduces block 0 only",
           "vidtldr/reduce/schedule.py",
           (('return [_check_entry(r, "merge.r")] * depth', 'return [_check_entry(r, "merge.r")] + [0] * (depth - 1)'),),
           ("tests/test_schedule.py", "tests/test_tome_random.py", "tests/test_eval_smoke.py")),
    Mutant("itm-fill-not-minus-100",
           "cells outside the ITM candidates are filled with -99 instead of the official -100",
           "vidtldr/tasks/retrieval.py",
           (("NOT_RERANKED = -100.0", "NOT_RERANKED = -99.0"),),
           ("tests/test_itm_engines.py", "tests/test_models_tasks.py")),
    Mutant("itm-text-part-by-text-id",
           "the grouped ITM engine looks a text's precomputed part up by the text's id instead of its row among "
           "the texts a share needs",
           "vidtldr/tasks/itm.py",
           (("index = slot[rows].to(device)", "index = rows.to(device)"),),
           ("tests/test_itm_candidates.py", "tests/test_itm_engines.py")),
    Mutant("file-identity-without-mtime",
           "a video file's identity leaves out its modification time (a change in the middle of a file over "
           "2 MiB goes unseen even with a new mtime)",
           "vidtldr/run/cache.py",
           (('value = f"{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()}"', 'value = f"{st.st_size}:{digest.hexdigest()}"'),),
           ("tests/test_cache.py",)),
    Mutant("checksum-memo-without-ctime",
           "the remembered sha256 of a file (record checksums, token store) is keyed without its ctime, so a file "
           "rewritten in place with its mtime restored keeps its old checksum",
           "vidtldr/run/record.py",
           (('|{stat.st_mtime_ns}|{stat.st_ctime_ns}"', '|{stat.st_mtime_ns}"'),),
           ("tests/test_feature_store_integrity.py",)),
    Mutant("clamp-against-input-tokens",
           "the recorded clamp of each schedule entry is checked against the tokens entering the encoder, not "
           "those entering its block (a later block's clamp goes unrecorded or wrong)",
           "vidtldr/run/adjust.py",
           (("            count -= removed[-1]\n", ""),),
           ("tests/test_plain_errors.py",)),
    Mutant("pareto-ties-kept",
           "the Pareto front keeps a schedule that another beats only on GFLOPs at equal fidelity",
           "vidtldr/analysis/search/schedules.py",
           (("and (o.gflops < c.gflops or o.fidelity > c.fidelity) for o in done)",
             "and o.fidelity > c.fidelity for o in done)"),),
           ("tests/test_tune.py",)),
    Mutant("qa-cost-all-questions",
           "the QA record's cost counts every question of the split instead of those evaluated (data.limit)",
           "vidtldr/run/runner_qa.py",
           (('counts["videos"], counts["questions"], k, kv_projections',
             'counts["videos"], counts["questions_total"], k, kv_projections'),),
           # one test of the file: others there need a git checkout, which the scratch copy is not
           ("tests/test_eval_e2e.py::test_qa_cost_under_data_limit_counts_only_the_questions_evaluated",)),
    Mutant("checkpoint-unexpected-keys-dropped",
           "unexpected checkpoint keys are silently ignored",
           "vidtldr/models/checkpoint.py",
           (("unexpected = [k for k in sd if k not in expected]", "unexpected = []"),),
           ("tests/test_checkpoint.py",)),
)


def scratch_copy(where: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__")
    for name in ("vidtldr", "tests", "scripts"):
        shutil.copytree(ROOT / name, where / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", where / "pyproject.toml")


def apply(mutant: Mutant, where: Path) -> None:
    path = where / mutant.path
    text = path.read_text()
    for old, new in mutant.replacements:
        found = text.count(old)
        if found != 1:
            raise SystemExit(f"review_mutants: {mutant.name}: {old!r} occurs {found} times in {mutant.path} "
                             "(expected once): update the entry in scripts/review_mutants.py")
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(mutant: Mutant, where: Path, tests: list[str] | None = None) -> tuple[list[str], int, str]:
    """(failed test ids, passed count, pytest's summary line) of the mutant's tests (or ``tests``) in ``where``."""
    env = {**os.environ, "PYTHONPATH": str(where), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "-m", SELECTION,
           *(mutant.tests if tests is None else tests)]
    proc = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^FAILED (.+?)(?: - .*)?$", out, flags=re.M)
    passed = re.search(r"(\d+) passed", out)
    summary = out.strip().splitlines()[-1] if out.strip() else f"pytest exit {proc.returncode}"
    if proc.returncode not in (0, 1):
        raise SystemExit(f"review_mutants: {mutant.name}: pytest could not run (exit {proc.returncode}):\n{out[-3000:]}")
    return failed, int(passed.group(1)) if passed else 0, summary


def render(rows: list[dict]) -> str:
    lines = ["# Review mutants", "",
             "Generated by `scripts/review_mutants.py`; do not edit by hand. Mistakes found by reading the code, "
             "each applied to a scratch copy where the listed test files run (slow and CUDA tests left out). "
             "Killed = at least one test fails.", "",
             "| mutant | mistake | tests run | result | failing tests |", "|---|---|---|---|---|"]
    for r in rows:
        failing = "<br>".join(f"`{t}`" for t in r["failed"][:6]) + (f" (+{len(r['failed']) - 6})"
                                                                     if len(r["failed"]) > 6 else "")
        lines.append(f"| `{r['name']}` | {r['what']} | {', '.join(r['tests'])} | "
                     f"{'killed' if r['failed'] else '**survived**'} ({len(r['failed'])} failed, "
                     f"{r['passed']} passed) | {failing or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS_MD.relative_to(ROOT)}")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[m.name for m in MUTANTS],
                        help=f"run these mutants only (nothing written to {RESULTS_MD.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="review-unmutated-") as unmutated:
        scratch_copy(Path(unmutated))
        for mutant in MUTANTS:
            if not args.only or mutant.name in args.only:
                rows.append(run_mutant(mutant, Path(unmutated)))
    if not args.no_write and not args.only:
        RESULTS_MD.write_text(render(rows))
    killed = sum(1 for r in rows if r["failed"])
    print(json.dumps({"killed": killed, "survived": len(rows) - killed}))
    return 0 if killed == len(rows) else 1


def run_mutant(mutant: Mutant, unmutated: Path) -> dict:
    """The mutant's row: its tests run on a mutated scratch copy; those that fail, again on ``unmutated``."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="review-mutant-") as tmp:
        where = Path(tmp)
        scratch_copy(where)
        apply(mutant, where)
        failed, passed, summary = run_tests(mutant, where)
    if failed:
        also, _, _ = run_tests(mutant, unmutated, tests=failed)
        if also:
            raise SystemExit(f"review_mutants: {mutant.name}: {', '.join(also)} fail(s) without the mutant too (in a "
                             "scratch copy of the tree): fix them, or list other tests in scripts/review_mutants.py")
    print(f"{mutant.name}: {'killed' if failed else 'SURVIVED'} ({summary}; "
          f"{time.perf_counter() - start:.0f} s)", flush=True)
    return {"name": mutant.name, "what": mutant.what, "tests": list(mutant.tests), "failed": failed,
            "passed": passed}


if __name__ == "__main__":
    sys.exit(main())
