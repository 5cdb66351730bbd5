"""Readers against the official structures recorded in tests/fixtures/data_formats."""

import json

import pytest

from vidtldr.data.annotations import READERS, build_split, load_split
from vidtldr.data.parity import format_folders, reader_for
from vidtldr.errors import AnnotationError, ConfigError


def _load(folder, name):
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _folders(root):
    return format_folders(root)


def test_every_fixture_format_is_discovered(data_formats_dir):
    names = {f.name for f in _folders(data_formats_dir)}
    assert {"msrvtt", "msvd", "didemo", "anet", "lsmdc", "ssv2_label", "ssv2_template", "msrvtt_qa", "msvd_qa"} <= names


@pytest.mark.parametrize("fmt", ["msrvtt", "msvd", "didemo", "anet", "lsmdc", "ssv2_label", "ssv2_template",
                                 "lsmdc_paragraph_zs_anet_l16"])
def test_retrieval_maps_match_official(data_formats_dir, fmt):
    folder = data_formats_dir / fmt
    reader = reader_for(_load(folder, "flags.json"), folder)
    want = _load(folder, "expected.json")
    split = build_split(_load(folder, "annotation.json"), reader, "root")
    assert split.texts == want["text"]
    assert split.video_names == want["image"]
    assert split.videos == [f"root/{n}" for n in want["image"]]
    assert split.txt2img == want["txt2img"]
    assert split.img2txt == want["img2txt"]


def test_reader_choice_from_flags(data_formats_dir):
    picks = {f.name: reader_for(_load(f, "flags.json"), f) for f in _folders(data_formats_dir)}
    assert picks["msvd"] == "caption" and picks["lsmdc"] == "caption"
    assert picks["didemo"] == "paragraph" and picks["anet"] == "paragraph"
    assert picks["ssv2_template"] == "multi_video_gt"
    assert picks["msrvtt_qa"] == "qa"


@pytest.mark.parametrize("fmt", ["msrvtt_qa", "msvd_qa"])
def test_qa_matches_official(data_formats_dir, fmt):
    folder = data_formats_dir / fmt
    want = _load(folder, "expected.json")
    split = build_split(_load(folder, "annotation.json"), "qa", "r", _load(folder, "answer_list.json"))
    assert split.answer_list == want["answer_list"]
    assert len(split) == want["len_dataset"]
    for g in want["getitem"]:
        i = g["index"]
        assert split.questions[i] == g["question"]
        assert split.raw_questions[i] == g["raw_question"]
        assert split.question_ids[i] == g["question_id"]
        assert type(split.question_ids[i]).__name__ == g["question_id_type"]
        assert split.answers[i] == g["answer"]
        assert split.video_names[i] == g["video"]


def test_paragraph_string_caption_is_joined_per_character():
    # docs/protocol.md section 9 (the shipped zero-shot ANet UMT-L config): a string caption in paragraph mode becomes its characters joined by spaces.
    split = build_split([{"video": "a.mp4", "caption": "Ok!"}], "paragraph", "")
    assert split.texts == ["o k"]


def test_same_video_twice_gives_two_ids():
    recs = [{"video": "a.mp4", "caption": "x"}, {"video": "a.mp4", "caption": "y"}]
    split = build_split(recs, "caption", "")
    assert split.txt2img == [0, 1] and split.img2txt == [[0], [1]]


def test_registry_has_the_four_readers():
    assert set(READERS) >= {"caption", "paragraph", "multi_video_gt", "qa"}


@pytest.mark.parametrize("records,reader,needle", [
    ([{"video": "a.mp4", "caption": 3}], "caption", "record 0, field 'caption'"),
    ([{"video": "a.mp4", "caption": "x"}, {"caption": "y"}], "caption", "record 1, field 'video'"),
    ([{"video": "a.mp4", "caption": ["x", 5]}], "caption", "field 'caption'"),
    ([{"video": "a.mp4", "caption": ["x"]}], "multi_video_gt", "one string"),
    ([{"video": [], "caption": "x"}], "multi_video_gt", "field 'video'"),
    ({"video": "a.mp4"}, "caption", "JSON list"),
    (["not a dict"], "caption", "record 0"),
    ([{"video": "a.mp4", "question": "q", "answer": "a", "question_id": 1.5}], "qa", "field 'question_id'"),
    ([{"video": "a.mp4", "question": "q", "answer": 7, "question_id": 1}], "qa", "field 'answer'"),
])
def test_schema_errors_name_record_and_field(records, reader, needle):
    with pytest.raises(AnnotationError) as exc:
        build_split(records, reader, "", [] if reader == "qa" else None, source="anno.json")
    assert needle in str(exc.value)
    assert "anno.json" in str(exc.value)


def test_answer_list_wrong_type():
    recs = [{"video": "a.mp4", "question": "q", "answer": "a", "question_id": 1}]
    with pytest.raises(AnnotationError, match="answer list"):
        build_split(recs, "qa", "", ["a", 3])


def test_load_split_missing_and_malformed_file(tmp_path):
    cfg = {"name": "x", "reader": "caption", "annotation": "x.json", "video_dir": "x"}
    with pytest.raises(AnnotationError, match="not found: .*x.json"):
        load_split(cfg, tmp_path)
    (tmp_path / "anno_downstream").mkdir()
    (tmp_path / "anno_downstream" / "x.json").write_text('[{"video": "a.mp4", "caption": "x"},]')
    with pytest.raises(AnnotationError, match=r"x.json: not valid JSON \(line 1"):
        load_split(cfg, tmp_path)


def test_unknown_reader_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown reader"):
        load_split({"name": "x", "reader": "nope", "annotation": "a.json", "video_dir": "v"}, tmp_path)
