"""Action recognition end to end on tiny generated data with the tiny VideoMAE (random weights):
the record's metrics follow from predictions.json and the annotation, merge=none equals transformers'
stock model on the same views, both annotation formats give the same run, the cache serves a re-run,
and settings that do not fit the task are refused."""

from __future__ import annotations

import json

import pytest
import torch

from vidtldr.config_utils import compose_config
from vidtldr.errors import ConfigError
from vidtldr.run.runner import run

BASE = ["model=videomae_tiny", "eval.clips=2", "eval.crops=1", "logger.wandb.enabled=false"]


def _run(tmp_path, name, *overrides, cache=None):
    cache = cache or tmp_path / "cache"
    cfg = compose_config([*BASE, f"paths.cache={cache}", *overrides])
    return run(cfg, tmp_path / name, progress=False)


def _labels(cache, dataset, annotation):
    lines = (cache / "tiny_data" / dataset / "anno_downstream" / annotation).read_text().split("\n")
    return {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1]) for line in lines if line}


@pytest.fixture(scope="module")
def k400(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k400")
    record = _run(tmp, "run", "dataset=kinetics400", "merge=vidtldr", "merge.r=published")
    return tmp, record


def test_record_metrics_follow_from_the_predictions(k400):
    tmp, record = k400
    assert record["status"] == "complete" and record["partial"] is False
    assert record["run"]["task"] == "classification" and record["resolved"]["views"] == {
        "sampling": "interval", "frame_interval": 4, "clips": 2, "crops": 1, "views": 2}
    # 4 frames (the tiny model's cap) in tubelets of 2, 4x4 patches of 16 px: 32 tokens; schedule [8, 4]
    assert record["token_counts"] == [32, 24, 20, 20, 20]
    labels = _labels(tmp / "cache", "kinetics400", "k400_val.csv")
    predictions = json.loads((tmp / "run" / "predictions.json").read_text())
    assert [p["video"] for p in predictions] == list(labels) and [p["label"] for p in predictions] == list(labels.values())
    for p in predictions:
        assert len(p["top5"]) == 5 and p["top5_probs"] == sorted(p["top5_probs"], reverse=True)
    top1 = 100 * sum(p["top5"][0] == p["label"] for p in predictions) / 6
    top5 = 100 * sum(p["label"] in p["top5"] for p in predictions) / 6
    m = record["metrics"]
    assert m["top1"] == pytest.approx(top1) and m["top5"] == pytest.approx(top5)
    # per class: classes 0 and 2 have two videos each, 1 and 3 one (tiny data)
    assert {k: v["videos"] for k, v in m["per_class_top1"].items()} == {"0": 2, "1": 1, "2": 2, "3": 1}
    assert record["counts"]["videos"] == 6 and record["counts"]["views_per_video"] == 2
    g = record["gflops"]
    assert g["per"] == "view" and g["views"] == 2 and g["paper_per_video"] == pytest.approx(2 * g["paper"], abs=2e-3)
    assert record["cost"]["gflops_paper_total"] == pytest.approx(record["cost"]["gflops_paper_per_view"] * 12, abs=1e-5)


def test_rerun_reads_every_video_from_the_cache(k400, tmp_path):
    tmp, first = k400
    again = _run(tmp_path, "again", "dataset=kinetics400", "merge=vidtldr", "merge.r=published", cache=tmp / "cache")
    assert again["counts"]["videos_decoded"] == 0 and again["counts"]["videos_cached"] == 6
    assert again["metrics"] == first["metrics"]
    other_views = _run(tmp_path, "crops", "dataset=kinetics400", "merge=vidtldr", "merge.r=published", "eval.crops=3",
                       cache=tmp / "cache")
    assert other_views["counts"]["videos_decoded"] == 6  # the views are part of the cache key


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """Two of the six videos, vid-TLDR at umt_fractions (UMT-B MSRVTT's, videomae_tiny's schedule_backbone)."""
    tmp = tmp_path_factory.mktemp("limited")
    return _run(tmp, "run", "dataset=kinetics400", "merge=vidtldr", "merge.r=umt_fractions", "data.limit=2",
                "cache.enabled=false")


def test_umt_fractions_record_says_where_the_schedule_comes_from(limited):
    run_section = limited["run"]
    assert run_section["schedule_spec"] == "umt_fractions" and run_section["schedule"] == [0.2552, 0.1142, 0.0645, 0]
    assert run_section["schedule_note"].startswith("umt_fractions: no vid-TLDR schedule was published for "
                                                   "model=videomae_tiny dataset=kinetics400; ")
    assert "umt_b schedule for msrvtt ([600, 200, 100] of 2352 tokens)" in run_section["schedule_note"]
    # of 32 tokens: int(32 x 0.2552) = 8, int(24 x 0.1142) = 2, int(22 x 0.0645) = 1
    assert limited["token_counts"] == [32, 24, 22, 21, 21]


def test_cost_under_data_limit_counts_the_kept_videos_views(limited):
    # per view, paper convention (width 64, MLP 128, 4 heads; no norms): tubelet embedding
    # 32 x 1536 x 64 = 3,145,728; a block entering t_in and leaving t_out tokens: qkv + proj
    # t_in x 4 x 64^2, q.k^T + A.v 2 x t_in^2 x 64, vid-TLDR's similarity ceil(t_in/2) x floor(t_in/2)
    # x 64 where it merges, MLP t_out x 2 x 64 x 128:
    # 1,064,960 + 836,608 + 774,208 + 744,576 = 3,420,352; total 6,566,080 per view
    assert limited["counts"]["videos"] == 2 and limited["counts"]["videos_total"] == 6 and limited["partial"]
    cost = limited["cost"]
    assert cost["gflops_paper_per_view"] == pytest.approx(0.00656608, abs=5e-7)  # the record keeps 6 decimals
    assert (cost["views_per_video"], cost["videos"]) == (2, 2)
    assert cost["gflops_paper_total"] == pytest.approx(0.00656608 * 2 * 2, abs=5e-7)  # 2 views x 2 kept videos


def test_a_second_run_reads_its_views_from_the_frame_cache(tmp_path, monkeypatch):
    from vidtldr.data import dataset as dataset_module

    common = ["dataset=kinetics400", "cache.enabled=false", "data.num_workers=0"]  # features not cached
    first = _run(tmp_path, "first", *common, "merge=none")
    assert first["cache"]["frames"]["served"] == 0 and first["cache"]["frames"]["decoded"] == 6

    def no_decoding(path):
        raise AssertionError(f"decoded {path}")

    with monkeypatch.context() as patched:  # the second run cannot decode: everything must come from the cache
        patched.setattr(dataset_module, "open_video", no_decoding)
        second = _run(tmp_path, "second", *common, "merge=none")
    assert second["cache"]["frames"]["served"] == 6 and second["cache"]["frames"]["decoded"] == 0
    assert (tmp_path / "second" / "predictions.json").read_text() == (tmp_path / "first" / "predictions.json").read_text()
    other_clips = _run(tmp_path, "clips", *common, "merge=none", "eval.clips=1")  # other frames: a miss
    assert other_clips["cache"]["frames"]["served"] == 0 and other_clips["cache"]["frames"]["decoded"] == 6


def test_no_merge_equals_the_stock_transformers_model_on_the_same_views(tmp_path):
    from vidtldr.data.dataset import ViewSpec, read_views
    from vidtldr.models.family import get_family

    record = _run(tmp_path, "none", "dataset=ssv2", "merge=none", "cache.enabled=false")
    family = get_family("videomae")
    torch.manual_seed(0)  # model.seed of videomae_tiny
    model = family.build(family.architecture("videomae_tiny", "classification"))
    spec = ViewSpec(num_frames=4, sampling="segment", clips=2, crops=1, size=64)
    predictions = json.loads((tmp_path / "none" / "predictions.json").read_text())
    root = tmp_path / "cache" / "tiny_data" / "ssv2" / "videos" / "ssv2_cls"
    for p in predictions:
        views, _ = read_views(root / p["video"], spec)
        with torch.no_grad():
            stock = model.hf(pixel_values=views).logits.softmax(-1).mean(0)
        top = stock.topk(5)
        assert p["top5"] == top.indices.tolist()
        assert p["top5_probs"] == pytest.approx(top.values.tolist(), abs=1e-6)
    assert record["token_counts"] == [32] * 5


def test_official_formats_give_the_same_run(tmp_path):
    listed = _run(tmp_path, "list", "dataset=ssv2", "merge=tome", "merge.r=4", "cache.enabled=false")
    official = _run(tmp_path, "official", "dataset=ssv2", "merge=tome", "merge.r=4", "cache.enabled=false",
                    "dataset.reader=ssv2_json", "dataset.annotation=ssv2_val_validation.json",
                    "dataset.classes=ssv2_val_labels.json")
    assert official["metrics"] == listed["metrics"]
    assert json.loads((tmp_path / "official" / "predictions.json").read_text()) == \
        json.loads((tmp_path / "list" / "predictions.json").read_text())


@pytest.mark.parametrize("overrides, message", [
    (["dataset=msrvtt", "model=tiny", "eval.clips=2"], "eval.clips=2: dataset msrvtt .* has no test views"),
    (["dataset=kinetics400", "eval.k_test=3"], "eval.k_test=3: task 'classification' ranks no texts"),
    (["dataset=kinetics400", "model=tiny"], "backbone family 'umt' has no 'classification' heads"),
    (["dataset=msrvtt"], "backbone family 'videomae' has no 'retrieval' heads"),
    (["dataset=kinetics400", "eval.crops=0"], "eval.crops"),
    # the views are decoded by decord's index reader: another decoder would be ignored, so it is refused
    (["dataset=kinetics400", "data.decoder=pyav"],
     "data.decoder=pyav: dataset=kinetics400 .classification, test views. is decoded with decord only"),
])
def test_settings_that_do_not_fit_are_refused(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        _run(tmp_path, "bad", *overrides)


def test_checkpoint_folders_are_found_in_the_local_hugging_face_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    from vidtldr.run.runspec import resolve

    cache = tmp_path / "hf"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    overrides = ["model=videomae_b", "dataset=kinetics400", "merge=none", f"paths.checkpoints={tmp_path}/ckpt"]
    # not in paths.checkpoints, not cached: the paths.checkpoints folder is what is missing
    assert resolve(compose_config(overrides)).checkpoint == f"{tmp_path}/ckpt/MCG-NJU/videomae-base-finetuned-kinetics"
    repo = cache / "models--MCG-NJU--videomae-base-finetuned-kinetics"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "videomae"}))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    assert resolve(compose_config(overrides)).checkpoint == str(snapshot)


def test_fidelity_and_tune_refuse_a_family_without_retrieval_heads():
    from vidtldr.analysis.search.fidelity import check_retrieval_family
    from vidtldr.run.runspec import resolve_model

    spec = resolve_model(compose_config(["model=videomae_tiny", "dataset=kinetics400", "merge=none"]))
    with pytest.raises(ConfigError, match="fidelity and tune compare retrieval embeddings .* family 'videomae'"):
        check_retrieval_family(spec)
