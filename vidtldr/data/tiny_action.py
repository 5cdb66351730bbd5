"""Tiny action-recognition data: the tiny clips under Kinetics / SSv2 file names, with the
annotation in VideoMAE's list format (the dataset config's ``annotation``) and in the official
format next to it (Kinetics: ``<stem>_official.csv`` + ``<stem>_classes.txt``; SSv2:
``<stem>_validation.json`` + ``<stem>_labels.json``), so both readers run on the same videos.

The SSv2 names end in ``.webm`` like the real files while holding the tiny H.264 clips: the decoder
finds the container from the content, not the name.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

from vidtldr import jsonio
from vidtldr.files import atomic_write_text

# (clip index in tiny.CLIPS, class index): six videos, classes 0..3, one class twice, one portrait clip
_LABELS = ((0, 2), (1, 0), (3, 1), (4, 2), (5, 3), (6, 0))


def kinetics_rows() -> list[dict[str, Any]]:
    """The official-CSV rows of the tiny Kinetics set (youtube ids made up, 10 s segments)."""
    return [{"youtube_id": f"tinyclip{clip:03d}", "time_start": 10 * k, "time_end": 10 * k + 10, "label": label}
            for k, (clip, label) in enumerate(_LABELS)]


def official_files(annotation: str, reader_family: str) -> tuple[str, str]:
    """Names of the official-format annotation and class files written beside ``annotation``."""
    stem = Path(annotation).stem
    if reader_family == "kinetics":
        return f"{stem}_official.csv", f"{stem}_classes.txt"
    return f"{stem}_validation.json", f"{stem}_labels.json"


def write_tiny_action(root: Path, cfg: dict, encoded: Sequence[Path]) -> dict[str, str]:
    """Write videos and annotations of one classification dataset config; returns the file names."""
    num_classes = int(cfg["num_classes"])
    anno_dir = root / "anno_downstream"
    video_dir = root / "videos" / cfg["video_dir"]
    video_dir.mkdir(parents=True, exist_ok=True)
    kinetics = cfg.get("sampling") != "segment"
    official, classes = official_files(cfg["annotation"], "kinetics" if kinetics else "ssv2")
    lines = []
    if kinetics:
        class_names = [f"tiny action {k:03d}" for k in range(num_classes)]
        csv_lines = ["label,youtube_id,time_start,time_end,split"]
        for row, (clip, label) in zip(kinetics_rows(), _LABELS, strict=True):
            name = f"{row['youtube_id']}_{row['time_start']:06d}_{row['time_end']:06d}.mp4"
            shutil.copyfile(encoded[clip], video_dir / name)
            lines.append(f"{name} {label}")
            csv_lines.append(f"{class_names[label]},{row['youtube_id']},{row['time_start']},{row['time_end']},val")
        atomic_write_text(anno_dir / official, "\n".join(csv_lines) + "\n")
        atomic_write_text(anno_dir / classes, "\n".join(class_names) + "\n")
    else:
        labels = {f"Doing tiny action {k} to something": str(k) for k in range(num_classes)}
        records = []
        for k, (clip, label) in enumerate(_LABELS):
            video_id = str(1000 + k)
            shutil.copyfile(encoded[clip], video_dir / f"{video_id}.webm")
            lines.append(f"{video_id}.webm {label}")
            records.append({"id": video_id, "label": f"doing tiny action {label} to a block",
                            "template": f"Doing tiny action {label} to [something]", "placeholders": ["a block"]})
        atomic_write_text(anno_dir / official, jsonio.dumps(records, indent=1) + "\n")
        atomic_write_text(anno_dir / classes, jsonio.dumps(labels, indent=1) + "\n")
    atomic_write_text(anno_dir / cfg["annotation"], "\n".join(lines) + "\n")
    return {"annotation": cfg["annotation"], "official": official, "classes": classes}
