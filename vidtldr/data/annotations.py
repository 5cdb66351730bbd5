"""Annotation readers for the UMT/VINDLU JSON formats, looked up by the dataset config's ``reader``.

Each reader is a pure function ``(records, video_root) -> split`` over the list of records in file
order; it reproduces the official eval dataset's structures (docs/protocol.md section 6,
tests/fixtures/data_formats/README.md):

* ``caption``        one video per record, one or several captions per record (msrvtt, msvd, lsmdc)
* ``paragraph``      one video per record, its captions joined with single spaces into one text
                     before cleaning (didemo, anet)
* ``multi_video_gt`` one text per record, one or several ground-truth videos (ssv2 label/template)
* ``qa``             questions with raw answers, plus the dataset's answer list (msrvtt/msvd/anet QA)

Action recognition reads whole files of other formats (``videomae_list``, ``kinetics_csv``,
``ssv2_json``; :mod:`vidtldr.data.classification`), registered with :func:`register_file_reader`.

Adding a dataset with a known format is one config file; a new format is one function decorated
with :func:`register_reader` (and, for the validator, one schema function).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from vidtldr import jsonio
from vidtldr.errors import AnnotationError, ConfigError
from vidtldr.data import classification as cls_formats
from vidtldr.data.text import pre_text

log = logging.getLogger(__name__)


@dataclass
class RetrievalSplit:
    """Texts, videos and ground truth of one retrieval split, indexed by text id / video id.

    ``txt2img[t]`` is an ``int`` (or a ``list`` for ``multi_video_gt``); ``img2txt[v]`` is a
    ``list`` of text ids (or an ``int`` for ``multi_video_gt``), exactly as the official maps.
    """

    texts: list[str]
    videos: list[str]  # full paths, video_root joined with the record's file name
    txt2img: list[Any]
    img2txt: list[Any]
    video_names: list[str] = field(default_factory=list)  # record file names, same order
    multi_video_gt: bool = False
    task: str = "retrieval"

    def __len__(self) -> int:
        return len(self.videos)


@dataclass
class QASplit:
    """Questions of one QA split in file order; ``answers`` are raw (exact-match accuracy)."""

    questions: list[str]  # after pre_text
    raw_questions: list[str]
    question_ids: list[Any]  # int or str, exactly as in the file
    answers: list[Any]
    videos: list[str]
    video_names: list[str]
    answer_list: list[str]  # exactly as loaded, no cleaning
    task: str = "qa"

    def __len__(self) -> int:
        return len(self.questions)


Reader = Callable[[Sequence[Mapping[str, Any]], str], Any]
READERS: dict[str, Reader] = {}
# Schema checks per reader: record -> list of (field, message); used by load_split and validate.
SCHEMAS: dict[str, Callable[[Mapping[str, Any]], list[tuple[str, str]]]] = {}


def register_reader(name: str, schema: Callable[[Mapping[str, Any]], list[tuple[str, str]]]):
    """Register a reader under ``name`` together with its per-record schema check."""

    def deco(fn: Reader) -> Reader:
        READERS[name] = fn
        SCHEMAS[name] = schema
        return fn

    return deco


# Readers of whole annotation files in formats other than a JSON list of records:
# (dataset config, data root) -> split.
FileReader = Callable[[Mapping[str, Any], Path], Any]
FILE_READERS: dict[str, FileReader] = {}


def register_file_reader(name: str):
    def deco(fn: FileReader) -> FileReader:
        FILE_READERS[name] = fn
        return fn

    return deco


def _join(video_root: str, name: str) -> str:
    # Official load_anno uses os.path.join, so an absolute record path wins over the root.
    return str(Path(video_root) / name)


# ----------------------------------------------------------------------------- schemas


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _schema_caption(rec: Mapping[str, Any]) -> list[tuple[str, str]]:
    errs = []
    if not isinstance(rec.get("video"), str):
        errs.append(("video", f"expected a string file name, got {_type_name(rec, 'video')}"))
    cap = rec.get("caption")
    if not (isinstance(cap, str) or _is_str_list(cap)):
        errs.append(("caption", f"expected a string or a list of strings, got {_type_name(rec, 'caption')}"))
    elif isinstance(cap, list) and not cap:
        # The official build accepts it, but the video then has no ground-truth text and the
        # retrieval metric fails much later; report it where it starts.
        errs.append(("caption", "empty caption list: the video would have no ground-truth text"))
    return errs


def _schema_multi_video(rec: Mapping[str, Any]) -> list[tuple[str, str]]:
    errs = []
    vid = rec.get("video")
    if not (isinstance(vid, str) or (_is_str_list(vid) and vid)):
        errs.append(("video", f"expected a file name or a non-empty list of file names, got {_type_name(rec, 'video')}"))
    if not isinstance(rec.get("caption"), str):
        errs.append(("caption", f"expected one string (one text per record), got {_type_name(rec, 'caption')}"))
    return errs


def _schema_qa(rec: Mapping[str, Any]) -> list[tuple[str, str]]:
    errs = []
    for key in ("video", "question", "answer"):
        if not isinstance(rec.get(key), str):
            errs.append((key, f"expected a string, got {_type_name(rec, key)}"))
    qid = rec.get("question_id")
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        errs.append(("question_id", f"expected an int or a string, got {_type_name(rec, 'question_id')}"))
    return errs


def _type_name(rec: Mapping[str, Any], key: str) -> str:
    if key not in rec:
        return "nothing (field missing)"
    return type(rec[key]).__name__


def schema_errors(records: Any, reader: str) -> list[tuple[int | None, str | None, str]]:
    """Every schema problem as ``(record index, field, message)``; index None for the file."""
    if reader not in SCHEMAS:
        raise ConfigError(f"unknown reader {reader!r}; known: {sorted(SCHEMAS)}")
    if not isinstance(records, list):
        return [(None, None, f"expected a JSON list of records, got {type(records).__name__}")]
    if not records:
        return [(None, None, "the list of records is empty: nothing to evaluate")]
    out: list[tuple[int | None, str | None, str]] = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            out.append((i, None, f"expected an object, got {type(rec).__name__}"))
            continue
        out.extend((i, fld, msg) for fld, msg in SCHEMAS[reader](rec))
    return out


def duplicate_records(records: Any) -> list[tuple[int, int]]:
    """``(index, index of its first copy)`` for every record identical to an earlier one (a copy
    counts its video and texts twice in the metrics)."""
    if not isinstance(records, list):
        return []
    first: dict[str, int] = {}
    out = []
    for i, rec in enumerate(records):
        key = jsonio.dumps(rec, sort_keys=True, default=str)
        if key in first:
            out.append((i, first[key]))
        else:
            first[key] = i
    return out


def repeated_items(split: Any) -> tuple[str, dict[str, int]]:
    """(what is repeated, ``{name: times listed}``) for the items a split lists more than once where
    each listing is scored as its own item: a video of a one-video-per-record retrieval split (two
    records of one file are two "videos" in the metrics) or a QA question id. A video under several
    texts of a ``multi_video_gt`` split is the official layout, and a video under several questions
    is how QA splits are made: neither is counted."""
    from collections import Counter

    if getattr(split, "task", "") == "qa":
        what, names = "question_id", [str(q) for q in split.question_ids]
    elif getattr(split, "task", "") == "retrieval" and not split.multi_video_gt:
        what, names = "video", list(split.video_names)
    else:
        return "", {}
    return what, {name: n for name, n in Counter(names).items() if n > 1}


def describe_repeats(what: str, repeated: dict[str, int], limit: int = 3) -> str:
    """One line: how many extra listings, and the first few names."""
    extra = sum(n - 1 for n in repeated.values())
    shown = ", ".join(f"{name!r} x{n}" for name, n in list(repeated.items())[:limit])
    more = f" and {len(repeated) - limit} more" if len(repeated) > limit else ""
    return (f"{len(repeated)} {what}(s) listed more than once ({shown}{more}): {extra} extra item(s), each "
            "counted as its own in the metrics")


def answer_list_errors(answers: Any) -> list[tuple[int | None, str | None, str]]:
    if not isinstance(answers, list):
        return [(None, None, f"expected a JSON list of answer strings, got {type(answers).__name__}")]
    return [(i, None, f"expected a string answer, got {type(a).__name__}")
            for i, a in enumerate(answers) if not isinstance(a, str)]


def format_problems(path: Path | str, problems: list[tuple[int | None, str | None, str]], limit: int = 10) -> str:
    lines = []
    for idx, fld, msg in problems[:limit]:
        where = "file" if idx is None else f"record {idx}" + (f", field {fld!r}" if fld else "")
        lines.append(f"  {where}: {msg}")
    more = len(problems) - limit
    if more > 0:
        lines.append(f"  ... and {more} more")
    return f"{path}: {len(problems)} schema error(s)\n" + "\n".join(lines)


# ----------------------------------------------------------------------------- readers


@register_reader("caption", _schema_caption)
def read_caption(records: Sequence[Mapping[str, Any]], video_root: str) -> RetrievalSplit:
    """Video id = record index; each caption (string = 1, list = several) is its own text."""
    texts: list[str] = []
    txt2img: list[int] = []
    img2txt: list[list[int]] = []
    names: list[str] = []
    for vid, rec in enumerate(records):
        names.append(rec["video"])
        caps = rec["caption"] if isinstance(rec["caption"], list) else [rec["caption"]]
        ids = []
        for cap in caps:
            ids.append(len(texts))
            texts.append(pre_text(cap))
            txt2img.append(vid)
        img2txt.append(ids)
    return RetrievalSplit(texts, [_join(video_root, n) for n in names], txt2img, img2txt, names)


def paragraph_text(caption: Any) -> str:
    """One paragraph per video: captions joined with one space, before cleaning.

    ``str.join`` over a *string* caption joins its characters ("Ok" -> "O k"); the official code
    does the same, and ``exp/zero_shot/ret_anet/l16.py`` relies on it by accident (README).
    """
    return " ".join(caption)


@register_reader("paragraph", _schema_caption)
def read_paragraph(records: Sequence[Mapping[str, Any]], video_root: str) -> RetrievalSplit:
    if any(isinstance(r["caption"], str) for r in records):
        log.warning("paragraph reader: string captions are joined character by character, "
                    "as in the official code")
    joined = [{"video": r["video"], "caption": paragraph_text(r["caption"])} for r in records]
    return read_caption(joined, video_root)


@register_reader("multi_video_gt", _schema_multi_video)
def read_multi_video_gt(records: Sequence[Mapping[str, Any]], video_root: str) -> RetrievalSplit:
    """Text id = record index; every listed video gets a new video id (never shared)."""
    texts: list[str] = []
    txt2img: list[list[int]] = []
    img2txt: list[int] = []
    names: list[str] = []
    for tid, rec in enumerate(records):
        texts.append(pre_text(rec["caption"]))
        vids = rec["video"] if isinstance(rec["video"], list) else [rec["video"]]
        ids = []
        for name in vids:
            ids.append(len(names))
            names.append(name)
            img2txt.append(tid)
        txt2img.append(ids)
    return RetrievalSplit(texts, [_join(video_root, n) for n in names], txt2img, img2txt, names,
                          multi_video_gt=True)


@register_reader("qa", _schema_qa)
def read_qa(records: Sequence[Mapping[str, Any]], video_root: str, answer_list: Sequence[str] = ()) -> QASplit:
    names = [r["video"] for r in records]
    return QASplit(
        questions=[pre_text(r["question"]) for r in records],
        raw_questions=[r["question"] for r in records],
        question_ids=[r["question_id"] for r in records],
        answers=[r["answer"] for r in records],
        videos=[_join(video_root, n) for n in names],
        video_names=names,
        answer_list=list(answer_list),
    )


# ----------------------------------------------------------------------------- loading


def load_json(path: Path | str, what: str = "annotation file") -> Any:
    """Read a JSON file; a missing file or a syntax error becomes an AnnotationError naming it."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{what} not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc})") from None


def build_split(records: Any, reader: str, video_root: str | Path, answer_list: Any = None,
                source: str | Path = "<records>"):
    """Validate ``records`` against the reader's schema, then run the reader."""
    problems = schema_errors(records, reader)
    if problems:
        raise AnnotationError(format_problems(source, problems))
    if reader == "qa":
        problems = answer_list_errors(answer_list if answer_list is not None else [])
        if problems:
            raise AnnotationError(format_problems(f"{source} (answer list)", problems))
        return read_qa(records, str(video_root), answer_list or [])
    return READERS[reader](records, str(video_root))


def annotation_path(cfg: Mapping[str, Any], data_root: str | Path) -> Path:
    return Path(data_root) / "anno_downstream" / _required(cfg, "annotation")


def answer_list_path(cfg: Mapping[str, Any], data_root: str | Path) -> Path | None:
    name = cfg.get("answer_list")
    return Path(data_root) / "anno_downstream" / name if name else None


def video_root(cfg: Mapping[str, Any], data_root: str | Path) -> Path:
    return Path(data_root) / "videos" / _required(cfg, "video_dir")


def _required(cfg: Mapping[str, Any], key: str) -> Any:
    value = cfg.get(key)
    if value in (None, ""):
        raise ConfigError(f"dataset config {cfg.get('name', '?')!r} has no {key!r}")
    return value


def read_text(path: Path | str, what: str = "annotation file") -> str:
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 text ({exc})") from None


def classes_path(cfg: Mapping[str, Any], data_root: str | Path) -> Path:
    """The class list a ``kinetics_csv`` / ``ssv2_json`` dataset names under ``classes``."""
    return Path(data_root) / "anno_downstream" / _required(cfg, "classes")


def _classification_split(cfg, data_root, names, labels, class_names, source) -> "cls_formats.ClassificationSplit":
    num_classes = cfg.get("num_classes")
    cls_formats.check_labels(labels, num_classes, str(source))
    if class_names is not None and num_classes is not None and len(class_names) != num_classes:
        raise AnnotationError(f"{source}: {len(class_names)} classes listed, the dataset config says "
                              f"num_classes: {num_classes}")
    root = str(video_root(cfg, data_root))
    return cls_formats.ClassificationSplit([_join(root, n) for n in names], list(names), list(labels), class_names,
                                           num_classes=num_classes)


@register_file_reader("videomae_list")
def read_videomae_list(cfg: Mapping[str, Any], data_root: Path) -> "cls_formats.ClassificationSplit":
    path = annotation_path(cfg, data_root)
    names, labels = cls_formats.parse_videomae_list(read_text(path), str(path))
    class_names = None
    if cfg.get("classes"):
        class_names = cls_formats.parse_class_names(read_text(classes_path(cfg, data_root), "class list"),
                                                    str(classes_path(cfg, data_root)))
    return _classification_split(cfg, data_root, names, labels, class_names, path)


@register_file_reader("kinetics_csv")
def read_kinetics_csv(cfg: Mapping[str, Any], data_root: Path) -> "cls_formats.ClassificationSplit":
    path, cpath = annotation_path(cfg, data_root), classes_path(cfg, data_root)
    class_names = cls_formats.parse_class_names(read_text(cpath, "class list"), str(cpath))
    names, labels = cls_formats.parse_kinetics_csv(read_text(path), class_names, str(path),
                                                   cfg.get("video_name") or cls_formats.KINETICS_VIDEO_NAME)
    return _classification_split(cfg, data_root, names, labels, class_names, path)


@register_file_reader("ssv2_json")
def read_ssv2_json(cfg: Mapping[str, Any], data_root: Path) -> "cls_formats.ClassificationSplit":
    path, cpath = annotation_path(cfg, data_root), classes_path(cfg, data_root)
    names, labels, class_names = cls_formats.parse_ssv2(
        load_json(path), load_json(cpath, "labels file"), str(path),
        cfg.get("video_name") or cls_formats.SSV2_VIDEO_NAME)
    return _classification_split(cfg, data_root, names, labels, class_names, path)


def load_split(dataset_cfg: Mapping[str, Any], data_root: str | Path):
    """Read the split a dataset config names, under the layout ``<root>/anno_downstream`` and
    ``<root>/videos/<video_dir>``. Returns a :class:`RetrievalSplit`, a :class:`QASplit` or a
    :class:`vidtldr.data.classification.ClassificationSplit`."""
    reader = _required(dataset_cfg, "reader")
    if reader in FILE_READERS:
        return FILE_READERS[reader](dataset_cfg, Path(data_root))
    if reader not in READERS:
        raise ConfigError(f"dataset {dataset_cfg.get('name', '?')!r}: unknown reader {reader!r}; "
                          f"known: {sorted(READERS) + sorted(FILE_READERS)}")
    path = annotation_path(dataset_cfg, data_root)
    records = load_json(path)
    answers = None
    if reader == "qa":
        ans_path = answer_list_path(dataset_cfg, data_root)
        if ans_path is None:
            raise ConfigError(f"QA dataset {dataset_cfg.get('name', '?')!r} has no 'answer_list'")
        answers = load_json(ans_path, "answer list")
    return build_split(records, reader, video_root(dataset_cfg, data_root), answers, source=path)
