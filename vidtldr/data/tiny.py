"""Tiny synthetic datasets: deterministic H.264 clips plus annotation files in every dataset's
exact format, laid out as the harness expects (``anno_downstream/`` + ``videos/<video_dir>/``).

For every config in ``configs/dataset/`` the annotation (and answer list) is written under the
config's own file name, so ``dataset=<name> paths.data=<root>`` works on the result. Known file
names get content in that dataset's style (caption lists for MSVD, paragraphs for DiDeMo/ANet,
several ground-truth videos for SSv2, int/str question ids for QA); an unknown file name gets
generic content for its reader.

Clip widths avoid 16/24/48/72, which decord 0.6.0 mis-decodes. Encoding uses one thread and no
mbtree/lookahead so the bytes are identical on every run.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from vidtldr import jsonio
from vidtldr.files import atomic_output, atomic_write_text


@dataclass(frozen=True)
class Clip:
    name: str
    frames: int
    fps: Fraction
    width: int
    height: int


CLIPS: tuple[Clip, ...] = (
    Clip("v0_20f_10fps_64x48.mp4", 20, Fraction(10), 64, 48),
    Clip("v1_7f_5fps_32x32.mp4", 7, Fraction(5), 32, 32),          # < 12 frames: padding
    Clip("v2_3f_3fps_40x30.mp4", 3, Fraction(3), 40, 30),          # < 4 frames: padding at 4 too
    Clip("v3_36f_12fps_80x60.mp4", 36, Fraction(12), 80, 60),
    Clip("v4_15f_29.97fps_56x42.mp4", 15, Fraction(30000, 1001), 56, 42),  # NTSC rate
    Clip("v5_12f_8fps_36x64.mp4", 12, Fraction(8), 36, 64),        # portrait
    Clip("v6_160f_5fps_32x32_32s.mp4", 160, Fraction(5), 32, 32),  # 32 s: DiDeMo's 30 s trim
)
V = [c.name for c in CLIPS]

# Base colours, one per clip, so clips differ visibly (and for a model) besides their motion.
_COLOURS = ((220, 40, 40), (40, 200, 60), (50, 70, 220), (230, 200, 40), (200, 60, 200),
            (40, 200, 210), (240, 140, 30))


def clip_frame(clip_index: int, i: int, width: int, height: int) -> np.ndarray:
    """RGB uint8 [H,W,3] frame ``i`` of clip ``clip_index``: a gray level that changes every
    frame, a fixed coloured block (top-left), and a white bar that moves right by 3 px a frame."""
    level = 16 + (23 * i) % 224
    img = np.full((height, width, 3), level, dtype=np.uint8)
    img[: height // 2, : width // 2] = _COLOURS[clip_index % len(_COLOURS)]
    x = (3 * i) % max(width - 2, 1)
    img[:, x: x + 2] = 255
    return img


def write_clip(path: str | Path, frames: int, fps: Fraction | float, width: int, height: int,
               clip_index: int = 0, frame_fn: Callable[[int, int, int, int], np.ndarray] | None = None) -> Path:
    """Encode an H.264/yuv420p mp4 deterministically (libx264, one thread, crf 26)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    make = frame_fn or clip_frame
    # atomic: a half-written clip never has the final name
    with atomic_output(path) as tmp, av.open(str(tmp), mode="w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "26", "x264-params": "threads=1:no-mbtree=1:rc-lookahead=0"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(make(clip_index, i, width, height), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


# ----------------------------------------------------------------------------- annotation content
# Literal records, so tests can state the expected maps independently of the readers.

def _msrvtt() -> list[dict]:
    caps = ["A red block, and a bar moving right.", "a GREEN block/bar (short clip)",
            "blue block -- three frames only!", "A yellow block; the bar sweeps across",
            "the magenta block at 29.97 fps", "<person> films a cyan block, portrait",
            "an orange block for thirty-two seconds"]
    return [{"video": v, "caption": c} for v, c in zip(V, caps, strict=True)]


def _msvd() -> list[dict]:
    return [
        {"video": V[0], "caption": ["A red block.", "the bar moves right!", "RED BLOCK, WHITE BAR"]},
        {"video": V[1], "caption": ["a green block"]},
        {"video": V[2], "caption": "a blue block"},
        {"video": V[3], "caption": ["A yellow block.", "yellow", "a bar sweeps", "?!"]},
        {"video": V[5], "caption": ["a cyan  block\n", "Portrait clip"]},
    ]


def _paragraphs(leading_space: bool) -> list[dict]:
    sp = " " if leading_space else ""
    return [
        {"video": V[6], "caption": [f"{sp}An orange block appears.", f"{sp}The bar moves right.",
                                    f"{sp}It keeps going for half a minute."]},
        {"video": V[0], "caption": [f"{sp}A red block.", f"{sp}A white bar moves (fast)."]},
        {"video": V[3], "caption": [f"{sp}A yellow block", f"{sp}the bar sweeps", f"{sp}the gray gets darker",
                                    f"{sp}the end"]},
        {"video": V[4], "caption": [f"{sp}A magenta block at 29.97 fps."]},
    ]


def _lsmdc() -> list[dict]:
    # V[1] appears twice: two records, two video ids (nothing is deduplicated).
    return [{"video": V[0], "caption": "SOMEONE looks at the red block."},
            {"video": V[1], "caption": "Now, SOMEONE sees a green block."},
            {"video": V[2], "caption": "He turns - and sees blue!"},
            {"video": V[1], "caption": "SOMEONE nods (slowly)."},
            {"video": V[5], "caption": "SOMEONE stands; cyan / portrait."}]


def _ssv2_label() -> list[dict]:
    return [{"video": [V[0]], "caption": "Moving a red block from left to right"},
            {"video": [V[1], V[2]], "caption": "Pretending to pick up a green block (but not really)"},
            {"video": V[3], "caption": "Pushing a yellow-block across"},
            {"video": [V[4], V[5], V[6]], "caption": "Showing a bar & a block"}]


def _ssv2_template() -> list[dict]:
    return [{"video": [V[0], V[1], V[2]], "caption": "Moving [something] from left to right"},
            {"video": [V[3]], "caption": "Pushing [something] across [something]"},
            {"video": [V[4], V[5]], "caption": "Showing [something] to the camera"}]


def _qa(id_style: str) -> tuple[list[dict], list[str]]:
    qs = [(V[0], "what colour is the block?", "red"), (V[0], "Which way does the bar move?", "right"),
          (V[1], "what colour is the block ?", "green"), (V[2], "how many frames are there?", "three"),
          (V[3], "what colour is the block?", "yellow"), (V[5], "is the clip portrait/landscape?\n", "portrait"),
          (V[4], "what sweeps across the frame?", "bar")]
    recs = []
    for k, (v, q, a) in enumerate(qs):
        qid: Any = k if id_style == "int" else (f"{Path(v).stem}_{k}" if id_style == "anet" else f"tiny_qa_{k}")
        recs.append({"video": v, "question": q, "answer": a, "question_id": qid})
    answers = ["red", "right", "green", "three", "yellow", "portrait", "bar", "blue", "ice cream", "t-shirt"]
    return recs, answers


def _generic(reader: str) -> tuple[list[dict], list[str] | None]:
    if reader == "caption":
        return _msrvtt(), None
    if reader == "paragraph":
        return _paragraphs(False), None
    if reader == "multi_video_gt":
        return _ssv2_label(), None
    if reader == "qa":
        return _qa("str")
    raise ValueError(f"no tiny content for reader {reader!r}")


_BY_FILE: dict[str, Callable[[], tuple[list[dict], list[str] | None]]] = {
    "msrvtt_ret_test1k.json": lambda: (_msrvtt(), None),
    "msvd_ret_test.json": lambda: (_msvd(), None),
    "didemo_ret_test.json": lambda: (_paragraphs(False), None),
    "didemo_ret_val.json": lambda: (_paragraphs(False)[:3], None),
    "anet_ret_val.json": lambda: (_paragraphs(True), None),
    "lsmdc_ret_test_1000.json": lambda: (_lsmdc(), None),
    "ssv2_ret_label_val_small.json": lambda: (_ssv2_label(), None),
    "ssv2_ret_template_val_small.json": lambda: (_ssv2_template(), None),
    "msrvtt_qa_test.json": lambda: _qa("int"),
    "msvd_qa_test.json": lambda: _qa("str"),
    "anet_qa_test.json": lambda: _qa("anet"),
}


def tiny_annotation(annotation: str, reader: str) -> tuple[list[dict], list[str] | None]:
    """(records, answer list or None) the generator writes for an annotation file name."""
    maker = _BY_FILE.get(annotation)
    return maker() if maker else _generic(reader)


# ----------------------------------------------------------------------------- writer


def _write_json(path: Path, obj: Any) -> None:
    # ASCII-only, like the official files, so any platform encoding reads them the same.
    atomic_write_text(path, jsonio.dumps(obj, indent=1, ensure_ascii=True) + "\n")


def encode_clips(folder: str | Path, clips: Iterable[Clip] = CLIPS) -> list[Path]:
    folder = Path(folder)
    return [write_clip(folder / c.name, c.frames, c.fps, c.width, c.height, clip_index=k)
            for k, c in enumerate(clips)]


def make_tiny_dataset(root: str | Path, datasets: Iterable[str] | None = None) -> dict[str, Any]:
    """Write the tiny set for ``datasets`` (default: every dataset config) under ``root``.

    Clips are encoded once and copied into each ``videos/<video_dir>``. Returns a summary:
    ``{"root", "datasets": {name: {"annotation", "answer_list", "video_dir"}}, "clips"}``.
    """
    from vidtldr.data.registry import dataset_names, load_dataset_config
    from vidtldr.data.tiny_action import write_tiny_action

    root = Path(root)
    names = list(datasets) if datasets is not None else dataset_names()
    cfgs = {n: load_dataset_config(n) for n in names}
    summary: dict[str, Any] = {"root": str(root), "datasets": {}, "clips": [c.name for c in CLIPS]}
    with tempfile.TemporaryDirectory(prefix="vidtldr_tiny_") as tmp:
        encoded = encode_clips(tmp)
        for vdir in sorted({c["video_dir"] for c in cfgs.values() if c["task"] != "classification"}):
            dest = root / "videos" / vdir
            dest.mkdir(parents=True, exist_ok=True)
            for src in encoded:
                shutil.copyfile(src, dest / src.name)
        for name, cfg in cfgs.items():
            if cfg["task"] == "classification":  # own file names and formats (data/tiny_action.py)
                files = write_tiny_action(root, cfg, encoded)
                summary["datasets"][name] = {**files, "answer_list": None, "video_dir": cfg["video_dir"]}
    for name, cfg in cfgs.items():
        if cfg["task"] == "classification":
            continue
        records, answers = tiny_annotation(cfg["annotation"], cfg["reader"])
        _write_json(root / "anno_downstream" / cfg["annotation"], records)
        if cfg.get("answer_list"):
            _write_json(root / "anno_downstream" / cfg["answer_list"], answers or [])
        summary["datasets"][name] = {"annotation": cfg["annotation"], "answer_list": cfg.get("answer_list"),
                                     "video_dir": cfg["video_dir"]}
    return summary
