"""What a user reads when a checkpoint cannot be loaded: each message names the file, the key or the
value, the cause and what to do. Also the reader's safety (no pickled code runs, whatever the
environment says), the load report's fields and save_safetensors' atomic write with its metadata."""

import pickle
import zipfile

import pytest
import torch
from torch import nn

from vidtldr.errors import CheckpointError
from vidtldr.models import build_model, config_from_official, load_checkpoint
from vidtldr.models.checkpoint import prepare_state_dict, read_state_dict, remap_pretrained, save_safetensors


@pytest.fixture(scope="module")
def tiny():
    from conftest import FIXTURES
    return FIXTURES / "umt_tiny"


@pytest.fixture(scope="module")
def models(tiny):
    """One model per task: prepare_state_dict only reads it."""
    return {task: build_model(config_from_official(tiny / "config.json", tiny / "bert_config.json", task=task))
            for task in ("retrieval", "qa")}


def _official(tiny, name="checkpoint.pth"):
    return torch.load(tiny / name, weights_only=True)["model"]


def _read_error(path):
    with pytest.raises(CheckpointError) as info:
        read_state_dict(path)
    return str(info.value)


def _prepare_error(model, sd, **kw):
    with pytest.raises(CheckpointError) as info:
        prepare_state_dict(model, sd, **kw)
    return str(info.value)


def _torch_error(path):
    """torch's own error for a file (read directly, not through vidtldr)."""
    with pytest.raises(Exception) as info:
        torch.load(path, map_location="cpu", weights_only=True)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Reading .pth files


def test_truncated_zip_checkpoint_names_the_file_torchs_cause_and_says_re_download(tiny, tmp_path):
    data = (tiny / "checkpoint.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    msg = _read_error(path)
    cause = _torch_error(path).split(". ")[0]  # torch's first sentence, without its advice after it
    assert cause.startswith("PytorchStreamReader failed")
    assert msg == f"{path}: truncated or corrupt PyTorch zip archive ({cause}); re-download the file"


def test_damaged_member_of_a_zip_checkpoint_says_re_download(tiny, tmp_path):
    data = bytearray((tiny / "checkpoint.pth").read_bytes())
    member = [i for i in zipfile.ZipFile(tiny / "checkpoint.pth").infolist() if i.filename.endswith("data/0")][0]
    data[member.header_offset:member.header_offset + 4] = b"XXXX"  # that file's local header is broken
    path = tmp_path / "damaged.pth"
    path.write_bytes(bytes(data))
    msg = _read_error(path)
    assert msg.startswith(f"{path}: truncated or corrupt PyTorch zip archive (PytorchStreamReader failed reading file")
    assert msg.endswith("); re-download the file") and "\n" not in msg


def test_a_pickle_that_is_not_a_torch_file_is_named_with_torchs_cause(tmp_path):
    path = tmp_path / "number.pth"
    path.write_bytes(pickle.dumps(12345, protocol=2))  # a pickle, but not torch's legacy format
    cause = _torch_error(path)
    assert cause and "\n" not in cause
    assert _read_error(path) == f"{path}: cannot be read as a PyTorch checkpoint (RuntimeError: {cause})"


def test_truncated_legacy_checkpoint_says_it_ends_early(tiny, tmp_path):
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": _official(tiny)}, legacy, _use_new_zipfile_serialization=False)
    read_state_dict(legacy)  # the whole file reads
    path = tmp_path / "legacy_cut.pth"
    path.write_bytes(legacy.read_bytes()[:100])
    msg = _read_error(path)
    assert msg.startswith(f"{path}: the file ends early (truncated download?)")


def test_a_damaged_legacy_checkpoint_names_the_error_type_and_text(tmp_path):
    # torch's legacy layout (magic number, version, system info, object, storage keys) whose storage
    # list names a storage the object never used: torch fails with an AssertionError
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    path = tmp_path / "damaged_legacy.pth"
    path.write_bytes(b"".join(pickle.dumps(part, protocol=2) for part in (
        MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}, {"model": {}}, ["9"])))
    cause = _torch_error(path)
    assert cause and "\n" not in cause
    assert _read_error(path) == f"{path}: not a PyTorch checkpoint, or a corrupt one (AssertionError: {cause})"


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's note on the crafted headers
@pytest.mark.parametrize("head,pickle_like", [(b"\x80\x02", True), (b"\x80\x05", True), (b"\x80\x06", False),
                                              (b"\x80\x01", False), (b"\x01\x03", False)])
def test_only_a_file_that_starts_like_a_pickle_gets_the_convert_advice(tmp_path, head, pickle_like):
    # A pickle starts with PROTO (0x80) and a protocol 2-5; anything else is corrupt or not a checkpoint,
    # and advising to trust it would only teach trusting pickles.
    path = tmp_path / "odd.pth"
    path.write_bytes(head + b"g" * 40)  # the weights-only reader refuses the opcode "g" in each case
    msg = _read_error(path)
    if pickle_like:
        assert msg.startswith(f"{path}: the file holds Python objects other than tensors") and "--trust-pickle" in msg
    else:
        assert msg == (f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; corrupt or not a "
                       "checkpoint at all): re-download it")


class _Payload:
    """Unpickling this would create a file: proves that no pickled code runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_python_objects_are_refused_with_the_convert_command_for_this_file(tiny, tmp_path):
    import argparse

    path = tmp_path / "run" / "with_config.pth"
    path.parent.mkdir()
    torch.save({"model": _official(tiny), "config": argparse.Namespace(lr=1e-4)}, path)
    msg = _read_error(path)
    first, *rest = msg.splitlines()
    assert first.startswith(f"{path}: the file holds Python objects other than tensors and plain containers (")
    assert "GLOBAL argparse.Namespace was not an allowed global" in first  # torch's reason: what was refused
    assert "safe_globals" not in msg  # torch's advice to allow-list the class is left out: convert instead
    command = f"    python scripts/convert_checkpoint.py --trust-pickle {path} {tmp_path / 'run' / 'with_config'}.safetensors"
    assert command in rest and rest[-1] == "and load the .safetensors file instead."


def test_no_pickled_code_runs_even_when_the_environment_turns_weights_only_off(tiny, tmp_path, monkeypatch):
    # torch honours this variable for every torch.load that does not say weights_only itself
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"model": _official(tiny), "extra": _Payload(marker)}, path)
    msg = _read_error(path)
    assert not marker.exists()
    assert "Python objects other than tensors" in msg and "--trust-pickle" in msg


_TAG_AS_CUDA: set = set()


def _cuda_tagger(storage):
    return "cuda:0" if storage.data_ptr() in _TAG_AS_CUDA else None


torch.serialization.register_package(1, _cuda_tagger, lambda obj, location: None)


def test_a_checkpoint_saved_on_a_gpu_reads_onto_the_cpu(tiny, tmp_path):
    # The official checkpoints were saved from CUDA tensors; their storages say "cuda:0".
    sd = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}
    _TAG_AS_CUDA.update(t.untyped_storage().data_ptr() for t in sd.values())
    try:
        torch.save({"model": sd}, tmp_path / "gpu.pth")
    finally:
        _TAG_AS_CUDA.clear()
    assert "cuda:0" in pickle_text(tmp_path / "gpu.pth")
    loaded, fmt = read_state_dict(tmp_path / "gpu.pth")
    assert fmt == "pth" and {k: v.device.type for k, v in loaded.items()} == {"a": "cpu", "b": "cpu"}
    assert torch.equal(loaded["a"], sd["a"]) and torch.equal(loaded["b"], sd["b"])


def pickle_text(path):
    with zipfile.ZipFile(path) as archive:
        return b"".join(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl")).decode("latin-1")


# ---------------------------------------------------------------------------------------------
# What the file holds


def test_a_directory_is_not_a_checkpoint(tmp_path):
    assert _read_error(tmp_path) == f"checkpoint path is not a file: {tmp_path}"


def test_a_file_holding_something_else_names_its_type(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    assert _read_error(path) == f"{path}: expected a state_dict or {{'model': state_dict}}, got list"


def test_entries_that_are_not_tensors_are_named(tmp_path):
    path = tmp_path / "mixed.pth"
    torch.save({"model": {"w": torch.zeros(2), "epoch": 3, "note": "best", "b": torch.ones(1)}}, path)
    msg = _read_error(path)
    assert msg == (f"{path}: expected a state_dict (name -> tensor) or {{'model': state_dict}}; "
                   "these entries are not tensors:\n    epoch\n    note")


def test_safetensors_tensors_are_read_onto_the_cpu(tmp_path):
    save_safetensors({"w": torch.arange(3.0)}, tmp_path / "w.safetensors")
    sd, fmt = read_state_dict(tmp_path / "w.safetensors")
    assert fmt == "safetensors" and sd["w"].device.type == "cpu" and torch.equal(sd["w"], torch.arange(3.0))


# ---------------------------------------------------------------------------------------------
# Key validation messages


def _listed(msg, header):
    """The indented lines under ``header`` in a validation message."""
    lines = msg.splitlines()
    start = lines.index(header) + 1
    out = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        out.append(line[4:])
    return out


@pytest.mark.parametrize("n_missing", [25, 26, 31])
def test_long_key_listings_show_25_and_count_the_rest(tiny, models, n_missing):
    sd = _official(tiny)
    gone = [k for k in models["retrieval"].state_dict() if k.startswith("vision_encoder.")][:n_missing]
    for key in gone:
        del sd[key]
    listed = _listed(_prepare_error(models["retrieval"], sd), f"{n_missing} missing key(s):")
    assert listed[:25] == gone[:25]  # in the model's order
    assert listed[25:] == ([f"... and {n_missing - 25} more"] if n_missing > 25 else [])


def test_the_whole_message_for_a_missing_and_an_unexpected_key(tiny, models):
    sd = _official(tiny)
    del sd["vision_encoder.encoder.blocks.1.mlp.fc2.bias"]
    sd["vision_encoder.encoder.blocks.1.mlp.fc3.bias"] = torch.zeros(64)
    # No kind and no source given: a fine-tuned state_dict, named "<state_dict>" in messages.
    assert _prepare_error(models["retrieval"], sd) == (
        "<state_dict> does not match the retrieval model built from this config (kind=finetuned):\n"
        "1 missing key(s):\n    vision_encoder.encoder.blocks.1.mlp.fc2.bias\n"
        "1 unexpected key(s):\n    vision_encoder.encoder.blocks.1.mlp.fc3.bias")


def test_a_shape_mismatch_is_counted_and_described(tiny, models):
    sd = _official(tiny)
    sd["vision_proj.bias"] = torch.zeros(5)
    msg = _prepare_error(models["retrieval"], sd, source="s.pth")
    assert msg.endswith("\n1 shape mismatch(es):\n    vision_proj.bias: checkpoint [5] vs model [32]")


def test_a_retrieval_checkpoint_given_to_a_qa_model_gets_that_hint_only(tiny, models):
    msg = _prepare_error(models["qa"], _official(tiny), source="ret.pth")
    assert msg.endswith("\n(a retrieval checkpoint given to a QA model?)") and msg.count("given to") == 1


def test_a_qa_checkpoint_given_to_a_retrieval_model_gets_that_hint_only(tiny, models):
    msg = _prepare_error(models["retrieval"], _official(tiny, "qa_checkpoint.pth"), source="qa.pth")
    assert msg.endswith("\n(a QA checkpoint given to a retrieval model?)") and msg.count("given to") == 1


@pytest.mark.parametrize("change", ["missing", "vision_proj_extra"])
def test_other_retrieval_mismatches_get_no_hint(tiny, models, change):
    sd = _official(tiny)
    if change == "missing":
        del sd["text_proj.bias"]
        last = "    text_proj.bias"
    else:  # a vision_proj* key the retrieval model lacks: not a sign of a retrieval file in a QA model
        sd["vision_proj.extra"] = torch.zeros(1)
        last = "    vision_proj.extra"
    msg = _prepare_error(models["retrieval"], sd, source="r.pth")
    assert msg.splitlines()[-1] == last and "given to" not in msg


def test_an_unknown_kind_is_named_with_the_choices(tiny, models):
    msg = _prepare_error(models["retrieval"], _official(tiny), kind="zeroshot")
    assert msg == "checkpoint kind must be one of ('finetuned', 'pretrained'), got 'zeroshot'"


@pytest.mark.parametrize("model", [nn.Linear(2, 2), nn.Module()], ids=["no_cfg", "cfg_without_task"])
def test_a_model_not_built_by_build_model_is_refused(model):
    if not isinstance(model, nn.Linear):
        model.cfg = object()
    assert _prepare_error(model, {}) == "load_checkpoint needs a UMTRetrieval or UMTQA model (from build_model)"


def test_diverging_tied_weights_name_the_file_and_both_keys(tiny, models):
    sd = _official(tiny, "qa_checkpoint.pth")
    sd["text_decoder.cls.predictions.decoder.weight"] = sd["text_decoder.cls.predictions.decoder.weight"] + 1
    msg = _prepare_error(models["qa"], sd, source="untied.pth")
    assert msg.startswith("untied.pth: tied entries ") and "hold different values" in msg
    assert "'text_decoder.cls.predictions.decoder.weight'" in msg
    assert "'text_decoder.bert.embeddings.word_embeddings.weight'" in msg


def test_pretrained_remap_names_a_text_key_without_a_layer_number():
    sd = {"text_encoder.bert.encoder.layer_norm.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError) as info:
        remap_pretrained(sd, "qa", 2)
    assert "'text_encoder.bert.encoder.layer_norm.weight'" in str(info.value)
    assert "cannot read a layer number" in str(info.value)


def test_a_tensor_the_model_cannot_copy_names_the_file_and_the_parameter(tiny, models, tmp_path):
    sd = _official(tiny)
    sd["vision_proj.weight"] = torch.empty(sd["vision_proj.weight"].shape, device="meta")  # never materialised
    path = tmp_path / "meta.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(models["retrieval"], path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: load_state_dict failed: ") and "vision_proj.weight" in msg
    assert "meta" in msg


# ---------------------------------------------------------------------------------------------
# The load report


def test_the_load_report_names_the_file_format_and_kind(tiny, models, tmp_path):
    report = load_checkpoint(models["retrieval"], tiny / "checkpoint.pth")
    assert (report.path, report.format, report.kind) == (str(tiny / "checkpoint.pth"), "pth", "finetuned")
    _, report = prepare_state_dict(models["retrieval"], _official(tiny))
    assert (report.path, report.format, report.kind) == ("<state_dict>", "", "finetuned")  # not read from a file


def test_the_report_counts_the_keys_renamed_by_the_pretrained_remap(tiny, models):
    sd = {}
    for key, value in _official(tiny).items():  # the pre-training layout of the text encoder
        sd[key.replace("text_encoder.", "text_encoder.bert.", 1) if key.startswith("text_encoder.") else key] = value
    renamed = sum(key.startswith("text_encoder.bert.") for key in sd)
    _, report = prepare_state_dict(models["retrieval"], sd, kind="pretrained")
    assert renamed > 0 and report.remapped == renamed and report.kind == "pretrained"


def test_position_ids_are_filled_in_the_buffers_shape(tiny, models):
    sd = _official(tiny, "qa_checkpoint.pth")
    buffers = [k for k in sd if k.endswith("embeddings.position_ids")]
    assert len(buffers) == 2  # question encoder and answer decoder
    for key in buffers:
        del sd[key]
    clean, report = prepare_state_dict(models["qa"], sd)
    for key in buffers:
        assert torch.equal(clean[key], torch.arange(32)[None]), key  # max_position_embeddings = 32
    assert sorted(report.filled) == sorted(buffers)


# ---------------------------------------------------------------------------------------------
# Writing


def test_save_writes_the_metadata_and_leaves_no_temporary_file(tmp_path):
    from safetensors import safe_open

    path = tmp_path / "w.safetensors"
    (tmp_path / "w.safetensors.tmp").write_bytes(b"left by an interrupted earlier save")
    save_safetensors({"w": torch.arange(4.0)}, path, metadata={"source": "official.pth"})
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"source": "official.pth"}
        assert torch.equal(handle.get_tensor("w"), torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
