"""Split manifests (``data_manifests/<annotation stem>.yaml``): expected counts and checksums
where known, provenance and quirks. See data_manifests/README.md."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vidtldr.config_utils import CONFIG_DIR
from vidtldr.errors import ConfigError

MANIFEST_DIR = CONFIG_DIR.parent / "data_manifests"


def manifest_path(annotation: str) -> Path:
    return MANIFEST_DIR / f"{Path(annotation).stem}.yaml"


def load_manifest(annotation: str) -> dict[str, Any] | None:
    """The manifest for an annotation file name, or None when the split has none."""
    import yaml

    path = manifest_path(annotation)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping")
    data["_path"] = str(path)
    return data


def split_counts(split: Any) -> dict[str, int]:
    """Counts in the manifest's terms (data_manifests/README.md)."""
    if getattr(split, "task", "") == "classification":
        return {"records": len(split.videos), "videos": len(set(split.video_names)),
                "classes": len(set(split.labels))}
    if getattr(split, "task", "") == "qa":
        return {"records": len(split.questions), "videos": len(set(split.video_names)),
                "questions": len(split.questions)}
    records = len(split.texts) if split.multi_video_gt else len(split.videos)
    return {"records": records, "videos": len(split.videos), "texts": len(split.texts)}


def count_mismatches(expected: dict[str, Any] | None, counts: dict[str, int]) -> list[str]:
    out = []
    for key, want in (expected or {}).items():
        if want is not None and key in counts and counts[key] != want:
            out.append(f"{key}: found {counts[key]}, manifest expects {want}")
    return out


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
