"""Compare this package's data side against a fixture folder of the ``data_formats`` layout.

Everything is discovered from the folder: format folders are the sub-folders holding
``annotation.json`` + ``expected.json``; their reader follows from ``flags.json``; videos and
sampling settings come from ``frames_expected.pt`` / ``.json``. Tolerances follow the fixture
README: strings, ids, indices, frame counts, decoded frames and uint8 resize hashes are exact;
float transform outputs use atol 1e-5.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from vidtldr import jsonio
from vidtldr.data.annotations import build_split, load_json
from vidtldr.data.text import pre_text
from vidtldr.data.transforms import eval_transform, resize_uint8
from vidtldr.data.video import decode_indices, open_video, plan_frames

ATOL = 1e-5


@dataclass
class Item:
    """One compared quantity; ``ok`` False is a mismatch beyond tolerance."""

    group: str
    name: str
    ok: bool
    detail: str = ""

    def line(self) -> str:
        return f"{'OK  ' if self.ok else 'FAIL'} {self.group}: {self.name}" + (f" ({self.detail})" if self.detail else "")


def _eq(group: str, name: str, got: Any, want: Any) -> Item:
    if got == want:
        return Item(group, name, True)
    return Item(group, name, False, f"got {_short(got)}, expected {_short(want)}")


def _short(value: Any, n: int = 160) -> str:
    text = jsonio.dumps(value, ensure_ascii=True) if not isinstance(value, str) else ascii(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


# ----------------------------------------------------------------------------- text


def check_pre_text(path: Path) -> Iterator[Item]:
    for k, case in enumerate(load_json(path)["cases"]):
        got = pre_text(case["raw"])
        yield _eq("pre_text", f"case {k} {ascii(case['raw'][:40])}", got, case["pre_text"])


# ----------------------------------------------------------------------------- formats


def format_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and (p / "annotation.json").is_file() and (p / "expected.json").is_file())


def reader_for(flags: dict[str, Any], folder: Path) -> str:
    """The reader that matches the official flags the fixture was built with."""
    if flags.get("dataset_type") == "qa_eval" or (folder / "answer_list.json").is_file():
        return "qa"
    if flags.get("has_multi_vision_gt"):
        return "multi_video_gt"
    if flags.get("is_paragraph_retrieval"):
        return "paragraph"
    return "caption"


def check_format(folder: Path, settings: dict[str, Any] | None = None) -> Iterator[Item]:
    group = f"format {folder.name}"
    flags = load_json(folder / "flags.json") if (folder / "flags.json").is_file() else {}
    expected = load_json(folder / "expected.json")
    reader = reader_for(flags, folder)
    records = load_json(folder / "annotation.json")
    answers = load_json(folder / "answer_list.json") if reader == "qa" else None
    # Video names are compared relative to the root, as expected.json stores them.
    split = build_split(records, reader, "", answers, source=folder / "annotation.json")
    yield Item(group, f"reader {reader}", True)
    if reader == "qa":
        yield from _check_qa(group, split, expected)
    else:
        yield _eq(group, "text", split.texts, expected["text"])
        yield _eq(group, "image", split.video_names, expected["image"])
        yield _eq(group, "txt2img", split.txt2img, expected["txt2img"])
        yield _eq(group, "img2txt", split.img2txt, expected["img2txt"])
        if "len_dataset" in expected:
            yield _eq(group, "len_dataset", len(split.videos), expected["len_dataset"])
        for g in expected.get("getitem", []):
            yield _eq(group, f"getitem {g['index']} video", split.video_names[g["index"]], g["video"])
    yield from _check_frames_key(group, flags, expected, settings or {})


def _check_qa(group: str, split, expected: dict[str, Any]) -> Iterator[Item]:
    yield _eq(group, "answer_list", split.answer_list, expected["answer_list"])
    yield _eq(group, "len_dataset", len(split), expected.get("len_dataset", len(expected["anno_list"])))
    yield _eq(group, "videos", split.video_names, [a["video"] for a in expected["anno_list"]])
    yield _eq(group, "answers", split.answers, [a["answer"] for a in expected["anno_list"]])
    gi = expected.get("getitem", [])
    yield _eq(group, "questions", [split.questions[g["index"]] for g in gi], [g["question"] for g in gi])
    yield _eq(group, "question_ids", [split.question_ids[g["index"]] for g in gi], [g["question_id"] for g in gi])
    yield _eq(group, "question_id types", [type(split.question_ids[g["index"]]).__name__ for g in gi],
              [g["question_id_type"] for g in gi])
    cap = expected.get("vqa_evaluation_capture")
    if cap:
        # The official loop tokenizes the cleaned questions in loader (= file) order.
        seen = [t for call in cap["tokenizer_calls"] if call["kwargs"].get("max_length") != 5 for t in call["texts"]]
        yield _eq(group, "questions handed to the tokenizer", split.questions, seen)
        answer_texts = [t for call in cap["tokenizer_calls"] if call["kwargs"].get("max_length") == 5 for t in call["texts"]]
        eos = " [SEP]"
        yield _eq(group, "answer texts handed to the tokenizer", [a + eos for a in split.answer_list], answer_texts)


def _check_frames_key(group: str, flags: dict[str, Any], expected: dict[str, Any],
                      settings: dict[str, Any]) -> Iterator[Item]:
    """Each item's recorded frame setting must be the (num_frames, trimmed30) our dataset uses for
    a config with these flags (QA never trims)."""
    keys = sorted({g.get("frames_key") for g in expected.get("getitem", [])} - {None})
    if not keys or "num_frames_test" not in flags:
        return
    qa = flags.get("dataset_type") == "qa_eval"
    ours = {"num_frames": int(flags["num_frames_test"]), "trimmed30": bool(flags.get("trimmed30")) and not qa}
    for key in keys:
        if key not in settings:
            yield Item(group, f"frame setting {key}", True, "setting not described in frames_expected.json; not compared")
            continue
        theirs = {"num_frames": int(settings[key]["num_frames"]), "trimmed30": bool(settings[key]["trimmed30"])}
        yield _eq(group, f"frame setting {key}", ours, theirs)


# ----------------------------------------------------------------------------- frames


def check_frames(root: Path) -> Iterator[Item]:
    pt = root / "frames_expected.pt"
    if not pt.is_file():
        return
    data = torch.load(pt, weights_only=True)
    summary = load_json(root / "frames_expected.json") if (root / "frames_expected.json").is_file() else {}
    grid = data["grid"]
    video_dir = root / "videos"
    for name, vd in data["videos"].items():
        jd = summary.get("videos", {}).get(name, {})
        yield from _check_video(video_dir / name, name, vd, jd, grid)
    for ex in data.get("full_examples", []):
        yield from _check_full_example(data, ex)
    listed = set(data["videos"])
    for extra in sorted(p.name for p in video_dir.glob("*") if p.is_file() and p.name not in listed):
        yield Item("frames", f"{extra}", True, "no expectations recorded; not compared")


def _check_video(path: Path, name: str, vd: dict[str, Any], jd: dict[str, Any], grid: torch.Tensor) -> Iterator[Item]:
    group = f"video {name}"
    try:
        vr = open_video(path)
    except Exception as exc:  # report and go on with the other videos
        yield Item(group, "open", False, str(exc))
        return
    yield _eq(group, "decord len", len(vr), vd["decord_vlen"])
    fps = float(vr.get_avg_fps())
    yield Item(group, "decord fps", abs(fps - vd["decord_fps"]) <= 1e-9, f"got {fps}, expected {vd['decord_fps']}")
    for sname, sd in vd["settings"].items():
        sg = f"{group} {sname}"
        plan = plan_frames(vr, path, int(sd["num_frames"]), bool(sd["trimmed30"]))
        yield _eq(sg, "vlen_used", plan.vlen_used, int(sd["vlen_used"]))
        yield _eq(sg, "indices", plan.indices, sd["indices"].tolist())
        raw = sd["raw_u8"]
        try:
            frames = decode_indices(vr, path, plan.indices)
            same = frames.shape == raw.shape and torch.equal(frames, raw)
            detail = "" if same else f"max abs diff {_max_diff(frames, raw)}"
            yield Item(sg, "decoded frames == raw_u8", same, detail)
        except Exception as exc:
            yield Item(sg, "decoded frames == raw_u8", False, str(exc))
        yield from _check_transform(sg, raw, sd, jd.get("settings", {}).get(sname, {}), grid)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> str:
    if a.shape != b.shape:
        return f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    return str((a.int() - b.int()).abs().max().item())


def _close(group: str, name: str, got: torch.Tensor, want: torch.Tensor) -> Item:
    if got.shape != want.shape:
        return Item(group, name, False, f"shape {tuple(got.shape)} vs {tuple(want.shape)}")
    diff = (got.double() - want.double()).abs().max().item()
    return Item(group, name, diff <= ATOL, f"max abs diff {diff:.3g}")


def _check_transform(group: str, raw: torch.Tensor, sd: dict[str, Any], jd: dict[str, Any], grid: torch.Tensor) -> Iterator[Item]:
    resized = resize_uint8(raw)
    out = eval_transform(raw)
    yield _close(group, "out_grid", out[:, :, grid][:, :, :, grid], sd["out_grid"])
    yield _close(group, "out_mean", out.double().mean((2, 3)), sd["out_mean"])
    yield _close(group, "out_meansq", out.double().pow(2).mean((2, 3)), sd["out_meansq"])
    if "resized_u8_sha256" in jd:
        yield _eq(group, "resized_u8 sha256", _sha(resized), jd["resized_u8_sha256"])
    if "out_float32_sha256" in jd:
        yield _eq(group, "out float32 sha256", _sha(out), jd["out_float32_sha256"])


def _check_full_example(data: dict[str, Any], ex: dict[str, Any]) -> Iterator[Item]:
    sd = data["videos"][ex["video"]]["settings"][ex["setting"]]
    frame = sd["raw_u8"][ex["frame_pos"]: ex["frame_pos"] + 1]
    group = f"full example {ex['video']} {ex['setting']} frame {ex['frame_pos']}"
    if "out" in ex:
        yield _close(group, "out [3,224,224]", eval_transform(frame)[0], ex["out"])
    if "resized_u8" in ex:
        got = resize_uint8(frame)[0]
        yield Item(group, "resized_u8 [3,224,224] exact", torch.equal(got, ex["resized_u8"]),
                   f"max abs diff {_max_diff(got, ex['resized_u8'])}")


def check_decoder(root: Path, decoder: str) -> Iterator[Item]:
    """Another decoder (``data.decoder``) against the official reader's recorded frames: frame count,
    indices and the raw uint8 frames of every video and setting, exactly."""
    from vidtldr.data.decoders import read_with

    pt = root / "frames_expected.pt"
    if not pt.is_file():
        return
    data = torch.load(pt, weights_only=True)
    for name, vd in data["videos"].items():
        for sname, sd in vd["settings"].items():
            group = f"{decoder} {name} {sname}"
            try:
                frames, info = read_with(decoder, root / "videos" / name, int(sd["num_frames"]), bool(sd["trimmed30"]))
            except Exception as exc:  # report and go on with the other videos
                yield Item(group, "read", False, str(exc))
                continue
            yield _eq(group, "frame count", info.num_video_frames, vd["decord_vlen"])
            yield _eq(group, "indices", info.indices, sd["indices"].tolist())
            same = frames.shape == sd["raw_u8"].shape and torch.equal(frames, sd["raw_u8"])
            yield Item(group, "frames == raw_u8", same, "" if same else f"max abs diff {_max_diff(frames, sd['raw_u8'])}")


# ----------------------------------------------------------------------------- driver


def run_parity(fixture_dir: str | Path, decoder: str = "decord") -> list[Item]:
    """Every comparison of the folder; with another ``decoder``, its frames against the recorded ones too."""
    root = Path(fixture_dir)
    items: list[Item] = []
    if (root / "pre_text_cases.json").is_file():
        items.extend(check_pre_text(root / "pre_text_cases.json"))
    fj = root / "frames_expected.json"
    settings = load_json(fj).get("settings", {}) if fj.is_file() else {}
    for folder in format_folders(root):
        try:
            items.extend(check_format(folder, settings))
        except Exception as exc:  # one broken folder must not hide the others' results
            items.append(Item(f"format {folder.name}", "build", False, f"{type(exc).__name__}: {exc}"))
    items.extend(check_frames(root))
    if decoder != "decord":
        items.extend(check_decoder(root, decoder))
    return items
