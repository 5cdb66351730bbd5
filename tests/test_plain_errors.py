"""Ordinary mistakes give one line naming the culprit (never a traceback), and nothing the run
changes from what was asked is silent (issue: reliability). Each test failed before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vidtldr.config_utils import compose_config
from vidtldr.data.annotations import build_split
from vidtldr.data.validate import validate_dataset
from vidtldr.data.registry import load_dataset_config
from vidtldr.errors import AnnotationError, CheckpointError, ConfigError, MissingFilesError, VideoError
from vidtldr.run.runner import ensure_tiny_data, run
from vidtldr.run.runspec import resolve

from _eval_helpers import make_cfg, read


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A cache with the generated tiny MSRVTT data and features from one clean run."""
    cache = tmp_path_factory.mktemp("plain_errors")
    record = run(make_cfg(cache), cache / "runs" / "clean", progress=False)
    return cache, record


def test_empty_annotation_list_is_refused_and_reported(tmp_path):
    with pytest.raises(AnnotationError, match="list of records is empty"):
        build_split([], "caption", tmp_path)
    root = ensure_tiny_data(tmp_path / "cache", "msrvtt")
    cfg = load_dataset_config("msrvtt")
    annotation = root / "anno_downstream" / cfg["annotation"]
    annotation.write_text("[]")
    report = validate_dataset(cfg, root, decode=False, use_manifest=False)
    assert not report["ok"]
    assert [(p["kind"], p["message"], p["file"]) for p in report["problems"]] == [
        ("schema", "the list of records is empty: nothing to evaluate", str(annotation))]


def test_duplicate_annotations_are_reported(tmp_path):
    root = ensure_tiny_data(tmp_path / "cache", "msrvtt")
    cfg = load_dataset_config("msrvtt")
    annotation = root / "anno_downstream" / cfg["annotation"]
    records = json.loads(annotation.read_text())
    annotation.write_text(json.dumps(records + [records[1]]))
    report = validate_dataset(cfg, root, decode=False, use_manifest=False)
    duplicates = [p for p in report["problems"] if p["kind"] == "duplicate"]
    assert [(p["record"], p["message"]) for p in duplicates] == [(len(records), "identical to record 1")]


@pytest.mark.parametrize("overrides, message", [
    (["+merge.rr=3"], "unknown key.*merge.rr"),
    (["merge.r=[]"], r"merge.r=\[\] removes no tokens: use merge=none"),
    (["merge.r=null"], "merge.r=null removes no tokens"),
])
def test_merge_mistakes_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(compose_config(overrides))


def test_cache_or_runs_under_a_file(tmp_path):
    from vidtldr.eval import check_run_location

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="paths.cache=.*is a file, expected a directory"):
        run(compose_config([f"paths.cache={blocker}"]), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="paths.runs=.*is a file"):
        check_run_location([f"paths.runs={blocker}"], environ={})
    with pytest.raises(ConfigError, match="hydra.run.dir=.*is a file"):
        check_run_location([f"hydra.run.dir={blocker}/x"], environ={})
    check_run_location([f"hydra.run.dir={tmp_path}/fine"], environ={})


def test_random_bytes_checkpoint_never_advises_trusting_a_pickle(tmp_path, capsys):
    import importlib.util

    from vidtldr.models.checkpoint import read_state_dict

    path = tmp_path / "random.pth"
    path.write_bytes(bytes(range(7, 250)) * 20)
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    assert "not a PyTorch checkpoint" in str(info.value) and "trust" not in str(info.value)
    script = Path(__file__).resolve().parent.parent / "scripts" / "convert_checkpoint.py"
    spec = importlib.util.spec_from_file_location("convert_checkpoint", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main([str(path), str(tmp_path / "out.safetensors"), "--trust-pickle"])
    assert exit_info.value.code == 2 and "cannot be read even as a trusted pickle" in capsys.readouterr().err


def test_a_pickle_with_objects_still_gets_the_conversion_hint(tmp_path):
    from vidtldr.models.checkpoint import read_state_dict

    path = tmp_path / "objects.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "cls": torch.nn.Linear}, path)
    with pytest.raises(CheckpointError, match="--trust-pickle"):
        read_state_dict(path)


def test_inspect_num_frames_zero_is_one_line(tiny, capsys):
    from vidtldr.data import inspect

    video = next((tiny[0] / "tiny_data").rglob("*.mp4"))
    with pytest.raises(SystemExit) as info:
        inspect.main([str(video), "--num-frames", "0"])
    assert info.value.code == 2 and "--num-frames must be an integer >= 1, got 0" in capsys.readouterr().err


def test_truncated_video_message_has_no_libav_code(tiny, tmp_path):
    from vidtldr.data.video import read_frames

    video = next((tiny[0] / "tiny_data").rglob("*.mp4"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(video.read_bytes()[: video.stat().st_size * 3 // 4])
    with pytest.raises(VideoError) as info:
        read_frames(broken, 4)
    message = str(info.value)
    assert str(broken) in message and not any(token.lstrip("-(").isdigit() and len(token) > 6
                                               for token in message.split())


def test_caps_and_clamps_are_recorded_and_warned(tiny, tmp_path, caplog):
    cache, _ = tiny
    with caplog.at_level("WARNING"):
        record = run(make_cfg(cache, "eval.k_test=50", "merge.r=[150,24]"), tmp_path / "run", progress=False)
    adjusted = record["adjusted"]
    assert adjusted["eval.k_test"]["requested"] == 50 and adjusted["eval.k_test"]["effective"] == 4
    assert adjusted["merge.r"] == {**adjusted["merge.r"], "requested": [150, 24, 0, 0], "effective": [98, 24, 0, 0]}
    assert record["token_counts"] == [196, 98, 74, 74, 74]  # what ran is what "effective" says
    assert adjusted["eval.num_frames"]["explicit"] is False  # the dataset's 12 frames, capped at 4 by the model
    assert "eval.k_test: requested 50, using 4" in caplog.text and "merge.r: requested" in caplog.text


@pytest.mark.parametrize("requested,effective,counts", [
    # 196 tokens: block 0 removes min(150, 196 // 2) = 98 -> 98; block 1 min(40, 49) = 40 -> 58;
    # block 2 min(30, 58 // 2 = 29) = 29 -> 29: clamped against the 58 tokens entering it, not the 196
    ([150, 40, 30], [98, 40, 29, 0], [196, 98, 58, 29, 29]),
    # no clamp until block 2: 196 -> 136 -> 76, where 60 > 76 // 2 = 38
    ([60, 60, 60], [60, 60, 38, 0], [196, 136, 76, 38, 38]),
])
def test_a_block_clamped_after_earlier_blocks_removed_tokens_is_recorded(tiny, tmp_path, requested, effective,
                                                                          counts):
    cache, _ = tiny
    overrides = "merge.r=[" + ",".join(map(str, requested)) + "]"
    record = run(make_cfg(cache, overrides), tmp_path / "run", progress=False)
    assert record["adjusted"]["merge.r"] == {**record["adjusted"]["merge.r"], "requested": requested + [0],
                                             "effective": effective}
    assert record["token_counts"] == counts  # what ran is what "effective" says


def test_paths_data_and_checkpoint_take_effect_with_the_tiny_model(tiny, tmp_path):
    cache, _ = tiny
    elsewhere = tmp_path / "my_data"
    with pytest.raises(MissingFilesError, match=str(elsewhere)):
        run(make_cfg(cache, f"paths.data={elsewhere}"), tmp_path / "a", progress=False,
            overrides=[f"paths.data={elsewhere}"])
    assert read(tmp_path / "a")["adjusted"]["data.source"] == {**read(tmp_path / "a")["adjusted"]["data.source"],
                                                               "requested": "tiny", "effective": "real"}
    ckpt = tmp_path / "tiny.pth"
    with pytest.raises(MissingFilesError, match=str(ckpt)):
        run(make_cfg(cache, f"model.checkpoint={ckpt}"), tmp_path / "b", progress=False,
            overrides=[f"model.checkpoint={ckpt}"])
    with pytest.raises(ConfigError, match="ignored with data.source=tiny"):
        run(make_cfg(cache, f"paths.data={elsewhere}", "data.source=tiny"), tmp_path / "c", progress=False,
            overrides=[f"paths.data={elsewhere}", "data.source=tiny"])


# ------------------------------------------------------------------ strict values (issue 22, item 1)


@pytest.mark.parametrize("override, message", [
    ("eval.overwrite=no", "eval.overwrite=no: not a boolean; accepted values: true, false"),
    ("eval.overwrite=off", "eval.overwrite=off: not a boolean"),
    ("cache.enabled=no", "cache.enabled=no: not a boolean; accepted values: true, false"),
    ("deterministic=maybe", "deterministic=maybe: not a boolean"),
    ("eval.flops=1", "eval.flops=1: not a boolean"),
    ("eval.attention=fast", "eval.attention=fast: accepted values: fused, materialized"),
    ("eval.token_store_window_mb=abc", "eval.token_store_window_mb=abc: not a number; accepted: > 0"),
    ("data.batch_size=two", "data.batch_size=two: not an integer; accepted: >= 1"),
    ("+model.attention=materialized", "model has no key 'attention'.*did you mean eval.attention"),
    ("+eval.atention=materialized", "eval has no key 'atention'.*did you mean eval.attention"),
])
def test_loose_values_are_refused_before_the_run_dir_is_touched(tiny, tmp_path, override, message):
    # before: "no" read as True replaced the complete record, kept the cache on, turned determinism on,
    # and +model.attention=materialized ran fused without a word
    cache, _ = tiny
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "record.json").write_text('{"status": "complete"}')
    with pytest.raises(ConfigError, match=message):
        run(make_cfg(cache, override), run_dir, progress=False)
    assert (run_dir / "record.json").read_text() == '{"status": "complete"}'
    assert not list(run_dir.glob("record.replaced-*"))


def test_every_boolean_default_is_read_strictly():
    """Every key whose default in configs/ is true/false is in the strict list (a new one must be added)."""
    import yaml

    from vidtldr.config_utils import CONFIG_DIR
    from vidtldr.config_values import FLAGS, OPTIONAL_FLAGS

    def leaves(node, prefix=""):
        for key, value in (node or {}).items():
            if key in ("hydra", "defaults"):
                continue
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    booleans = set()
    for path in CONFIG_DIR.rglob("*.yaml"):
        if "hydra" in path.relative_to(CONFIG_DIR).parts:  # Hydra's own logging settings
            continue
        group = path.parent.name if path.parent != CONFIG_DIR else ""
        prefix = f"{group}." if group in ("dataset", "model", "merge") else ""
        booleans |= {key for key, value in leaves(yaml.safe_load(path.read_text()), prefix) if isinstance(value, bool)}
    assert booleans and booleans <= set(FLAGS) | set(OPTIONAL_FLAGS), sorted(booleans - set(FLAGS) - set(OPTIONAL_FLAGS))


def test_strict_booleans_on_the_command_line(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT

    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "vidtldr.eval", "eval.overwrite=no", f"paths.cache={tmp_path}/c",
                          f"hydra.run.dir={tmp_path}/run"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "vidtldr.eval: error: eval.overwrite=no: not a boolean; accepted values: true, false"]


def test_a_removed_device_key_is_one_line_before_the_data_parallel_setup(tmp_path):
    """vidtldr.eval reads the device (for the data-parallel setup) through the resolver's rule, so a
    config without it is the resolver's one-line error, not omegaconf's traceback."""
    import subprocess
    import sys

    from conftest import ROOT

    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "vidtldr.eval", "~device", f"paths.cache={tmp_path}/c",
                          f"hydra.run.dir={tmp_path}/run"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "vidtldr.eval: error: device: missing from the configuration (configs/config.yaml sets it; was it "
        "removed with ~?)"]


@pytest.fixture
def no_model(monkeypatch):
    """Building a model fails the test: these mistakes must be refused before any model time."""
    from vidtldr.run import assemble

    def refuse(*_a, **_k):
        raise AssertionError("a model was built before the mistake was refused")

    monkeypatch.setattr(assemble, "build_model", refuse)  # every tool builds its model through it
    monkeypatch.setattr("vidtldr.models.umt.build_model", refuse)


@pytest.mark.parametrize("overrides, message", [
    (["budget.gflops=abc"], "budget.gflops=abc: not a number; accepted: > 0"),
    (["budget.ratio=abc"], r"budget.ratio=abc: not a number; accepted: > 0 and <= 1"),
    (["budget.ratio=1"], r"budget.ratio=1: the unreduced model \(0.0973 GFLOPs\) already fits, so there is no "
                         r"reduction to search for; accepted: a budget below 0.0973"),
    (["budget.gflops=1e9"], "budget.gflops=1000000000.0: the unreduced model .* already fits"),
    (["budget.ratio=0.8", "tune.ks=[0]"], r"tune.ks=\[0\]: expected a non-empty list of integers >= 1"),
    (["budget.ratio=0.8", "tune.compare=[bogus]"], r"tune.compare=\[bogus\]: unknown reducer 'bogus'; "
                                                   "accepted: .*random, .*repshift, .*tome, vidtldr"),
    (["budget.ratio=0.8", "tune.compare_evals=0"], "tune.compare_evals=0: out of range; accepted: >= 1"),
    (["budget.ratio=0.8", "tune.compare=[none]"], r"tune.compare=\[none\]: none is the unreduced model"),
    (["budget.ratio=0.8", "tune.metric=recall"], "tune.metric=recall: accepted values: embedding_cosine_mean"),
    (["budget.ratio=0.8", "data.limit=3", "tune.metric=itc_top5_overlap"],
     r"tune.metric=itc_top5_overlap: undefined for 3 videos \(each caption ranks the videos: every one is in "
     r"every top-5\); accepted here: embedding_cosine_mean, itc_top1_agreement, spearman_mean"),
    (["budget.ratio=0.8", "tune.ks=[1]", "tune.metric=itc_top5_overlap"], r"k=5 is not in tune.ks=\[1\]"),
])
def test_tune_mistakes_stop_before_the_search(tiny, tmp_path, no_model, overrides, message):
    # before: tracebacks (abc, ks=[0]), ~45 model evaluations then merge.r=[] (ratio=1), the compared
    # reducers refused only after the main search, and a NaN "best" for an undefined metric
    from vidtldr.analysis.search.tune import run_tune

    cache, _ = tiny
    with pytest.raises(ConfigError, match=message):
        run_tune(make_cfg(cache, "tune.compare=[tome]", *overrides, config_name="tune"), tmp_path / "tune")
    assert not (tmp_path / "tune").exists()


def _clips(cache, folder, n):
    folder.mkdir()
    for video in sorted((cache / "tiny_data" / "msrvtt" / "videos").rglob("*.mp4"))[:n]:
        (folder / video.name).write_bytes(video.read_bytes())
    return folder


def test_two_videos_in_a_folder_are_refused_before_the_model(tiny, tmp_path, no_model):
    # before: "rankings need at least 2" let 2 through, then a ValueError traceback on a (2, 1) score matrix
    from vidtldr.analysis.search.fidelity import run_fidelity

    cache, _ = tiny
    folder = _clips(cache, tmp_path / "two", 2)
    with pytest.raises(VideoError, match=r"folder .*two: 2 video\(s\); rankings need at least 3 \(each video "
                                         r"ranks the other videos\)"):
        run_fidelity(make_cfg(cache, f"videos={folder}", config_name="fidelity"), tmp_path / "f")
    with pytest.raises(ConfigError, match=r"fidelity.ks=\[-1\]: expected a non-empty list of integers >= 1"):
        run_fidelity(make_cfg(cache, "fidelity.ks=[-1]", config_name="fidelity"), tmp_path / "f")


def test_three_videos_in_a_folder_are_enough(tiny, tmp_path):
    from vidtldr.analysis.search.fidelity import run_fidelity

    cache, _ = tiny
    folder = _clips(cache, tmp_path / "three", 3)
    record = run_fidelity(make_cfg(cache, f"videos={folder}", "fidelity.time_reference=false",
                                   config_name="fidelity"), tmp_path / "f")
    assert record["metrics"]["queries"] == 3 and record["metrics"]["gallery"] == 2  # each ranks the 2 others


def test_visualize_panel_zero_is_refused(capsys):
    from vidtldr.analysis import visualize

    with pytest.raises(SystemExit) as info:
        visualize.main(["panel=0"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == "vidtldr.visualize: error: panel=0: out of range; accepted: >= 16"


# ------------------------------------------------------------------ search results are never NaN (item 2)


def _strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_search_excludes_and_counts_undefined_candidates():
    from vidtldr.analysis.search.schedules import ScheduleSearch, UndefinedObjectiveError, pareto
    from vidtldr.cost.vision import reducer_cost, vision_dims
    from vidtldr.models.config import load_architecture
    from vidtldr.reduce import build_reducer

    dims = vision_dims(load_architecture("tiny", task="retrieval", num_frames=4))

    def cost(schedule):
        return reducer_cost(dims, 4, build_reducer("vidtldr", list(schedule))).gflops_paper

    budget = 0.8 * cost((0, 0, 0, 0))
    # undefined (NaN) wherever block 1 removes nothing (the one-block family); else the more the better
    result = ScheduleSearch(cost, 196, 4, budget).run(
        lambda s: float("nan") if s[1] == 0 else float(s[1]), max_evals=12, seed=0)
    undefined = [c for c in result.evaluated if c.fidelity is None]
    assert result.undefined == len(undefined) > 0 and all(c.schedule[1] == 0 for c in undefined)
    assert result.best.fidelity == max(c.fidelity for c in result.evaluated if c.fidelity is not None)
    assert all(c.fidelity is not None for c in pareto(result.evaluated))  # NaN rows were all "Pareto" before
    with pytest.raises(UndefinedObjectiveError, match="undefined for all 1[0-9]? candidates"):
        ScheduleSearch(cost, 196, 4, budget).run(lambda s: float("nan"), max_evals=12, seed=0)


def test_tune_stops_when_no_candidate_is_defined(tiny, tmp_path, monkeypatch):
    # before: every candidate scored NaN, exit 0, an arbitrary "best" and an override were printed
    from vidtldr.analysis.search import fidelity
    from vidtldr.analysis.search.tune import run_tune

    cache, _ = tiny
    real = fidelity.Session.measure
    monkeypatch.setattr(fidelity.Session, "measure",
                        lambda self, *a, **k: {**real(self, *a, **k), "embedding_cosine_mean": float("nan")})
    with pytest.raises(ConfigError, match="^tune.metric=embedding_cosine_mean: undefined for every vidtldr "
                                          "candidate .*choose another tune.metric"):
        run_tune(make_cfg(cache, "budget.ratio=0.8", "tune.max_evals=3", "tune.compare=[]", config_name="tune"),
                 tmp_path / "tune")


def test_tune_outputs_are_strict_and_leave_undefined_rows_out(tiny, tmp_path, monkeypatch):
    from vidtldr.analysis.search import fidelity
    from vidtldr.analysis.search.tune import run_tune, summary
    from vidtldr.analysis.search.tune_report import draw_plot

    cache, _ = tiny
    real = fidelity.Session.measure
    calls = []

    def every_other_undefined(self, *a, **k):
        out = real(self, *a, **k)
        calls.append(1)
        return {**out, "embedding_cosine_mean": float("nan")} if len(calls) % 2 == 0 else out

    monkeypatch.setattr(fidelity.Session, "measure", every_other_undefined)
    run_dir = tmp_path / "tune"
    record = run_tune(make_cfg(cache, "budget.ratio=0.8", "tune.max_evals=4", "tune.compare=[tome]",
                               "tune.compare_evals=2", config_name="tune"), run_dir)
    saved = _strict_loads((run_dir / "tune.json").read_text())
    line = _strict_loads(__import__("vidtldr.jsonio", fromlist=["dumps"]).dumps(summary(record)))
    main = saved["reducers"][0]
    assert main["undefined"] == 2 and sum(c["fidelity"] is None for c in main["candidates"]) == 2  # calls 2 and 4
    assert line["undefined"] == 2 + saved["reducers"][1]["undefined"] and line["best"]["fidelity"] is not None
    import csv

    rows = list(csv.DictReader((run_dir / "pareto.csv").read_text().splitlines()))
    undefined_rows = [r for r in rows if r["fidelity"] == ""]
    assert len(undefined_rows) == 2 + saved["reducers"][1]["undefined"]
    assert not [r for r in undefined_rows if r["pareto"] == "yes"]  # never on the Pareto front (all were, before)
    assert "excluded from the best and the Pareto front" in (run_dir / "pareto.md").read_text()
    # a plot of nothing says so and lists no bests
    empty = {**record, "references": [], "reducers": [{**main, "candidates": [{**c, "fidelity": None}
                                                                              for c in main["candidates"]],
                                                      "best": {**main["best"], "fidelity": None}}]}
    labels = draw_plot(empty, tmp_path / "empty.png", tmp_path / "empty.svg")
    assert labels == [] and "nothing to draw: no candidate has a defined embedding_cosine_mean" in (
        tmp_path / "empty.svg").read_text()


def test_all_json_the_project_writes_is_strict():
    from conftest import ROOT
    from vidtldr.jsonio import dumps

    assert dumps({"a": float("nan"), "b": [float("inf"), 1.5]}) == '{"a": null, "b": [null, 1.5]}'
    loose = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((ROOT / "vidtldr").rglob("*.py"))
             if path.name != "jsonio.py"
             for n, line in enumerate(path.read_text().splitlines(), 1) if "json.dump" in line]
    assert not loose, f"write JSON with vidtldr.jsonio.dumps (strict: NaN as null): {loose}"


# ------------------------------------------------------------------ tracebacks of issue 22 (item 3)


def test_unwritable_cache_is_one_line(tiny, tmp_path, monkeypatch, capsys):
    # before: PermissionError traceback. The tests may run as root (who may write anywhere), so the
    # refusal is delivered where the operating system would: the folder's creation.
    from vidtldr.errors import cli_guard

    cache, _ = tiny
    denied = tmp_path / "shared_cache"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **k):
        if str(self).startswith(str(denied)):
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(SystemExit) as info, cli_guard("vidtldr.eval"):
        run(make_cfg(cache, f"cache.dir={denied}/features"), tmp_path / "run", progress=False)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"vidtldr.eval: error: permission denied: {denied}/features")
    assert read(tmp_path / "run")["status"] == "failed"  # and the run says so


def test_unwritable_run_folder_is_refused_before_hydra_creates_it(tmp_path, monkeypatch):
    import os

    from vidtldr.config_utils import check_run_location

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    with pytest.raises(ConfigError, match=f"hydra.run.dir={locked}/run: {locked} is not writable by this user"):
        check_run_location([f"hydra.run.dir={locked}/run"], environ={})


def test_output_options_naming_a_file_are_one_line(tmp_path, capsys):
    # before: FileExistsError / NotADirectoryError tracebacks
    from vidtldr.analysis.flops import main_cli
    from vidtldr.report import results

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as info:
        results.main([f"runs={tmp_path}", f"out={blocker}"])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == (f"vidtldr.results: error: out={blocker}: {blocker} is a file, "
                                                "expected a directory")
    with pytest.raises(ConfigError, match=f"out={blocker}/x: {blocker} is a file, expected a directory"):
        main_cli(compose_config(["table=true", f"out={blocker}/x", "trace=false"], config_name="flops"))
    with pytest.raises(ConfigError, match=f"out={blocker}: {blocker} is a file, expected a directory"):
        main_cli(compose_config(["table=true", f"out={blocker}", "trace=false"], config_name="flops"))


# ------------------------------------------------------------------ what ran is what is recorded (item 4)


def test_fidelity_records_and_warns_the_schedule_that_ran(tiny, tmp_path, caplog):
    # before: fidelity recorded and printed [1000, 1000, 1000, 1000] while [98, 49, 24, 12] ran, silently
    from vidtldr.analysis.search.fidelity import format_table, run_fidelity, summary

    cache, _ = tiny
    with caplog.at_level("WARNING"):
        record = run_fidelity(make_cfg(cache, "merge.r=[1000,1000,1000,1000]", "fidelity.time_reference=false",
                                       "fidelity.itm=false", config_name="fidelity"), tmp_path / "f")
    # by hand: 196 tokens -> at most half per block: 98 (98 left), 49 (49 left), 24 (25 left), 12
    assert record["schedule"] == [98, 49, 24, 12] and summary(record)["merge_r"] == [98, 49, 24, 12]
    assert record["metrics"]["token_counts"] == [196, 98, 49, 25, 13]
    assert record["adjusted"]["merge.r"]["requested"] == [1000, 1000, 1000, 1000]
    assert record["adjusted"]["merge.r"]["effective"] == [98, 49, 24, 12]
    assert "schedule=[98, 49, 24, 12]" in format_table(record)
    assert "merge.r: requested [1000, 1000, 1000, 1000], using [98, 49, 24, 12]" in caplog.text
    saved = json.loads((tmp_path / "f" / "fidelity.json").read_text())
    assert saved["adjusted"]["merge.r"]["effective"] == [98, 49, 24, 12]


def test_tune_records_the_capped_settings(tiny, tmp_path):
    from vidtldr.analysis.search.tune import run_tune

    cache, _ = tiny
    record = run_tune(make_cfg(cache, "budget.ratio=0.8", "tune.max_evals=2", "tune.compare=[]", "tune.plot=false",
                               config_name="tune"), tmp_path / "t")
    # msrvtt asks for 12 frames, the tiny model is capped at 4 (model.caps), as eval records it
    assert record["adjusted"]["eval.num_frames"] == {**record["adjusted"]["eval.num_frames"], "requested": 12,
                                                     "effective": 4, "explicit": False}
    assert json.loads((tmp_path / "t" / "tune.json").read_text())["num_frames"] == 4


# ------------------------------------------------------------------ the remaining cases (item 5)


def test_paper_table_dry_run_lists_the_tokenizer(tmp_path, capsys):
    # before: the dry run listed checkpoints, annotations and videos but not the tokenizer every eval stops on
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("paper_table", ROOT / "scripts" / "paper_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    vocab = tmp_path / "no" / "vocab.txt"
    assert module.main(["qa", "--backbones", "umt_b", "--datasets", "msrvtt_qa", "--dry-run", "--",
                        f"paths.data={tmp_path}/d", f"paths.checkpoints={tmp_path}/c", f"model.tokenizer={vocab}"]) == 0
    out = capsys.readouterr().out
    assert f"  missing tokenizer    tokenizer '{vocab}': not a vocab.txt path and not in the local Hugging Face " \
           "cache" in out.splitlines()
    assert out.count("missing tokenizer") == 1  # once for the two runs


def test_a_video_listed_twice_is_warned_and_counted(tiny, tmp_path, caplog):
    # before: 8 records naming 7 files gave "8 videos" without a word (validate and eval)
    import shutil

    cache, _ = tiny
    root = tmp_path / "data"
    shutil.copytree(cache / "tiny_data" / "msrvtt", root)
    cfg = load_dataset_config("msrvtt")
    annotation = root / "anno_downstream" / cfg["annotation"]
    records = json.loads(annotation.read_text())
    annotation.write_text(json.dumps(records + [{**records[2], "caption": "another caption of the same clip"}]))
    report = validate_dataset(cfg, root, decode=False, use_manifest=False)
    assert report["ok"] and report["counts"]["videos"] == len(records) + 1
    assert report["counts"]["repeated_videos"] == 1
    assert report["warnings"] == [f"1 video(s) listed more than once ({records[2]['video']!r} x2): 1 extra item(s), "
                                  "each counted as its own in the metrics"]
    with caplog.at_level("WARNING"):
        record = run(make_cfg(cache, f"paths.data={root}", "data.source=real", "eval.k_test=2"), tmp_path / "run",
                     progress=False)
    assert record["counts"]["videos"] == len(records) + 1  # scored as the official reader does ...
    assert record["repeated"] == {"what": "video", "extra": 1, "items": {records[2]["video"]: 2}}  # ... and said
    assert "1 video(s) listed more than once" in caplog.text


def test_visualize_replaces_only_its_own_earlier_files(tmp_path, capsys):
    # before: a ToMe run into the folder of a vid-TLDR run left that run's saliency maps beside its images
    from vidtldr.analysis import visualize

    out = tmp_path / "viz"
    out.mkdir()
    mine = [out / "notes.txt", out / "saliency_layer07.png"]  # the user's files, even with our naming
    for path in mine:
        path.write_text("keep me")
    assert visualize.main([f"out={out}"]) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    saliency = sorted(Path(f).name for f in first["files"] if "saliency" in f)
    assert saliency and first["removed"] == []  # the tiny model's vid-TLDR [48, 24]: blocks 0 and 1
    assert visualize.main([f"out={out}", "merge=tome", "merge.r=[10]"]) == 0
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(Path(f).name for f in second["removed"]) == saliency
    left = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert left == sorted(["frames.png", "groups.png", "overview.png", "notes.txt", "saliency_layer07.png"])
    assert all(path.read_text() == "keep me" for path in mine)


def test_gflops_change_is_from_the_unrounded_counts():
    # before: computed from GFLOPs rounded to 3 decimals: 19.6% printed for the recorded 19.54%,
    # "-2.1% fewer" for -1.74
    from vidtldr.report.render import _gflops_line

    line = _gflops_line({"paper": 0.078, "base_paper": 0.097, "reduction_pct": 19.54})
    assert line.endswith("0.078, 19.5% fewer than without merging (0.097)")
    line = _gflops_line({"paper": 0.099, "base_paper": 0.097, "reduction_pct": -1.74})
    assert line.endswith("0.099, 1.7% more than without merging (0.097)")


@pytest.mark.parametrize("command, override, message", [
    ("bench", "repeats=abc", "repeats=abc: not an integer; accepted: >= 1"),
    ("bench", "data.batch_size=0", "data.batch_size=0: out of range; accepted: >= 1"),
    ("bench", "warmup=-1", "warmup=-1: out of range; accepted: >= 0"),
    ("bench", "threads=abc", "threads=abc: not an integer"),
    ("bench_eval", "bench.videos=abc", "bench.videos=abc: not an integer; accepted: >= 1"),
    ("bench_eval", "bench.warmup=maybe", "bench.warmup=maybe: accepted values: auto, true, false"),
    ("bench_eval", "bench.rounds=0", "bench.rounds=0: out of range"),
])
def test_bench_options_are_checked_before_any_work(command, override, message, no_model):
    # before: int("abc") tracebacks after the resolver, warmup=-1 accepted, bench.warmup=maybe meant yes
    if command == "bench":
        from vidtldr.analysis.bench.command import main_cli
    else:
        from vidtldr.analysis.bench.evaluation import main_cli
    with pytest.raises(ConfigError, match=message):
        main_cli(compose_config(["model=tiny", "write=false", override], config_name=command))
