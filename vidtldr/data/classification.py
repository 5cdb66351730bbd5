"""Action-recognition annotations: one video, one class index per record.

Three formats, parsed by pure functions of the file text (the readers in
:mod:`vidtldr.data.annotations` open the files named by the dataset config):

* ``videomae_list`` (default): VideoMAE's list file (its ``val.csv``/``test.csv``): one
  ``<video path> <class index>`` per line, the path relative to the dataset's video folder; the
  last whitespace-separated field is the label, so a path may contain spaces;
* ``kinetics_csv``: the official Kinetics CSV ``label,youtube_id,time_start,time_end,split`` plus a
  class-name list (one name per line; line k is class k, the order of the checkpoint's head); the
  video file name is built from the row with the dataset's ``video_name`` pattern;
* ``ssv2_json``: the official Something-Something v2 ``validation.json`` (records with ``id`` and
  ``template``) plus ``labels.json`` (template with the brackets removed -> class index as a string).

Every problem is an :class:`AnnotationError` naming the file and the line or record.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from vidtldr.errors import AnnotationError

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_VIDEO_NAME = "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
SSV2_VIDEO_NAME = "{id}.webm"


@dataclass
class ClassificationSplit:
    """Videos of one split in file order with their class indices."""

    videos: list[str]          # full paths (video folder joined with the names)
    video_names: list[str]     # as in the annotation
    labels: list[int]
    class_names: Optional[list[str]] = None  # when the annotation names the classes
    num_classes: Optional[int] = None        # the dataset config's
    task: str = "classification"
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.videos)


def parse_videomae_list(text: str, source: str) -> tuple[list[str], list[int]]:
    """``(names, labels)`` of a VideoMAE list file; blank lines are skipped."""
    names, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise AnnotationError(f"{source}, line {number}: expected '<video path> <class index>', got {line!r}")
        try:
            label = int(parts[1])
        except ValueError:
            raise AnnotationError(f"{source}, line {number}: the class index {parts[1]!r} is not an integer") from None
        names.append(parts[0].strip())
        labels.append(label)
    if not names:
        raise AnnotationError(f"{source}: no '<video path> <class index>' lines")
    return names, labels


def parse_class_names(text: str, source: str) -> list[str]:
    """One class name per line (line k = class k); blank lines end nothing and are not allowed
    in the middle, where they would shift every later index."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise AnnotationError(f"{source}, line {number}: empty class name (it would shift every later index)")
    names = [line.strip() for line in lines]
    seen: dict[str, int] = {}
    for k, name in enumerate(names):
        if name in seen:
            raise AnnotationError(f"{source}: class {name!r} on lines {seen[name] + 1} and {k + 1}")
        seen[name] = k
    if not names:
        raise AnnotationError(f"{source}: no class names")
    return names


def parse_kinetics_csv(text: str, class_names: Sequence[str], source: str,
                       video_name: str = KINETICS_VIDEO_NAME) -> tuple[list[str], list[int]]:
    """``(names, labels)`` of an official Kinetics CSV; ``video_name`` formats each row's fields
    (``label``, ``youtube_id``, ``time_start``, ``time_end`` as integers, ``split``)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in KINETICS_COLUMNS[:4] if c not in (reader.fieldnames or [])]
    if missing:
        raise AnnotationError(f"{source}: missing columns {missing}; expected the header "
                              f"{','.join(KINETICS_COLUMNS)}")
    index = {name: k for k, name in enumerate(class_names)}
    names, labels = [], []
    for number, row in enumerate(reader, start=2):
        label = (row.get("label") or "").strip()
        if label not in index:
            raise AnnotationError(f"{source}, line {number}: class {label!r} is not in the class-name list")
        try:
            fields = dict(row, label=label, time_start=int(row["time_start"]), time_end=int(row["time_end"]))
        except (TypeError, ValueError):
            raise AnnotationError(f"{source}, line {number}: time_start/time_end must be integers, got "
                                  f"{row.get('time_start')!r}, {row.get('time_end')!r}") from None
        names.append(video_name.format(**fields))
        labels.append(index[label])
    if not names:
        raise AnnotationError(f"{source}: no rows")
    return names, labels


def ssv2_class_of(template: str) -> str:
    """SSv2's class name of a template: the placeholders' brackets removed."""
    return template.replace("[", "").replace("]", "")


def parse_ssv2(records: Any, labels: Any, source: str, video_name: str = SSV2_VIDEO_NAME
               ) -> tuple[list[str], list[int], list[str]]:
    """``(names, labels, class_names)`` of SSv2's ``validation.json`` records and ``labels.json``."""
    if not isinstance(labels, dict) or not labels:
        raise AnnotationError(f"{source} (labels): expected a JSON object template -> class index")
    try:
        index = {name: int(k) for name, k in labels.items()}
    except (TypeError, ValueError):
        raise AnnotationError(f"{source} (labels): every class index must be an integer string") from None
    class_names = [""] * len(index)
    for name, k in index.items():
        if not 0 <= k < len(index) or class_names[k]:
            raise AnnotationError(f"{source} (labels): class indices must be 0..{len(index) - 1}, each once")
        class_names[k] = name
    if not isinstance(records, list) or not records:
        raise AnnotationError(f"{source}: expected a non-empty JSON list of records")
    names, out = [], []
    for number, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get("template"), str) or "id" not in rec:
            raise AnnotationError(f"{source}, record {number}: expected an object with 'id' and 'template'")
        name = ssv2_class_of(rec["template"])
        if name not in index:
            raise AnnotationError(f"{source}, record {number}: template {rec['template']!r} is not in labels.json")
        names.append(video_name.format(**rec))
        out.append(index[name])
    return names, out, class_names


def check_labels(labels: Sequence[int], num_classes: Optional[int], source: str) -> None:
    """Every label in ``[0, num_classes)``."""
    if num_classes is None:
        return
    for k, label in enumerate(labels):
        if not 0 <= label < num_classes:
            raise AnnotationError(f"{source}: record {k} has class {label}, outside 0..{num_classes - 1} "
                                  f"(num_classes: {num_classes})")
