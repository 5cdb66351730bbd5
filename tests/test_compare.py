"""`vidtldr compare`: every registered reducer fitted to one budget, evaluated, timed (tiny model)."""

import json
import math
import os
import subprocess
import sys

import pytest
from _eval_helpers import make_cfg
from conftest import ROOT

from vidtldr.analysis.compare.command import fit_all, model_level, registered_reducers, run_compare, summary
from vidtldr.analysis.flops.engine import count
from vidtldr.config_utils import compose_config
from vidtldr.errors import ConfigError
from vidtldr.reduce import reducer_class
from vidtldr.run.runspec import resolve_model

# The tiny encoder counted by hand in tests/test_flops.py: unreduced, and vid-TLDR at its [48, 24].
TINY_UNREDUCED = 97_304_128 / 1e9
TINY_VIDTLDR_48_24 = 78_292_032 / 1e9


def _strict(text: str):
    def refuse(name):
        raise AssertionError(f"{name} in JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One comparison of every registered reducer at 0.7 of the unreduced GFLOPs, 2 seeds."""
    root = tmp_path_factory.mktemp("compare")
    cfg = make_cfg(root, "budget.ratio=0.7", "compare.seeds=2", "compare.time.repeats=1", config_name="compare")
    return run_compare(cfg, root / "run"), root / "run"


def test_every_registered_reducer_is_fitted_within_5_percent_below_the_budget(compared):
    record, _ = compared
    budget = 0.7 * TINY_UNREDUCED
    assert record["budget_gflops"] == pytest.approx(budget, rel=1e-12)
    assert [r["merge"] for r in record["rows"]] == registered_reducers()
    assert {"vidtldr", "tome", "random", "repshift"} <= {r["merge"] for r in record["rows"]}
    for row in record["rows"]:
        assert row["fitted"], row["error"]
        assert 0.95 * budget <= row["gflops_paper"] <= budget, row
    assert record["reference"]["gflops_paper"] == pytest.approx(TINY_UNREDUCED, rel=1e-12)


def test_flops_counts_each_rows_merge_r_the_same(compared):
    record, _ = compared
    for row in record["rows"]:
        r = "[" + ",".join(map(str, row["merge_r"])) + "]"
        spec = resolve_model(compose_config(["model=tiny", f"merge={row['merge']}", f"merge.r={r}"],
                                              config_name="flops"))
        assert count(spec, trace=False)["gflops_paper"] == round(row["gflops_paper"], 4), row["merge"]
        for run in row["runs"]:  # and the evaluation recorded the same count
            assert run["gflops_record"] == round(row["gflops_paper"], 3)


def test_stochastic_reducers_run_once_per_seed_with_mean_and_std(compared):
    record, run_dir = compared
    for row in record["rows"]:
        stochastic = reducer_class(row["merge"]).stochastic
        assert row["stochastic"] == stochastic
        assert row["seeds"] == ([0, 1] if stochastic else [0])
        values = row["metrics"][record["metric"]]["values"]
        assert row["mean"] == pytest.approx(sum(values) / len(values))
        if stochastic:
            seeds = [json.loads((run_dir / "rows" / f"{row['merge']}_seed{s}" / "record.json").read_text())
                     ["config"]["merge"]["seed"] for s in (0, 1)]
            assert seeds == [0, 1]
            mean = sum(values) / 2
            assert row["std"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in values)))
        else:
            assert row["std"] is None and (run_dir / "rows" / row["merge"] / "record.json").is_file()
    assert reducer_class("random").stochastic and not reducer_class("vidtldr").stochastic


def test_retrieval_headline_is_itm_mean_recall_and_r1_from_the_records(compared):
    record, run_dir = compared
    assert record["metric"] == "itm_r_mean"
    evaluated = json.loads((run_dir / "rows" / "vidtldr" / "record.json").read_text())
    row = next(r for r in record["rows"] if r["merge"] == "vidtldr")
    itm = evaluated["metrics"]["itm"]
    assert row["mean"] == itm["r_mean"]
    assert row["metrics"]["r1_mean"]["mean"] == (itm["txt_r1"] + itm["img_r1"]) / 2
    assert evaluated["run"]["schedule"][:len(row["merge_r"])] == row["merge_r"]


def test_outputs_are_strict_json_tables_plot_and_timing(compared):
    record, run_dir = compared
    on_disk = _strict((run_dir / "compare.json").read_text())
    assert on_disk["rows"][0]["merge"] == record["rows"][0]["merge"]
    for row in [record["reference"], *record["rows"]]:
        assert set(row["encoder_ms"]) == {"fused", "materialized"} and all(v > 0 for v in row["encoder_ms"].values())
    md = (run_dir / "compare.md").read_text()
    csv_lines = (run_dir / "compare.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 1 + len(record["rows"])  # header, unreduced reference, one per reducer
    assert "vid-TLDR" in md and "reference (unreduced)" in md
    assert (run_dir / "compare.png").stat().st_size > 0 and (run_dir / "compare.svg").is_file()
    line = _strict(json.dumps(summary(record), allow_nan=False))
    assert set(line) == {"budget_gflops", "metric", "rows", "record"}
    for entry in line["rows"]:
        assert {"merge", "merge_r", "gflops_paper", "stochastic", "seeds", "mean", "std", "encoder_ms"} <= set(entry)


def test_published_budget_fits_vidtldr_to_its_own_published_schedule():
    cfg = compose_config(["budget=published"], config_name="compare")
    spec, arch = model_level(cfg)
    fits, described = fit_all(["vidtldr", "tome"], arch, spec.num_frames, TINY_VIDTLDR_48_24, "shape", [48, 24])
    assert fits[0].merge_r == [48, 24] and fits[0].gflops == pytest.approx(TINY_VIDTLDR_48_24, rel=1e-12)
    assert fits[1].fitted and 0.95 * TINY_VIDTLDR_48_24 <= fits[1].gflops <= TINY_VIDTLDR_48_24
    assert "shape [48, 24" in described
    constant, words = fit_all(["tome"], arch, spec.num_frames, TINY_VIDTLDR_48_24, "constant", [48, 24])
    assert words.startswith("constant") and constant[0].gflops <= TINY_VIDTLDR_48_24


def test_a_reducer_that_cannot_reach_the_budget_is_reported_not_dropped(tmp_path):
    cfg = make_cfg(tmp_path, "budget.gflops=0.01", "compare.reducers=[tome,random]", "compare.time.repeats=0",
                   "compare.plot=false", config_name="compare")
    record = run_compare(cfg, tmp_path / "run")
    assert [r["merge"] for r in record["rows"]] == ["tome", "random"]
    for row in record["rows"]:
        assert not row["fitted"] and "below what any schedule reaches" in row["error"]
        assert row.get("mean") is None
    assert "not fitted" in (tmp_path / "run" / "compare.md").read_text()
    assert "error" in summary(record)["rows"][0]


@pytest.mark.parametrize("overrides, message", [
    (["budget.ratio=1"], "needs no reduction"),
    (["budget.gflops=1000"], "needs no reduction"),
    (["budget.ratio=abc"], "budget.ratio=abc: not a number"),
    (["budget.ratio=0.5", "budget.gflops=0.05"], "exactly one of"),
    ([], "exactly one of"),
    (["budget=published", "model=umt_b", "dataset=msrvtt_zs"], "budget=published: no vid-TLDR schedule"),
    (["budget.ratio=0.7", "compare.seeds=0"], "compare.seeds=0: out of range"),
    (["budget.ratio=0.7", "compare.seeds=1.5"], "compare.seeds=1.5: not an integer"),
    (["budget.ratio=0.7", "compare.reducers=[bogus]"], "compare.reducers=['bogus']: unknown reducer 'bogus'; "
                                                       "accepted: divprune, fastv, "),
    (["budget.ratio=0.7", "compare.reducers=[rlt+]"], "compare.reducers: merge=rlt+: a composition is A+B"),
    (["budget.ratio=0.7", "compare.reducers=[tome+rlt]"], "compare.reducers: merge=tome+rlt: tome acts inside"),
    (["budget.ratio=0.7", "compare.reducers=[none]"], "none is the unreduced reference"),
    (["budget.ratio=0.7", "compare.schedule=zigzag"], "compare.schedule=zigzag: accepted values: shape, constant"),
    (["budget.ratio=0.7", "compare.time.materialized=maybe"], "compare.time.materialized=maybe: not a boolean"),
    (["budget.ratio=0.7", "+compare.seed=3"], "unknown key(s) compare.seed"),
    (["budget.ratio=0.7", "compare.reducers=[tome,random,tome]"], "compare.reducers=['tome', 'random', 'tome']: "
                                                                   "a reducer is listed twice"),
    (["budget.ratio=0.7", "compare.reducers=tome"], "compare.reducers='tome': expected all or a list of reducer "
                                                    "names, e.g. [tome,random]"),
    (["budget.ratio=0.7", "compare.reducers=[]"], "compare.reducers=[]: expected all or a list"),
    (["budget.ratio=0.7", "+compare.time.repeat=3"], "unknown key(s) compare.time.repeat; accepted: "
                                                      "compare.time.repeats, compare.time.materialized"),
    (["budget=cheap"], "budget=cheap: accepted"),
    (["budget.ratio=0.7", "eval.overwrite=no"], "eval.overwrite=no: not a boolean"),
])
def test_mistakes_are_refused_before_any_model_is_built(tmp_path, monkeypatch, overrides, message):
    import vidtldr.run.assemble as assemble

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(assemble, "build_model", no_model)  # every tool builds its model through it
    with pytest.raises(ConfigError) as err:
        run_compare(make_cfg(tmp_path, *overrides, config_name="compare"), tmp_path / "run")
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_a_fidelity_metric_undefined_for_the_folder_is_refused_before_any_model_is_built(tmp_path, monkeypatch):
    # before: every video was decoded and the unreduced model encoded them before the refusal
    import vidtldr.run.assemble as assemble
    from vidtldr.run.runner import ensure_tiny_data

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    clips = ensure_tiny_data(tmp_path, "msrvtt") / "videos"
    videos = len(list(clips.rglob("*.mp4")))
    assert videos == 7  # each ranks the 6 others: top-5 is defined, top-10 holds every one of them
    monkeypatch.setattr(assemble, "build_model", no_model)
    cfg = make_cfg(tmp_path, "budget.ratio=0.6", f"videos={clips}", "compare.reducers=[tome]",
                   "compare.fidelity_metric=itc_top10_overlap", config_name="compare")
    with pytest.raises(ConfigError) as err:
        run_compare(cfg, tmp_path / "run")
    assert str(err.value).startswith("compare.fidelity_metric=itc_top10_overlap: undefined for 7 videos (each "
                                     "video ranks the other videos: every one is in every top-10); accepted here: "
                                     "embedding_cosine_mean, itc_top1_agreement, itc_top5_overlap")
    assert not (tmp_path / "run").exists()


def test_unlabelled_folder_compares_fidelity(tmp_path):
    from vidtldr.run.runner import ensure_tiny_data

    clips = ensure_tiny_data(tmp_path, "msrvtt") / "videos"
    cfg = make_cfg(tmp_path, "budget.ratio=0.6", f"videos={clips}", "compare.reducers=[vidtldr,random]",
                   "compare.seeds=2", "compare.time.repeats=0", "compare.plot=false", config_name="compare")
    record = run_compare(cfg, tmp_path / "run")
    assert record["metric"] == "embedding_cosine_mean"
    assert record["reference"]["mean"] == pytest.approx(1.0, abs=1e-6)
    for row in record["rows"]:
        assert 0 < row["mean"] < 1 - 1e-6 and "encoder_ms" not in row
    assert len(next(r for r in record["rows"] if r["merge"] == "random")["runs"]) == 2


@pytest.mark.slow
def test_command_line_prints_the_table_then_one_json_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "vidtldr.compare", f"paths.cache={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}",
            "budget.ratio=0.7", "compare.reducers=[vidtldr,random]", "compare.seeds=2", "compare.time.repeats=1"]
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("== compare | dataset msrvtt | model=tiny")
    line = _strict(lines[-1])
    assert [r["merge"] for r in line["rows"]] == ["vidtldr", "random"] and line["rows"][1]["seeds"] == 2
    bad = subprocess.run([*args[:5], "budget.ratio=2"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("vidtldr.compare: error: budget")


def _reducers_table():
    import importlib.util

    spec = importlib.util.spec_from_file_location("reducers_table", ROOT / "scripts" / "reducers_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_reducers_refuses_without_checkpoints_and_data(tmp_path, monkeypatch, capsys):
    import vidtldr.analysis.compare.command as compare_module

    def must_not_run(*args, **kwargs):
        raise AssertionError("a comparison started although inputs are missing")

    monkeypatch.setattr(compare_module, "run_compare", must_not_run)
    table = _reducers_table()
    args = ["--datasets", "msrvtt", "didemo", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            "--", f"paths.data={tmp_path}/d", f"paths.checkpoints={tmp_path}/c"]
    with pytest.raises(SystemExit) as exit_code:
        table.main(args)
    assert exit_code.value.code == 2
    err = capsys.readouterr().err
    for name in ("ret_msrvtt_b16_25m.pth", "ret_msrvtt_l16_25m.pth", "ret_didemo_b16_25m.pth", "ret_didemo_l16_25m.pth",
                 "msrvtt_ret_test1k.json", "didemo_ret_test.json", "videos/msrvtt/", "videos/didemo/"):
        assert sum(name in line for line in err.splitlines()) == 1, name  # one line each, listed once
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
    assert table.main(["--dry-run", *args]) == 0
    out = capsys.readouterr().out
    assert out.count("python -m vidtldr.compare model=") == 4 and "4 comparisons; " in out
    # 2 checkpoints x 2 datasets, an annotation and a video folder each (and the tokenizers, where the
    # machine's Hugging Face cache lacks them)
    missing = [line for line in out.splitlines() if line.startswith("  missing ") and "tokenizer" not in line]
    assert len(missing) == 8


def test_table_reducers_writes_md_csv_tex_from_comparisons(compared, tmp_path):
    record, _ = compared
    other = {**record, "dataset": "didemo", "backbone": "umt_l"}
    md, csv_path, tex = _reducers_table().write_table([record, other], tmp_path)
    rows = 1 + len(record["rows"])  # the unreduced reference and every reducer
    assert md.read_text().count("## ") == 2 and "## didemo / umt_l" in md.read_text()
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("dataset,backbone,reducer,") and len(lines) == 1 + 2 * rows
    assert tex.read_text().count(r" \\") == 1 + 2 * rows and "DiDeMo (UMT-L/16)" in tex.read_text()


def test_qa_headline_is_accuracy_at_the_qa_encoders_published_budget(tmp_path):
    cfg = make_cfg(tmp_path, "dataset=msrvtt_qa", "budget=published", "compare.reducers=[vidtldr]",
                   "compare.time.repeats=0", "compare.plot=false", config_name="compare")
    record = run_compare(cfg, tmp_path / "run")
    # the QA encoder has no pool norm: 5 x 64 fewer than the retrieval count (tests/test_flops.py)
    assert record["budget_gflops"] == pytest.approx(TINY_VIDTLDR_48_24 - 5 * 64 / 1e9, rel=1e-12)
    row = record["rows"][0]
    assert record["metric"] == "acc" and row["merge_r"] == [48, 24]
    evaluated = json.loads((tmp_path / "run" / "rows" / "vidtldr" / "record.json").read_text())
    assert row["mean"] == evaluated["metrics"]["acc"]


def test_an_interrupted_comparison_resumes_row_by_row(tmp_path, monkeypatch):
    import vidtldr.run.runner as runner

    overrides = ("budget=published", "compare.reducers=[vidtldr,random]", "compare.seeds=2", "compare.time.repeats=0",
                 "compare.plot=false")
    first = run_compare(make_cfg(tmp_path, *overrides, config_name="compare"), tmp_path / "run")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished row was evaluated again")

    monkeypatch.setattr(runner, "run", must_not_run)
    again = run_compare(make_cfg(tmp_path, *overrides, config_name="compare"), tmp_path / "run")
    assert [r["mean"] for r in again["rows"]] == [r["mean"] for r in first["rows"]]
    # another seed count is another row: it runs (and here, fails on purpose)
    with pytest.raises(AssertionError, match="evaluated again"):
        run_compare(make_cfg(tmp_path, *overrides[:-3], "compare.seeds=3", *overrides[-2:], config_name="compare"),
                    tmp_path / "run")


def test_a_composition_is_fitted_on_its_in_block_part_and_counted_by_flops(tmp_path):
    cfg = make_cfg(tmp_path, "budget.ratio=0.7", "compare.reducers=[rlt+random]", "compare.seeds=2",
                   "compare.time.repeats=0", "compare.plot=false", config_name="compare")
    record = run_compare(cfg, tmp_path / "run")
    row = record["rows"][0]
    assert row["fitted"] and row["stochastic"] and row["seeds"] == [0, 1]
    # rlt's own default (0.3 of the 196 embedded tokens, truncated: 58) leaves 138 for the blocks
    assert "138 of 196 tokens enter block 0" in row["fit_note"]
    assert 0.95 * record["budget_gflops"] <= row["gflops_paper"] <= record["budget_gflops"]
    r = "[" + ",".join(map(str, row["merge_r"])) + "]"
    spec = resolve_model(compose_config(["model=tiny", "merge=rlt+random", f"merge.r={r}"], config_name="flops"))
    assert count(spec, trace=False)["gflops_paper"] == round(row["gflops_paper"], 4)
    assert "RLT + random drop (stochastic)" in (tmp_path / "run" / "compare.md").read_text()


def test_a_composition_whose_input_part_alone_fits_runs_with_no_in_block_schedule(tmp_path):
    # before: fitted to merge.r=[], then "merge=rlt+vidtldr merge.r=null removes no tokens" after the
    # reference row had been evaluated
    cfg = make_cfg(tmp_path, "budget.ratio=0.8", "compare.reducers=[rlt+vidtldr]", "compare.time.repeats=0",
                   "compare.plot=false", config_name="compare")
    record = run_compare(cfg, tmp_path / "run")
    row = record["rows"][0]
    assert row["fitted"] and row["merge_r"] == [] and row["mean"] is not None
    rlt_alone = count(resolve_model(compose_config(["model=tiny", "merge=rlt"], config_name="flops")), trace=False)
    assert round(row["gflops_paper"], 4) == rlt_alone["gflops_paper"]  # rlt's own 30 %, nothing in the blocks
    evaluated = json.loads((tmp_path / "run" / "rows" / "rlt+vidtldr" / "record.json").read_text())
    assert evaluated["token_counts"] == [138] * 5


def test_headline_metric_of_each_task_by_hand():
    from vidtldr.analysis.compare.command import headline

    itm = {"txt_r1": 40.0, "img_r1": 30.0, "r_mean": 61.5}
    assert headline({"itm": itm, "itc": {"r_mean": 1.0}}) == {"itm_r_mean": 61.5, "r1_mean": 35.0}
    assert headline({"acc": 44.25}) == {"acc": 44.25}
    assert headline({"top1": 70.0, "top5": 90.0, "per_class_top1": {}}) == {"top1": 70.0, "top5": 90.0}
    with pytest.raises(ConfigError, match="no headline metric"):
        headline({"bleu": 1.0})


def test_classification_headline_is_top1_on_another_backbone_family(tmp_path):
    cfg = make_cfg(tmp_path, "model=videomae_tiny", "dataset=kinetics400", "budget.ratio=0.7",
                   "compare.reducers=[tome]", "compare.time.repeats=0", "compare.plot=false", config_name="compare")
    record = run_compare(cfg, tmp_path / "run")
    row = record["rows"][0]
    assert record["metric"] == "top1" and row["fitted"]
    assert 0.95 * record["budget_gflops"] <= row["gflops_paper"] <= record["budget_gflops"]
    evaluated = json.loads((tmp_path / "run" / "rows" / "tome" / "record.json").read_text())
    assert row["mean"] == evaluated["metrics"]["top1"] and row["metrics"]["top5"]["mean"] == evaluated["metrics"]["top5"]
    assert "| unreduced |" in (tmp_path / "run" / "compare.md").read_text()


def test_an_explicit_checkpoint_with_the_tiny_model_is_loaded_and_not_called_random(tmp_path):
    """model=tiny with model.checkpoint= on the command line resolves model.init to checkpoint, as the
    evaluation does: every row loads it, and the record does not call the weights random."""
    import torch

    from vidtldr.models.config import load_architecture
    from vidtldr.models.umt import build_model

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pth"
    torch.save({"model": build_model(load_architecture("tiny", task="retrieval", num_frames=4)).state_dict()}, ckpt)
    given = ["budget.ratio=0.7", "compare.reducers=[tome]", "compare.time.repeats=0", "compare.plot=false",
             f"model.checkpoint={ckpt}"]
    record = run_compare(make_cfg(tmp_path, *given, config_name="compare"), tmp_path / "run", overrides=given)
    assert "note" not in record and "Note:" not in (tmp_path / "run" / "compare.md").read_text()
    for row in ("none", "tome"):
        evaluated = json.loads((tmp_path / "run" / "rows" / row / "record.json").read_text())
        assert evaluated["resolved"]["init"] == "checkpoint" and evaluated["checksums"]["checkpoint"]["path"] == str(ckpt)
    unasked = run_compare(make_cfg(tmp_path, *given[:-1], config_name="compare"), tmp_path / "plain", overrides=[])
    assert unasked["note"].startswith("model=tiny has random weights")


def test_a_task_declares_its_headline_and_compare_reads_it(monkeypatch):
    """compare knows no task by name: a new registered task's declared headline is what it reads."""
    from vidtldr.analysis.compare.command import headline
    from vidtldr.tasks.base import TASKS, Task

    class Toy(Task):
        readers = ("caption",)
        heads = "retrieval"
        headline_metrics = ("pooled_norm", "videos_scored")

    monkeypatch.setitem(TASKS, "toy_norms", Toy)
    assert headline({"pooled_norm": 3, "videos_scored": 7, "other": 1.0}) == {"pooled_norm": 3.0, "videos_scored": 7.0}
    assert headline({"pooled_norm": 2.5}, task="toy_norms") == {"pooled_norm": 2.5}
    assert Task().headline({"acc": 1.0}) is None  # a task declaring none has no headline
    with pytest.raises(ConfigError, match="no headline metric"):
        headline({"acc": 50.0}, task="toy_norms")


def test_a_task_declares_how_its_percentages_read_in_compare_tables(monkeypatch):
    """Display names and decimals come from the tasks' declarations, not from a list in compare."""
    from vidtldr.analysis.compare.report import digits, metric_name
    from vidtldr.tasks.base import TASKS, Task

    assert metric_name("itm_r_mean") == "ITM mean recall" and metric_name("top1") == "top-1 accuracy"
    assert digits({"metric": "acc"}) == 2 and digits({"metric": "embedding_cosine_mean"}) == 4
    assert metric_name("map") == "map" and digits({"metric": "map"}) == 4

    class Toy(Task):
        readers = ("caption",)
        heads = "retrieval"
        headline_metrics = ("map",)
        metric_labels = {"map": "mean average precision"}

    monkeypatch.setitem(TASKS, "toy_map", Toy)
    assert metric_name("map") == "mean average precision" and digits({"metric": "map"}) == 2
