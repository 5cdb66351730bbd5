"""Check a dataset on disk before a run: annotation file, schema, videos, counts, checksums.

usage: vidtldr validate dataset=NAME paths.data=DIR [decode=true] [manifest=true]
                        [out=DIR] [limit=N] [progress=true]
       (also python -m vidtldr.validate, python -m vidtldr.data.validate)

Hydra overrides of ``vidtldr/configs/validate.yaml`` (the evaluation's ``dataset`` and ``paths``
groups, so ``paths.data`` also comes from ``VIDTLDR_DATA``).

Prints a human summary, then one JSON report line (also written to ``<out>/validate_<dataset>.json`` with ``out=``).
Exit status: 0 when nothing is wrong, 1 when problems were found, 2 for a usage/config error.
``decode=false`` only checks that video files exist; ``manifest=false`` skips the count and
checksum comparison (e.g. for the tiny dataset); ``limit=N`` checks the first N videos only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable

from vidtldr import jsonio
from vidtldr.data.annotations import (FILE_READERS, annotation_path, answer_list_errors, answer_list_path, build_split,
                                      describe_repeats, duplicate_records, load_json, repeated_items, schema_errors,
                                      video_root)
from vidtldr.data.manifests import count_mismatches, load_manifest, sha256_file, split_counts
from vidtldr.config_utils import check_directory_path, compose_config, plain
from vidtldr.config_values import check_settings
from vidtldr.data.registry import check_dataset_config
from vidtldr.data.video import read_frames
from vidtldr.errors import AnnotationError, VideoError, cli_guard
from vidtldr.files import atomic_write_text


def _problem(kind: str, message: str, **where: Any) -> dict[str, Any]:
    return {"kind": kind, "message": message, **{k: v for k, v in where.items() if v is not None}}


def _video_names(records: Any) -> list[str]:
    """Every video file name the records mention, first occurrence order, skipping bad fields
    (those are reported as schema errors)."""
    seen: dict[str, None] = {}
    if not isinstance(records, list):
        return []
    for rec in records:
        if not isinstance(rec, dict):
            continue
        vid = rec.get("video")
        for name in (vid if isinstance(vid, list) else [vid]):
            if isinstance(name, str):
                seen.setdefault(name, None)
    return list(seen)


def check_videos(paths: Iterable[Path], num_frames: int, trimmed30: bool, decode: bool,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Missing files, and (with ``decode``) files decord cannot open or decode at the sampled
    frames, which is what an evaluation run would read."""
    from tqdm import tqdm

    paths = list(paths)
    problems = []
    for path in tqdm(paths, desc="videos", unit="video", disable=not progress, file=sys.stderr):
        if not path.is_file():
            problems.append(_problem("missing_video", f"video not found: {path}", file=str(path)))
            continue
        if not decode:
            continue
        try:
            read_frames(path, num_frames, trimmed30)
        except VideoError as exc:
            problems.append(_problem("unreadable_video", str(exc), file=str(path)))
    return problems


def validate_dataset(cfg: dict[str, Any], data_root: str | Path, decode: bool = True, use_manifest: bool = True,
                     limit: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Run every check and return the report (``report["ok"]`` is False when anything is wrong)."""
    data_root = Path(data_root)
    reader = cfg["reader"]
    anno = annotation_path(cfg, data_root)
    report: dict[str, Any] = {"dataset": cfg.get("name"), "data_root": str(data_root), "annotation": str(anno),
                              "reader": reader, "video_root": str(video_root(cfg, data_root)),
                              "decode": decode, "counts": None, "manifest": None, "problems": [], "warnings": []}
    problems: list[dict[str, Any]] = report["problems"]
    if reader in FILE_READERS:  # whole-file formats (action recognition): the reader is the schema check
        return _validate_file_format(cfg, data_root, report, decode, use_manifest, limit, progress)

    records = _load(anno, "annotation file", problems)
    answers = None
    if reader == "qa":
        ans_path = answer_list_path(cfg, data_root)
        answers = _load(ans_path, "answer list", problems) if ans_path else None
        if answers is not None:
            for idx, fld, msg in answer_list_errors(answers):
                problems.append(_problem("schema", msg, file=str(ans_path), record=idx, field=fld))

    split = None
    if records is not None:
        errs = schema_errors(records, reader)
        for idx, fld, msg in errs:
            problems.append(_problem("schema", msg, file=str(anno), record=idx, field=fld))
        for idx, first in duplicate_records(records):
            problems.append(_problem("duplicate", f"identical to record {first}", file=str(anno),
                                     record=idx))
        if not errs and not any(p["kind"] == "schema" for p in problems):
            split = build_split(records, reader, video_root(cfg, data_root), answers, source=anno)
            report["counts"] = split_counts(split)
            what, repeated = repeated_items(split)
            if repeated:  # the official reader keeps them too: a warning, counted, not a failure
                report["counts"][f"repeated_{what}s"] = sum(n - 1 for n in repeated.values())
                report["warnings"].append(describe_repeats(what, repeated))

    names = _video_names(records)
    report["num_video_files"] = len(names)
    if limit is not None:
        names = names[:limit]
    report["num_video_files_checked"] = len(names)
    trimmed = bool(cfg.get("trimmed30"))  # a task that reads whole videos refuses trimmed30 (run.runspec)
    problems.extend(check_videos((video_root(cfg, data_root) / n for n in names), int(cfg["num_frames"]),
                                 trimmed, decode, progress))

    if use_manifest and records is not None:
        _check_manifest(cfg, anno, answer_list_path(cfg, data_root) if reader == "qa" else None, report)
    report["num_problems"] = len(problems)
    report["ok"] = not problems
    return report


def _validate_file_format(cfg: dict[str, Any], data_root: Path, report: dict[str, Any], decode: bool,
                          use_manifest: bool, limit: int | None, progress: bool) -> dict[str, Any]:
    """A dataset read by a whole-file reader (list file, Kinetics CSV, SSv2 JSON): the reader's own
    errors (file, line or record named), then the videos, counts and manifest as for the others."""
    from vidtldr.data.annotations import load_split

    anno = Path(report["annotation"])
    names: list[str] = []
    try:
        split = load_split(cfg, data_root)
    except AnnotationError as exc:
        kind = "missing_annotation" if not anno.is_file() else "schema"
        report["problems"].append(_problem(kind, str(exc), file=str(anno)))
    else:
        report["counts"] = split_counts(split)
        names = list(dict.fromkeys(split.video_names))
    report["num_video_files"] = len(names)
    names = names if limit is None else names[:limit]
    report["num_video_files_checked"] = len(names)
    report["problems"].extend(check_videos((video_root(cfg, data_root) / n for n in names), int(cfg["num_frames"]),
                                           False, decode, progress))
    if use_manifest and report["counts"] is not None:
        _check_manifest(cfg, anno, None, report)
    report["num_problems"] = len(report["problems"])
    report["ok"] = not report["problems"]
    return report


def _load(path: Path, what: str, problems: list[dict[str, Any]]) -> Any:
    try:
        return load_json(path, what)
    except AnnotationError as exc:
        kind = "missing_annotation" if not path.is_file() else "invalid_json"
        problems.append(_problem(kind, str(exc), file=str(path)))
        return None


def _check_manifest(cfg: dict[str, Any], anno: Path, answers: Path | None, report: dict[str, Any]) -> None:
    manifest = load_manifest(cfg["annotation"])
    if manifest is None:
        return
    report["manifest"] = manifest["_path"]
    if report["counts"] is not None:
        for msg in count_mismatches(manifest.get("expected"), report["counts"]):
            report["problems"].append(_problem("count_mismatch", msg, file=manifest["_path"]))
    sums = manifest.get("checksums") or {}
    for key, path in (("annotation_sha256", anno), ("answer_list_sha256", answers)):
        want = sums.get(key)
        if want and path is not None and path.is_file():
            got = sha256_file(path)
            if got != want:
                report["problems"].append(_problem("checksum_mismatch", f"{path.name}: sha256 {got}, manifest "
                                                   f"expects {want}", file=str(path)))


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"dataset {report['dataset']}: annotation {report['annotation']} (reader {report['reader']})",
             f"videos under {report['video_root']}: {report['num_video_files_checked']} of "
             f"{report['num_video_files']} checked ({'decoded' if report['decode'] else 'existence only'})"]
    if report["counts"]:
        lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in report["counts"].items()))
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for p in report["problems"]:
        by_kind.setdefault(p["kind"], []).append(p)
    for kind, items in by_kind.items():
        lines.append(f"{kind}: {len(items)}")
        for p in items[:10]:
            where = f"record {p['record']}" + (f", field {p['field']!r}" if "field" in p else "") + ": " \
                if "record" in p else ""
            lines.append(f"  {where}{p['message']}")
        if len(items) > 10:
            lines.append(f"  ... and {len(items) - 10} more (see the JSON report)")
    lines.extend(f"warning: {w}" for w in report.get("warnings", []))
    lines.append("OK: no problems found" if report["ok"] else f"FAILED: {report['num_problems']} problem(s)")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    with cli_guard("vidtldr.data.validate"):
        from vidtldr.entry import check_renamed

        check_renamed("validate", argv)  # report=FILE became out=DIR
        cfg = compose_config(argv, config_name="validate")
        if cfg.out:
            check_directory_path("out", cfg.out, writable=True)  # before the videos are decoded
        check_settings(cfg, flags=("decode", "manifest"))
        dataset = plain(cfg.dataset)
        check_dataset_config(dataset, f"dataset={dataset.get('name')}")
        progress = sys.stderr.isatty() if cfg.progress is None else bool(cfg.progress)
        report = validate_dataset(dataset, str(cfg.paths.data), decode=bool(cfg.decode),
                                  use_manifest=bool(cfg.manifest), limit=cfg.limit, progress=progress)
        for line in summary_lines(report):
            print(line)
        text = jsonio.dumps(report, ensure_ascii=True)
        if cfg.out:
            atomic_write_text(Path(str(cfg.out)) / f"validate_{dataset.get('name')}.json",
                              jsonio.dumps(report, indent=1, ensure_ascii=True) + "\n")
        print(text)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
