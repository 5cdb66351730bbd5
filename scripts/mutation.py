#!/usr/bin/env python
"""Mutation testing of the modules whose mistakes would give wrong numbers silently (mutmut 3).

    python scripts/mutation.py [--modules vidtldr/tasks/metrics.py ...] [--jobs 2] [--no-write]

For each module, a scratch copy of the package and the tests is made under ``.mutation/<name>/``
(mutmut 3 mutates a copy of the source tree in ``mutants/`` and runs pytest there), with a
``[tool.mutmut]`` section that mutates only that module (or only some of its functions) and runs
only the tests relevant to it, with ``-x``. Every mutant is run against the tests that mutmut saw
calling the mutated function.

Per module it prints one line, and at the end one JSON object on the last line:
``{"killed": n, "survived": n, "timeout": n, "score": x}`` over the modules run. A mutant that
survives but is listed in ``scripts/mutation_equivalents.json`` (name, the mutated line, and why no
test can tell it apart) is counted as equivalent: out of the score, named in the report. The entry
must still match the mutant's diff, so a stale entry (the code moved) counts as a survivor again.
A survivor that is not equivalent but was judged (e.g. only a CUDA input tells it apart, or only the
wording of a message changes) may get its one-line reason from ``scripts/mutation_verdicts.json``
(same entries and matching rule); it still counts as a survivor. Mutants of functions no selected
test calls ("no tests") count as survivors.

score = (killed + timeout) / (killed + timeout + survived), per module and overall.

The results are merged into ``results/mutation.json`` (one entry per module, replaced when that
module is run again) and rendered to ``results/mutation.md`` with every surviving mutant and its
verdict.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".mutation"
EQUIVALENTS = ROOT / "scripts" / "mutation_equivalents.json"
VERDICTS = ROOT / "scripts" / "mutation_verdicts.json"
RESULTS_JSON = ROOT / "results" / "mutation.json"
RESULTS_MD = ROOT / "results" / "mutation.md"

# Tests that start subprocesses (the CLI, torchrun, the parity script) would import the unmutated
# package, so they are never selected; "slow" and "cuda" tests are left out as well.
BASE_PYTEST = ["-p", "no:cacheprovider", "-x", "-q", "-m", "not slow and not cuda"]


@dataclass
class Target:
    """One module to mutate: the tests that check it, and optionally which of its functions."""

    path: str
    tests: list[str]
    functions: list[str] = field(default_factory=list)  # mutmut name globs; empty = the whole module
    deselect: str = ""  # a pytest -k expression for tests of those files that must not run here
    why: str = ""


TARGETS: list[Target] = [
    Target("vidtldr/tasks/metrics.py", ["tests/test_metrics.py"], why="recall / rank / accuracy"),
    Target("vidtldr/reduce/schedule.py", ["tests/test_schedule.py", "tests/test_tome_random.py",
                                           "tests/test_vidtldr_merge_cases.py"],
           why="schedule grammar, per-block rule, presets"),
    Target("vidtldr/reduce/vidtldr.py", ["tests/test_vidtldr_merge_cases.py", "tests/test_source_tracing.py"],
           why="vid-TLDR saliency, matching, merging"),
    Target("vidtldr/reduce/tome.py", ["tests/test_tome_random.py"], why="ToMe matching and merging"),
    Target("vidtldr/reduce/random_drop.py", ["tests/test_random_drop.py", "tests/test_tome_random.py"],
           why="random dropping baseline"),
    Target("vidtldr/reduce/base.py", ["tests/test_vidtldr_merge_cases.py", "tests/test_tome_random.py",
                                       "tests/test_source_tracing.py", "tests/test_reducer_contract.py",
                                       "tests/test_fused_exact.py", "tests/test_reducer_zoo.py",
                                       "tests/test_zoo_golden.py"],  # the pruners' apply_keep
           deselect="not fresh_interpreter and not umt_b", why="reducer hook, schedule lookup, contract"),
    Target("vidtldr/models/checkpoint.py", ["tests/test_checkpoint.py", "tests/test_checkpoint_errors.py"],
           deselect="not convert_script",
           why="checkpoint key validation, pre-trained remap"),
    Target("vidtldr/run/cache.py", ["tests/test_cache.py", "tests/test_feature_store.py"],
           why="feature cache: keys, shards, atomic writes"),
    # cache_keys only, checked field by field; the real re-runs of test_cache_keys.py (which also
    # check that the runner passes each input) take minutes per mutant, so they are left out here.
    Target("vidtldr/run/runner.py", ["tests/test_cache_keys.py"], functions=["x_cache_keys*"],
           deselect="not recompute and not reuse", why="the video / text feature-cache keys (cache_keys only)"),
    Target("vidtldr/run/feature_store.py", ["tests/test_feature_store.py", "tests/test_feature_store_integrity.py"],
           why="packed token store: its key, checksums, index problems, atomic build"),
    # Checked by its own unit tests (a stand-in encoder on real tiny clips); the end-to-end runs that also
    # go through it (test_eval_e2e, test_cache_keys, test_feature_store) take tens of seconds per mutant.
    Target("vidtldr/run/runner_features.py", ["tests/test_runner_features.py", "tests/test_cache.py"],
           why="per-video feature extraction through the cache: encode once, resume, skip, bound files"),
    Target("vidtldr/tasks/retrieval.py", ["tests/test_itm_candidates.py", "tests/test_retrieval_batches.py",
                                           "tests/test_models_tasks.py",
                                           "tests/test_distributed.py", "tests/test_itm_engines.py"],
           deselect="not two_ranks and not gloo", why="ITM candidate selection and the -100 fill"),
    Target("vidtldr/tasks/itm.py", ["tests/test_itm_candidates.py", "tests/test_itm_engines.py",
                                     "tests/test_models_tasks.py"],
           why="grouped ITM engine: the candidate union, its -100 fill, engine choice"),
    Target("vidtldr/report/rows.py", ["tests/test_rows.py", "tests/test_results.py"],
           why="which record fills which table row"),
    Target("vidtldr/report/tables.py", ["tests/test_tables.py", "tests/test_results.py"],
           functions=["x_run_status*", "x__count*", "x__delta*", "x_row_metrics*", "x__metric_cells*", "x__gflops_cells*",
                      "x_build_table*"], why="the numbers put beside each row (formatting excluded)"),
]


def slug(path: str) -> str:
    return path.removesuffix(".py").replace("/", "_")


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def mutmut_config(target: Target) -> str:
    tests = [t for t in target.tests if (ROOT / t).is_file()]
    pytest_args = BASE_PYTEST + (["-k", target.deselect] if target.deselect else [])
    lines = ["", "[tool.mutmut]", 'source_paths = ["vidtldr"]', f"only_mutate = [{json.dumps(target.path)}]",
             f"pytest_add_cli_args = {json.dumps(pytest_args)}",
             f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
             'also_copy = ["scripts"]', "mutate_only_covered_lines = false", "use_git_change_detection = false",
             "track_dependencies = false", "use_setproctitle = false"]
    return "\n".join(lines) + "\n"


def prepare(target: Target) -> Path:
    """A fresh scratch copy: the package, the tests, and pyproject.toml with this module's config."""
    work = WORK / slug(target.path)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "vidtldr", work / "vidtldr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", work / "scripts", ignore=shutil.ignore_patterns("__pycache__"))  # some tests read them
    (work / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + mutmut_config(target))
    return work


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1",
               WANDB_SILENT="true", WANDB_MODE="offline")
    return env


def order_check(target: Target, work: Path) -> str | None:
    """mutmut runs each mutant's tests in an arbitrary order (it keeps them in a set), so tests that pass
    only in file order (state shared through a module fixture) fail for every mutant, which then counts
    as killed. Run the selected tests once, unmutated, in reverse order: None when they pass, else the
    tail of pytest's output."""
    tests = [t for t in target.tests if (work / t).is_file()]
    args = BASE_PYTEST + (["-k", target.deselect] if target.deselect else [])
    pytest = [sys.executable, "-m", "pytest", "--rootdir=.", *[a for a in args if a != "-x"]]
    env = {**_env(), "PYTHONPATH": str(work)}
    listed = subprocess.run([*pytest, "--collect-only", *tests], cwd=work, env=env, capture_output=True,
                            text=True)
    ids = [line for line in listed.stdout.splitlines() if "::" in line]
    if not ids:
        return "no tests collected:\n" + listed.stdout[-2000:] + listed.stderr[-2000:]
    proc = subprocess.run([*pytest, "-x", *ids[::-1]], cwd=work, env=env, capture_output=True, text=True)
    return None if proc.returncode == 0 else proc.stdout[-3000:] + proc.stderr[-2000:]


def run_mutmut(target: Target, work: Path, jobs: int) -> tuple[int, str]:
    names = [f"{module_name(target.path)}.{f}" for f in target.functions]
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *names]
    proc = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True)
    (work / "mutmut.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return proc.returncode, proc.stdout[-3000:] + proc.stderr[-3000:]


def statuses(target: Target, work: Path) -> dict[str, str]:
    from mutmut.stats import status_by_exit_code

    meta = json.loads((work / "mutants" / (target.path + ".meta")).read_text())
    out = {}
    for name, code in meta["exit_code_by_key"].items():
        if target.functions and not any(re.fullmatch(_glob(f"{module_name(target.path)}.{g}"), name)
                                        for g in target.functions):
            continue
        out[name] = status_by_exit_code[code]
    return out


def _glob(pattern: str) -> str:
    return re.escape(pattern).replace(r"\*", ".*")


def mutant_diff(work: Path, path: str, name: str) -> str:
    """mutmut's own diff of one mutant (read from ``work/mutants``; mutmut resolves paths from the cwd)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(work)
    try:
        return get_diff_for_mutant(name, path=path)
    finally:
        os.chdir(here)


def changed_line(diff: str) -> str:
    """The mutated line (the diff's single '+' line), stripped."""
    plus = [l[1:].strip() for l in diff.splitlines() if l.startswith("+") and not l.startswith("+++")]
    return " | ".join(plus)


def load_entries(path: Path) -> dict[str, dict]:
    """``[{"name", "line", "why"}, ...]`` (the equivalents or the verdicts file) by mutant name."""
    if not path.is_file():
        return {}
    return {e["name"]: e for e in json.loads(path.read_text())}


def judge(name: str, status: str, line: str, equivalents: dict[str, dict], verdicts: dict[str, dict]) -> tuple[bool, str]:
    """``(equivalent, verdict)`` of a mutant no test killed. An entry counts only while its line is
    the mutant's mutated line; a stale equivalent is shown as such, a stale verdict is ignored."""
    eq = equivalents.get(name)
    if eq and eq.get("line") == line:
        if status == "survived":
            return True, "equivalent: " + eq["why"]
        return False, f"listed as equivalent ({eq['why']}), but its status is {status!r}"
    if eq:
        return False, eq["why"] + " (STALE: the listed line no longer matches)"
    judged = verdicts.get(name)
    if judged and judged.get("line") == line:
        return False, "not killed: " + judged["why"]
    return False, "not killed"


def evaluate(target: Target, work: Path, equivalents: dict[str, dict], verdicts: dict[str, dict]) -> dict:
    status = statuses(target, work)
    survivors = []
    counts = {"killed": 0, "survived": 0, "timeout": 0, "equivalent": 0, "no_tests": 0, "other": 0}
    for name, st in sorted(status.items()):
        if st in ("killed", "caught by type check"):
            counts["killed"] += 1
            continue
        if st == "timeout":
            counts["timeout"] += 1
            continue
        diff = mutant_diff(work, target.path, name)
        line = changed_line(diff)
        equivalent, verdict = judge(name, st, line, equivalents, verdicts)
        survivors.append({"name": name, "status": st, "line": line, "diff": _short_diff(diff), "verdict": verdict})
        if equivalent:
            counts["equivalent"] += 1
            continue
        counts["survived"] += 1
        if st == "no tests":
            counts["no_tests"] += 1
        elif st != "survived":
            counts["other"] += 1
    detected = counts["killed"] + counts["timeout"]
    total = detected + counts["survived"]
    score = round(detected / total, 4) if total else 1.0
    unmutated = [f for f, mutmut_name in unmutated_functions((ROOT / target.path).read_text())
                 if not target.functions or any(re.fullmatch(_glob(g), mutmut_name) for g in target.functions)]
    return {"module": target.path, "functions": target.functions, "tests": target.tests, "why": target.why,
            **counts, "score": score, "mutants": len(status), "survivors": survivors, "unmutated": unmutated}


def unmutated_functions(source: str) -> list[tuple[str, str]]:
    """``(name, mutmut name)`` of the functions and methods mutmut 3 leaves out without a word: every
    decorated one except a lone ``@staticmethod`` / ``@classmethod`` (a ``@torch.no_grad()``, a cache,
    a ``@property``). Their mistakes cannot be caught, so the report names them."""
    def skipped(fn) -> bool:
        decorators = fn.decorator_list
        return bool(decorators) and not (len(decorators) == 1 and isinstance(decorators[0], ast.Name)
                                         and decorators[0].id in ("staticmethod", "classmethod"))

    out = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and skipped(node):
            out.append((node.name, f"x_{node.name}"))
        elif isinstance(node, ast.ClassDef):
            out += [(f"{node.name}.{fn.name}", f"x\u01c1{node.name}\u01c1{fn.name}") for fn in node.body
                    if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and skipped(fn)]
    return out


def _short_diff(diff: str) -> str:
    keep = [l for l in diff.splitlines() if (l.startswith("-") or l.startswith("+"))
            and not l.startswith(("---", "+++"))]
    return "\n".join(keep)


def render_md(data: dict) -> str:
    out = ["# Mutation testing", "",
           "Generated by `make mutation` (`scripts/mutation.py`, mutmut "
           f"{data.get('mutmut', '?')}); do not edit by hand. Each module is mutated alone and checked "
           "by the tests relevant to it (listed); score = (killed + timeout) / (killed + timeout + "
           "survived), equivalent mutants excluded and named below. A mutant in a function that none "
           "of the selected tests calls (\"no tests\") counts as a survivor.", "",
           "| module | scope | tests | mutants | killed | timeout | survived | equivalent | score | "
           "minutes | run on |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    mods = data["modules"]
    for path in sorted(mods):
        m = mods[path]
        scope = ", ".join(f.removeprefix("x_").rstrip("*") for f in m["functions"]) or "whole module"
        tests = ", ".join(Path(t).name for t in m["tests"])
        out.append(f"| `{path}` | {scope} | {tests} | {m['mutants']} | {m['killed']} | {m['timeout']} | "
                   f"{m['survived']} | {m['equivalent']} | {m['score']:.3f} | "
                   f"{'?' if m['seconds'] is None else round(m['seconds'] / 60, 1)} | "
                   f"{m['machine']} |")
    missing = [t.path for t in TARGETS if t.path not in mods]
    if missing:
        out += ["", "Not run yet (no result recorded): " + ", ".join(f"`{m}`" for m in missing) + "."]
    out += ["", "## Surviving mutants", "",
            "Every mutant that no test killed, with its verdict: *equivalent* (no input can tell it apart "
            "from the original; the reason is given, out of the score) or *not killed* (a survivor, counted "
            "in the score; where it was judged, why no test is written for it).", ""]
    for path in sorted(mods):
        survivors = mods[path]["survivors"]
        out.append(f"### `{path}`")
        out.append("")
        if mods[path].get("unmutated"):
            out += ["Not mutated (mutmut 3 leaves decorated functions out): "
                    + ", ".join(f"`{f}`" for f in mods[path]["unmutated"]) + ".", ""]
        if not survivors:
            out += ["None.", ""]
            continue
        out += ["| mutant | mutated line | status | verdict |", "|---|---|---|---|"]
        for s in survivors:
            line = s["line"].replace("|", "\\|") or "(line removed)"
            out.append(f"| `{s['name'].rpartition('.')[2]}` | `{line}` | {s['status']} | {s['verdict']} |")
        out.append("")
    return "\n".join(out)


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{platform.machine()} {os.cpu_count()} cores, load {load:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modules", nargs="*", default=None, help="module paths (default: all targets)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="parallel mutant runs")
    parser.add_argument("--no-write", action="store_true", help="do not update results/mutation.{json,md}")
    parser.add_argument("--report-only", action="store_true",
                        help="re-read the last run of each module from .mutation/ (e.g. after editing the "
                             "equivalents) instead of running mutmut again")
    parser.add_argument("--min-score", type=float, default=None,
                        help="exit 1 when a module run scores below this (CI runs a fast subset with 0.9)")
    args = parser.parse_args(argv)
    try:
        import mutmut
    except ImportError:
        print("mutation: mutmut is not installed (pip install -e '.[dev]')", file=sys.stderr)
        return 2
    by_path = {t.path: t for t in TARGETS}
    chosen = args.modules or list(by_path)
    unknown = [m for m in chosen if m not in by_path]
    if unknown:
        print(f"mutation: no mutation target for {unknown}; known: {sorted(by_path)}", file=sys.stderr)
        return 2
    equivalents, verdicts = load_entries(EQUIVALENTS), load_entries(VERDICTS)
    data = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {"modules": {}}
    data["mutmut"] = getattr(mutmut, "__version__", "?")
    total = {"killed": 0, "survived": 0, "timeout": 0}
    failed = False
    for path in chosen:
        target = by_path[path]
        start = time.perf_counter()
        where = machine()
        work = WORK / slug(path)
        if args.report_only:
            rc, tail = 0, ""
        else:
            work = prepare(target)
            problem = order_check(target, work)
            if problem:
                print(f"mutation: the tests of {path} fail when run in reverse order (unmutated), so mutmut "
                      f"would count every mutant as killed; make them order-independent first:\n{problem}",
                      file=sys.stderr)
                failed = True
                continue
            rc, tail = run_mutmut(target, work, args.jobs)
            (work / "run.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1),
                                                       "machine": where, "mutmut_exit": rc}))
        if rc != 0 or not (work / "mutants" / (path + ".meta")).is_file():  # e.g. the clean test run failed
            print(f"mutation: mutmut failed on {path} (exit {rc}); log in {work / 'mutmut.log'}\n{tail}",
                  file=sys.stderr)
            failed = True
            continue
        result = evaluate(target, work, equivalents, verdicts)
        result.update(json.loads((work / "run.json").read_text()) if (work / "run.json").is_file()
                      else {"seconds": None, "machine": where, "mutmut_exit": rc})
        data["modules"][path] = result
        for key in total:
            total[key] += result[key]
        print(f"{path}: {result['mutants']} mutants, killed {result['killed']}, timeout {result['timeout']}, "
              f"survived {result['survived']} (no tests {result['no_tests']}), equivalent "
              f"{result['equivalent']}, score {result['score']:.3f}, {result['seconds']} s", flush=True)
        if args.min_score is not None and result["score"] < args.min_score:
            print(f"mutation: {path} scores {result['score']:.3f} < --min-score {args.min_score}", file=sys.stderr)
            failed = True
    if not args.no_write:
        RESULTS_JSON.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        RESULTS_MD.write_text(render_md(data) + "\n")
    detected = total["killed"] + total["timeout"]
    n = detected + total["survived"]
    print(json.dumps({**total, "score": round(detected / n, 4) if n else 1.0}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
