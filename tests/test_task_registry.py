"""Tasks and backbone families are registered plug-ins (docs/architecture.md, "A new task", "A new
backbone family"): the resolver finds them by the names the YAML gives, checks what they declare
against the dataset and model, and refuses mismatches with one line naming the key."""

from __future__ import annotations

import pytest

from vidtldr.config_utils import compose_config
from vidtldr.errors import ConfigError
from vidtldr.models.family import BackboneFamily, discover_families, get_family, register_family
from vidtldr.run.runspec import resolve_model
from vidtldr.tasks.base import Task, discover_tasks, get_task, register_task


def _spec(*overrides):
    return resolve_model(compose_config(list(overrides)))


def test_the_shipped_tasks_and_family_are_registered():
    tasks = discover_tasks()
    assert {"retrieval", "qa"} <= set(tasks)
    assert get_task("qa").limit_unit == "questions" and get_task("retrieval").limit_unit == "videos"
    assert "umt" in discover_families()
    assert set(get_family("umt").heads) == {"retrieval", "qa"}


def test_the_spec_names_task_heads_and_family():
    qa = _spec("dataset=msrvtt_qa")
    assert (qa.task, qa.heads, qa.family) == ("qa", "qa", "umt")
    assert qa.arch_config().task == "qa"  # the model is built with the task's heads
    assert _spec("dataset=didemo").trimmed30 is True


def test_an_unknown_task_is_one_line_naming_the_dataset():
    with pytest.raises(ConfigError, match=r"dataset msrvtt: task: unknown task 'ranking'; available: .*'qa'"):
        _spec("dataset.task=ranking")


def test_a_reader_the_task_does_not_score_is_refused():
    with pytest.raises(ConfigError, match="reader 'qa' does not fit task 'retrieval'"):
        _spec("dataset.reader=qa")


def test_a_task_that_reads_whole_videos_refuses_trimmed30():
    # The official QA evaluation never trims: a QA config asking for it is a mistake, not ignored.
    with pytest.raises(ConfigError, match="dataset msrvtt_qa: trimmed30: true, but task 'qa' reads whole videos"):
        _spec("dataset=msrvtt_qa", "dataset.trimmed30=true")


def test_an_unknown_or_missing_family_is_refused():
    with pytest.raises(ConfigError, match="model=tiny: family: unknown backbone family 'vit_hf'"):
        _spec("model.family=vit_hf")
    with pytest.raises(ConfigError, match="model=tiny: no 'family' key"):
        _spec("model.family=null")


def test_a_family_without_the_task_heads_is_refused():
    @register_family("test_retrieval_only")
    class RetrievalOnly(BackboneFamily):
        heads = ("retrieval",)
        architecture = build = load_weights = None  # never reached: the heads are refused first

    try:
        with pytest.raises(ConfigError, match="backbone family 'test_retrieval_only' has no 'qa' heads"):
            _spec("dataset=msrvtt_qa", "model.family=test_retrieval_only")
    finally:
        from vidtldr.models.family import FAMILIES

        FAMILIES.pop("test_retrieval_only")


def test_a_family_missing_a_required_method_is_refused_when_it_registers():
    from vidtldr.models.family import FAMILIES

    with pytest.raises(TypeError, match=r"\.Partial must implement build, load_weights \(vidtldr/models/family.py"):
        @register_family("test_partial")
        class Partial(BackboneFamily):
            heads = ("retrieval",)

            def architecture(self, arch, heads, num_frames=None):
                return None
    assert "test_partial" not in FAMILIES


def test_registration_checks_declarations_and_names():
    with pytest.raises(TypeError, match="readers"):
        @register_task("test_no_readers")
        class NoReaders(Task):
            heads = "retrieval"

    with pytest.raises(TypeError, match="limit_unit"):
        @register_task("test_bad_unit")
        class BadUnit(Task):
            readers, heads, limit_unit = ("caption",), "retrieval", "frames"

    with pytest.raises(TypeError, match="task name 'qa' is taken"):
        @register_task("qa")
        class Imposter(Task):
            readers, heads = ("qa",), "qa"


def test_partial_is_judged_by_the_task_unit():
    qa = get_task("qa")
    assert qa.is_limited({"questions": 3, "questions_total": 5, "videos": 5, "videos_total": 5})
    assert not qa.is_limited({"questions": 5, "questions_total": 5, "videos": 2, "videos_total": 5})
    assert get_task("retrieval").is_limited({"videos": 2, "videos_total": 5})


def test_a_task_with_its_own_run_goes_through_the_runner(tmp_path):
    """A task without a run-layer runner: its ``run(job)`` reads the videos through the feature cache
    (a second run decodes nothing) and its declarations decide the record's partial flag."""
    import torch

    from tests._eval_helpers import make_cfg
    from vidtldr.run.runner import run
    from vidtldr.tasks import base

    @register_task("test_count_videos")
    class CountVideos(Task):
        readers, heads, limit_unit, metric_columns = ("caption",), "retrieval", "videos", ("videos_seen",)

        def run(self, job):
            names = list(job.split.video_names)

            def encode(frames):
                out = job.model.encode_vision(frames, reducer=job.reducer)
                return [{"pooled": out.pooled[i].clone(), "token_counts": torch.tensor(out.token_counts)}
                        for i in range(frames.shape[0])]

            videos, skipped, decoded, cached = job.cached_videos(names, job.split.videos, encode)
            counts = {"videos": len(videos.by_key), "videos_total": len(set(names)),
                      "videos_decoded": decoded, "videos_from_cache": cached}
            return base.TaskResult(metrics={"videos_seen": len(videos.by_key)}, counts=counts,
                                   token_counts=[], timings={})

    try:
        first = run(make_cfg(tmp_path, "dataset.task=test_count_videos"), tmp_path / "a", progress=False,
                    overrides=[])
        again = run(make_cfg(tmp_path, "dataset.task=test_count_videos"), tmp_path / "b", progress=False,
                    overrides=[])
    finally:
        base.TASKS.pop("test_count_videos")
    assert first["status"] == "complete" and first["run"]["task"] == "test_count_videos"
    assert first["metrics"] == {"videos_seen": 7}  # the tiny MSRVTT split has 7 clips
    assert first["counts"]["videos_decoded"] == 7 and again["counts"]["videos_from_cache"] == 7
    assert first["partial"] is False
