"""Feature-cache key completeness: every input that changes the video (or text) features is part of
the video (or text) cache key, so changing it forces recomputation; inputs that do not change them
(k_test, data.limit, batch sizes) stay out, so changing those re-uses the cache.

Two levels: ``cache_keys`` field by field (including fields no CPU run can vary, such as the device),
and real runs of the tiny model on one shared cache, where a changed setting must decode every video
again while the text features are re-used exactly when the text side did not change."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

import vidtldr
import vidtldr.run.assemble as assemble
import vidtldr.run.runner as runner
from vidtldr.models.config import load_architecture
from vidtldr.reduce import build_reducer
from vidtldr.run.cache import stable_hash
from vidtldr.run.runspec import resolve

from _eval_helpers import make_cfg

VIDEOS = 7  # clips of the tiny MSRVTT split


# ----------------------------------------------------------------------------- cache_keys, field by field


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The arguments the runner passes to ``cache_keys`` for the default tiny run."""
    root = tmp_path_factory.mktemp("keys")
    spec = resolve(make_cfg(root), data_root=str(root / "data"))
    arch = load_architecture(spec.arch, task=spec.task, num_frames=spec.num_frames)
    return dict(spec=spec, arch_cfg=arch, weights_id={"random_seed": 0, "arch": "tiny"},
                reducer=build_reducer(spec.merge, spec.schedule), img_size=arch.vision.img_size,
                video_root=root / "videos", attention="fused")


def _hashes(**kwargs) -> tuple[str, str]:
    video, text = assemble.cache_keys(**kwargs)
    return stable_hash(video), stable_hash(text)


def _changed(parts, spec=None, **args) -> dict:
    out = dict(parts, **args)
    if spec:
        out["spec"] = dataclasses.replace(parts["spec"], **spec)
    return out


# name -> (a change of one input, whether the text features depend on it)
def _perturbations(parts, tmp_path) -> dict:
    spec = parts["spec"]
    return {
        "weights": (_changed(parts, weights_id={"random_seed": 1, "arch": "tiny"}), True),
        "checkpoint": (_changed(parts, weights_id={"sha256": "ab" * 32, "kind": "finetuned"}), True),
        "device": (_changed(parts, spec={"device": "cuda"}), True),
        "precision": (_changed(parts, spec={"precision": "bf16"}), True),
        "task": (_changed(parts, spec={"task": "qa"}), True),
        "arch": (_changed(parts, arch_cfg=load_architecture(spec.arch, task=spec.task, num_frames=2)), False),
        "embed_dim": (_changed(parts, arch_cfg=dataclasses.replace(parts["arch_cfg"], embed_dim=16)), True),
        "text_arch": (_changed(parts, arch_cfg=dataclasses.replace(
            parts["arch_cfg"], text=dataclasses.replace(parts["arch_cfg"].text, fusion_layer=1))), True),
        "reducer": (_changed(parts, reducer=build_reducer("tome", spec.schedule)), False),
        "no_reducer": (_changed(parts, reducer=None), False),
        "schedule": (_changed(parts, spec={"schedule": [40, 0, 0, 0]}), False),
        "num_frames": (_changed(parts, spec={"num_frames": 3}), False),
        "img_size": (_changed(parts, img_size=112), False),
        "trimmed30": (_changed(parts, spec={"trimmed30": not spec.trimmed30}), False),
        "video_root": (_changed(parts, video_root=tmp_path / "elsewhere"), False),
        "attention": (_changed(parts, attention="materialized"), False),
    }


def test_every_input_of_the_video_features_changes_the_video_key(parts, tmp_path):
    video0, text0 = _hashes(**parts)
    for name, (args, text_too) in _perturbations(parts, tmp_path).items():
        video, text = _hashes(**args)
        assert video != video0, f"changing {name} must change the video feature key"
        assert (text != text0) == text_too, f"changing {name} {'must' if text_too else 'must not'} change the text key"


def test_format_and_package_version_are_in_both_keys(parts, monkeypatch):
    video0, text0 = _hashes(**parts)
    monkeypatch.setattr(assemble, "FEATURE_FORMAT", 999)
    video, text = _hashes(**parts)
    assert video != video0 and text != text0
    monkeypatch.undo()
    monkeypatch.setattr(vidtldr, "__version__", "0.0.0-other")
    video, text = _hashes(**parts)
    assert video != video0 and text != text0


def test_run_settings_that_do_not_change_features_stay_out_of_the_keys(parts):
    base = _hashes(**parts)
    for change in ({"k_test": 1}, {"limit": 3}, {"data_root": "/other"}, {"device": "cuda:1"}):
        cuda = change.get("device")
        if cuda:  # cuda:0 and cuda:1 compute the same features; only the device type counts
            assert _hashes(**_changed(parts, spec={"device": "cuda:0"})) == _hashes(**_changed(parts, spec=change))
        else:
            assert _hashes(**_changed(parts, spec=change)) == base, change


# ----------------------------------------------------------------------------- real runs on one cache


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("key_cache")
    first = runner.run(make_cfg(root), root / "runs" / "first", progress=False)
    assert first["counts"]["videos_decoded"] == VIDEOS
    return root


def _rerun(cache, tmp_path, *overrides):
    record = runner.run(make_cfg(cache, *overrides), tmp_path / "run", progress=False)
    return record["counts"]["videos_decoded"], record["cache"]["text"]["hits"]


@pytest.mark.parametrize("overrides,text_reused", [
    ((), None),  # the unchanged run: every video and the texts from the cache
    (("eval.attention=materialized",), True),
    (("dataset.trimmed30=true",), True),
    (("eval.num_frames=3",), True),
    (("merge=tome", "merge.r=[48,24]"), True),
    (("merge.r=[48]",), True),
    (("merge=none",), True),
    (("model.seed=1",), False),
    (("precision=bf16",), False),
])
def test_a_changed_feature_input_recomputes_the_features(cache, tmp_path, overrides, text_reused):
    decoded, text_hits = _rerun(cache, tmp_path, *overrides)
    if text_reused is None:
        assert (decoded, text_hits) == (0, 1)
    else:
        assert decoded == VIDEOS, f"{overrides}: features of the first run were re-used"
        assert text_hits == (1 if text_reused else 0), overrides


def test_the_same_clips_in_another_folder_are_recomputed(cache, tmp_path):
    data = tmp_path / "copy"
    shutil.copytree(cache / "tiny_data" / "msrvtt", data)
    decoded, text_hits = _rerun(cache, tmp_path, f"paths.data={data}", "data.source=real")
    assert decoded == VIDEOS and text_hits == 1


def test_a_new_feature_format_recomputes_everything(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(assemble, "FEATURE_FORMAT", 999)
    assert _rerun(cache, tmp_path) == (VIDEOS, 0)


def test_settings_outside_the_key_reuse_the_features(cache, tmp_path):
    for i, overrides in enumerate((("eval.k_test=2",), ("data.batch_size=3",), ("eval.token_store=memory",))):
        assert _rerun(cache, tmp_path / str(i), *overrides) == (0, 1), overrides


def test_the_keys_say_in_words_what_the_features_are(parts, tmp_path):
    """key.json is how a person tells cache folders apart: its fields, by name, for the default run."""
    video, text = assemble.cache_keys(**parts)
    arch = parts["arch_cfg"].to_dict()
    common = {"format": assemble.FEATURE_FORMAT, "vidtldr": vidtldr.__version__,
              "weights": {"random_seed": 0, "arch": "tiny"}, "device": "cpu", "precision": "fp32"}
    assert video == {**common, "kind": "video", "task": "retrieval", "arch": arch,
                     "reducer": parts["reducer"].describe(), "schedule": [48, 24, 0, 0], "num_frames": 4,
                     "img_size": 224, "trimmed30": False, "video_root": str((parts["video_root"]).resolve()),
                     "attention": "fused"}
    assert text == {**common, "kind": "text", "task": "retrieval", "text": arch["text"],
                    "embed_dim": parts["arch_cfg"].embed_dim}
    bare, _ = assemble.cache_keys(**_changed(parts, reducer=None))
    assert bare["reducer"] == {"name": "none"} and bare["schedule"] == []


def test_deterministic_kernels_enter_both_keys_only_when_on(parts):
    base = _hashes(**parts)
    assert _hashes(**_changed(parts, deterministic=False)) == base  # existing caches keep their names
    on = _hashes(**_changed(parts, deterministic=True))
    assert on[0] != base[0] and on[1] != base[1]
