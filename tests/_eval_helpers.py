"""Shared helpers for the evaluation-runner tests: compose the Hydra config in-process and run."""

from __future__ import annotations

import json
from pathlib import Path

from vidtldr.config_utils import compose_config


def make_cfg(tmp_cache: Path, *overrides: str, config_name: str = "config"):
    """The composed config of ``config_name`` (the evaluation's by default) with caches under
    ``tmp_cache`` (tiny data is generated there once)."""
    return compose_config([f"paths.cache={tmp_cache}", f"paths.runs={tmp_cache / 'runs'}", *overrides],
                          config_name=config_name)


def read(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "record.json").read_text())


# Fields that legitimately differ between two runs of the same thing.
# "cost" holds seconds, and the work of data-parallel ranks (each computes the text parts it needs).
VOLATILE = ("created", "finished", "timings", "cache", "run_dir", "command", "host", "pid", "git", "config", "wandb",
            "cost")


def stable_view(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k not in VOLATILE}
    counts = dict(out.get("counts", {}))
    for key in ("videos_decoded", "videos_from_cache"):
        counts.pop(key, None)
    out["counts"] = counts
    # Where the data and caches live is not part of what was computed.
    out["checksums"] = {k: (None if v is None else {f: x for f, x in v.items() if f != "path"})
                        for k, v in out.get("checksums", {}).items()}
    # Nor how it was executed (batch sizes, token store, cache folders: resolved.settings).
    out["resolved"] = {k: v for k, v in out.get("resolved", {}).items() if k not in ("data_root", "settings")}
    return out
