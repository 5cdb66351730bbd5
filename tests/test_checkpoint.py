"""Checkpoint loading: official layouts, safetensors, the pre-trained remap, and clear errors."""

import re

import pytest
import torch

from vidtldr.errors import CheckpointError
from vidtldr.models import build_model, config_from_official, load_checkpoint
from vidtldr.models.checkpoint import prepare_state_dict, read_state_dict, remap_pretrained, save_safetensors
from vidtldr.models.umt import UMTFamily

UMT = UMTFamily()  # loads as the evaluation does: drops the keys the official loader ignores


@pytest.fixture(scope="module")
def fixture_dir():
    from conftest import FIXTURES
    return FIXTURES / "umt_tiny"


def _model(fixture_dir, task="retrieval"):
    return build_model(config_from_official(fixture_dir / "config.json", fixture_dir / "bert_config.json", task=task))


def _official(fixture_dir, name="checkpoint.pth"):
    return torch.load(fixture_dir / name, weights_only=True)["model"]


def _assert_loaded(model, state_dict):
    ours = model.state_dict()
    for key, value in state_dict.items():
        assert torch.equal(ours[key], value), key


def test_wrapped_and_bare_official_files_load_exactly(fixture_dir, tmp_path):
    model = _model(fixture_dir)
    report = load_checkpoint(model, fixture_dir / "checkpoint.pth")
    official = _official(fixture_dir)
    _assert_loaded(model, official)
    assert report.loaded == len(official) and report.ignored == [] and report.filled == []
    bare = tmp_path / "bare.pth"
    torch.save(official, bare)  # a state_dict without the {"model": ...} wrapper
    fresh = _model(fixture_dir)
    load_checkpoint(fresh, bare)
    _assert_loaded(fresh, official)


def test_safetensors_round_trip_including_tied_qa_weights(fixture_dir, tmp_path):
    official = _official(fixture_dir, "qa_checkpoint.pth")
    path = tmp_path / "qa.safetensors"
    save_safetensors(official, path)
    model = _model(fixture_dir, "qa")
    report = load_checkpoint(model, path)
    assert report.format == "safetensors"
    _assert_loaded(model, official)
    dec = model.text_decoder
    assert dec.cls.predictions.decoder.weight is dec.bert.embeddings.word_embeddings.weight


def _error(model, path, kind="finetuned"):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, path, kind=kind)
    return str(info.value)


def test_missing_key_is_named_with_the_file(fixture_dir, tmp_path):
    sd = _official(fixture_dir)
    del sd["vision_encoder.encoder.blocks.2.attn.q_bias"]
    path = tmp_path / "missing.pth"
    torch.save({"model": sd}, path)
    msg = _error(_model(fixture_dir), path)
    assert "missing.pth" in msg and "1 missing key" in msg
    assert "vision_encoder.encoder.blocks.2.attn.q_bias" in msg


def test_extra_key_is_named(fixture_dir, tmp_path):
    sd = _official(fixture_dir)
    sd["vision_encoder.encoder.blocks.0.attn.k_bias"] = torch.zeros(64)
    path = tmp_path / "extra.pth"
    torch.save({"model": sd}, path)
    msg = _error(_model(fixture_dir), path)
    assert "1 unexpected key" in msg and "blocks.0.attn.k_bias" in msg and "extra.pth" in msg


def test_wrong_shape_is_named_with_both_shapes(fixture_dir, tmp_path):
    sd = _official(fixture_dir)
    sd["text_proj.weight"] = torch.zeros(16, 64)
    path = tmp_path / "shape.pth"
    torch.save({"model": sd}, path)
    msg = _error(_model(fixture_dir), path)
    assert re.search(r"text_proj\.weight: checkpoint \[16, 64\] vs model \[32, 64\]", msg), msg


def test_truncated_files_are_reported(fixture_dir, tmp_path):
    data = (fixture_dir / "checkpoint.pth").read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    msg = _error(_model(fixture_dir), path)
    assert "truncated.pth" in msg and "truncated" in msg.lower()
    st = tmp_path / "ok.safetensors"
    save_safetensors(_official(fixture_dir), st)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(st.read_bytes()[:1000])
    msg = _error(_model(fixture_dir), cut)
    assert "cut.safetensors" in msg and "truncated or corrupt" in msg


def test_non_checkpoint_files_are_reported(fixture_dir, tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint\n")
    assert "not a PyTorch checkpoint" in _error(_model(fixture_dir), text)
    assert "checkpoint not found" in _error(_model(fixture_dir), tmp_path / "absent.pth")
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    assert "expected a state_dict" in _error(_model(fixture_dir), listing)


class _Payload:
    """Unpickling this would create a file: proves that no pickled code runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_code_is_never_executed(fixture_dir, tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"model": _official(fixture_dir), "extra": _Payload(marker)}, path)
    msg = _error(_model(fixture_dir), path)
    assert not marker.exists()
    assert "weights_only=True" in msg and "convert_checkpoint.py --trust-pickle" in msg


def _fake_pretrained(fixture_dir):
    """A pre-training layout built from the fine-tuned tiny weights: BertForMaskedLM text keys
    (`text_encoder.bert.*` + MLM head) plus CLIP-distillation decoder and teacher keys."""
    sd = {}
    for key, value in _official(fixture_dir).items():
        sd[key.replace("text_encoder.", "text_encoder.bert.", 1) if key.startswith("text_encoder.") else key] = value
    g = torch.Generator().manual_seed(1)
    word = sd["text_encoder.bert.embeddings.word_embeddings.weight"]
    sd["text_encoder.cls.predictions.bias"] = torch.randn(210, generator=g)
    sd["text_encoder.cls.predictions.transform.dense.weight"] = torch.randn(64, 64, generator=g)
    sd["text_encoder.cls.predictions.transform.dense.bias"] = torch.randn(64, generator=g)
    sd["text_encoder.cls.predictions.transform.LayerNorm.weight"] = torch.randn(64, generator=g)
    sd["text_encoder.cls.predictions.transform.LayerNorm.bias"] = torch.randn(64, generator=g)
    sd["text_encoder.cls.predictions.decoder.weight"] = word
    sd["vision_encoder.clip_decoder.0.head.weight"] = torch.randn(8, 64, generator=g)
    sd["clip_teacher.proj"] = torch.randn(4, 4, generator=g)
    return sd


def test_pretrained_remap_for_retrieval(fixture_dir, tmp_path):
    path = tmp_path / "pretrained.pth"
    torch.save({"model": _fake_pretrained(fixture_dir)}, path)
    model = _model(fixture_dir)
    msg = _error(model, path)  # given as fine-tuned: refused with a pointer to kind="pretrained"
    assert "kind='pretrained'" in msg
    report = UMT.load_weights(model, path, kind="pretrained")
    _assert_loaded(model, _official(fixture_dir))
    assert "vision_encoder.clip_decoder.0.head.weight" in report.ignored
    assert "clip_teacher.proj" in report.ignored
    assert "text_encoder.cls.predictions.bias" in report.ignored


def test_pretrained_remap_derives_the_qa_decoder(fixture_dir, tmp_path):
    pretrained = _fake_pretrained(fixture_dir)
    path = tmp_path / "pretrained.pth"
    torch.save(pretrained, path)
    model = _model(fixture_dir, "qa")
    report = UMT.load_weights(model, path, kind="pretrained")
    sd = model.state_dict()
    fusion = model.cfg.text.fusion_layer  # 2 of 4 layers: decoder = copies of layers 2, 3
    assert model.cfg.decoder_layers == 2
    for i in range(2):
        src = f"text_encoder.bert.encoder.layer.{fusion + i}.crossattention.self.key.weight"
        assert torch.equal(sd[f"text_decoder.bert.encoder.layer.{i}.crossattention.self.key.weight"], pretrained[src])
    # The question encoder keeps every pre-trained layer, the decoder the embeddings and MLM head.
    assert torch.equal(sd["text_encoder.encoder.layer.0.attention.self.query.weight"],
                       pretrained["text_encoder.bert.encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(sd["text_decoder.bert.embeddings.word_embeddings.weight"],
                       pretrained["text_encoder.bert.embeddings.word_embeddings.weight"])
    assert torch.equal(sd["text_decoder.cls.predictions.decoder.bias"], pretrained["text_encoder.cls.predictions.bias"])
    assert "text_decoder.cls.predictions.decoder.bias" in report.filled  # tied partner of cls.predictions.bias
    assert {"vision_proj.weight", "temp", "itm_head.bias", "vision_encoder.pool_norm.weight"} <= set(report.ignored)


def test_remap_matches_the_official_rule_on_key_names():
    sd = {"text_encoder.bert.encoder.layer.3.output.dense.weight": torch.zeros(1),
          "text_encoder.bert.encoder.layer.1.output.dense.weight": torch.zeros(1),
          "text_encoder.bert.embeddings.LayerNorm.weight": torch.zeros(1),
          "text_encoder.cls.predictions.bias": torch.zeros(1), "vision_proj.weight": torch.zeros(1)}
    assert set(remap_pretrained(sd, "retrieval", 2)) == {
        "text_encoder.encoder.layer.3.output.dense.weight", "text_encoder.encoder.layer.1.output.dense.weight",
        "text_encoder.embeddings.LayerNorm.weight", "text_encoder.cls.predictions.bias", "vision_proj.weight"}
    assert set(remap_pretrained(sd, "qa", 2)) == {
        "text_encoder.encoder.layer.3.output.dense.weight", "text_encoder.encoder.layer.1.output.dense.weight",
        "text_encoder.embeddings.LayerNorm.weight", "text_decoder.bert.encoder.layer.1.output.dense.weight",
        "text_decoder.bert.embeddings.LayerNorm.weight", "text_decoder.cls.predictions.bias", "vision_proj.weight"}


def test_wrong_task_and_diverging_tied_weights(fixture_dir, tmp_path):
    msg = _error(_model(fixture_dir, "qa"), fixture_dir / "checkpoint.pth")
    assert "retrieval checkpoint given to a QA model" in msg and "text_decoder" in msg
    msg = _error(_model(fixture_dir), fixture_dir / "qa_checkpoint.pth")
    assert "QA checkpoint given to a retrieval model" in msg
    sd = _official(fixture_dir, "qa_checkpoint.pth")
    sd["text_decoder.cls.predictions.decoder.weight"] = sd["text_decoder.cls.predictions.decoder.weight"] + 1
    path = tmp_path / "untied.pth"
    torch.save(sd, path)
    assert "hold different values" in _error(_model(fixture_dir, "qa"), path)


def test_read_state_dict_reports_format(fixture_dir):
    sd, fmt = read_state_dict(fixture_dir / "checkpoint.pth")
    assert fmt == "pth" and "temp" in sd and sd["temp"].shape == ()


def test_convert_script_writes_a_loadable_safetensors_file(fixture_dir, tmp_path):
    import argparse
    import subprocess
    import sys

    from conftest import ROOT

    script = ROOT / "scripts" / "convert_checkpoint.py"
    src = tmp_path / "with_config.pth"
    # A training-time save: the config object is not a plain container, so weights_only refuses it.
    torch.save({"model": _official(fixture_dir), "config": argparse.Namespace(lr=1e-4)}, src)
    refused = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "a.safetensors")],
                             capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    done = subprocess.run([sys.executable, str(script), "--trust-pickle", str(src), str(tmp_path / "a.safetensors")],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    model = _model(fixture_dir)
    load_checkpoint(model, tmp_path / "a.safetensors")
    _assert_loaded(model, _official(fixture_dir))


def test_finetuned_file_given_as_pretrained_is_refused(fixture_dir):
    path = fixture_dir / "checkpoint.pth"  # the fine-tuned tiny retrieval checkpoint
    msg = _error(_model(fixture_dir), path, kind="pretrained")
    assert str(path) in msg and "looks like a fine-tuned" in msg and "without _zs" in msg


# Keys that look like the allow-listed ones but are not: each must be refused, by name, whatever the
# task and kind (an allow-list that matched by substring or prefix without the "." would drop them).
MODELS: dict = {}  # one model per task: prepare_state_dict only reads it
NEAR_MISSES = ["temperature", "clip_teacherx.proj", "vision_encoder.clip_decoder_extra.w", "itm_head2.weight",
               "text_encoder.clsx.bias", "vision_encoder.encoder.blocks.0.extra.weight", "extra"]


@pytest.mark.parametrize("task,kind", [("retrieval", "finetuned"), ("qa", "finetuned"),
                                       ("retrieval", "pretrained"), ("qa", "pretrained")])
@pytest.mark.parametrize("key", NEAR_MISSES)
def test_unexpected_keys_are_refused_for_every_task_and_kind(fixture_dir, task, kind, key):
    if kind == "pretrained":
        sd = _fake_pretrained(fixture_dir)
    else:
        sd = _official(fixture_dir, "checkpoint.pth" if task == "retrieval" else "qa_checkpoint.pth")
    model = MODELS.get(task) or MODELS.setdefault(task, _model(fixture_dir, task))
    ignored = UMT.ignored_keys[(task, kind)]
    prepare_state_dict(model, sd, kind=kind, ignored=ignored)  # the file as it is loads
    sd[key] = torch.zeros(2)
    with pytest.raises(CheckpointError) as info:
        prepare_state_dict(model, sd, kind=kind, source="near_miss.pth", ignored=ignored)
    msg = str(info.value)
    # (the QA pre-trained remap moves text_encoder.* keys to the answer decoder before validation)
    shown = key.replace("text_encoder.", "text_decoder.") if (task, kind) == ("qa", "pretrained") else key
    assert "near_miss.pth" in msg and "1 unexpected key" in msg and f"\n    {shown}" in msg


def test_allow_listed_keys_are_dropped_and_reported_not_loaded(fixture_dir):
    sd = _official(fixture_dir)
    sd["clip_teacher.proj"] = torch.zeros(3)
    sd["vision_encoder.clip_decoder.1.head.bias"] = torch.zeros(3)
    clean, report = prepare_state_dict(_model(fixture_dir), sd, kind="finetuned", source="x.pth",
                                       ignored=UMT.ignored_keys[("retrieval", "finetuned")])
    assert sorted(report.ignored) == ["clip_teacher.proj", "vision_encoder.clip_decoder.1.head.bias"]
    assert set(clean) == set(_official(fixture_dir)) and report.loaded == len(clean)


def test_the_loader_drops_only_what_the_family_passes(fixture_dir, tmp_path):
    # The strict loader has no list of its own: the UMT family's lists are what make the official
    # files' training-only keys loadable, per head set and kind.
    sd = _official(fixture_dir)
    sd["clip_teacher.proj"] = torch.zeros(3)
    path = tmp_path / "with_teacher.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\):\n    clip_teacher.proj"):
        load_checkpoint(_model(fixture_dir), path)
    model = _model(fixture_dir)
    assert UMT.load_weights(model, str(path), "finetuned").ignored == ["clip_teacher.proj"]
    _assert_loaded(model, _official(fixture_dir))


def test_absent_position_ids_are_filled_with_their_default_and_reported(fixture_dir):
    sd = _official(fixture_dir)
    del sd["text_encoder.embeddings.position_ids"]  # newer transformers versions stopped saving them
    clean, report = prepare_state_dict(_model(fixture_dir), sd, kind="finetuned", source="old.pth")
    assert torch.equal(clean["text_encoder.embeddings.position_ids"], torch.arange(32)[None])
    assert report.filled == ["text_encoder.embeddings.position_ids"]
    assert (report.path, report.kind, report.remapped, report.loaded) == ("old.pth", "finetuned", 0, len(clean))


def test_one_name_of_a_tied_pair_fills_the_other(fixture_dir):
    sd = _official(fixture_dir, "qa_checkpoint.pth")
    word = sd.pop("text_decoder.cls.predictions.decoder.weight")  # only its tied partner stays
    clean, report = prepare_state_dict(_model(fixture_dir, "qa"), sd, kind="finetuned")
    assert torch.equal(clean["text_decoder.cls.predictions.decoder.weight"], word)
    assert report.filled == ["text_decoder.cls.predictions.decoder.weight"]
    sd["text_decoder.cls.predictions.decoder.weight"] = word
    del sd["text_decoder.bert.embeddings.word_embeddings.weight"]  # the other name of the pair
    clean, report = prepare_state_dict(_model(fixture_dir, "qa"), sd, kind="finetuned")
    assert report.filled == ["text_decoder.bert.embeddings.word_embeddings.weight"]
