"""One JSON record per run: what ran, on what, with which code, and what came out.

Tables are built from these records only (``vidtldr.report.results``), so a record must carry everything
a table row needs: the identity of the run (dataset, backbone, reducer, resolved schedule), whether
it was complete or partial, provenance (git commit, package versions, checksums) and the numbers
(metrics, GFLOPs, token counts).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

from vidtldr import jsonio
from vidtldr.errors import RunDirError
from vidtldr.files import atomic_write_text
from vidtldr.provenance import package_versions

RECORD_NAME = "record.json"
# Files of a finished run that eval.overwrite=true moves aside (never deletes).
RUN_OUTPUTS = (RECORD_NAME, "predictions.json")
SCHEMA_VERSION = 1

def git_info(repo: str | os.PathLike | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the source tree that holds this package (None outside git).

    Only a checkout that tracks the package's own files counts: a wheel installed into a virtual
    environment that happens to sit inside some other git checkout must not report that checkout's
    commit."""
    package = Path(__file__).resolve().parent.parent
    where = Path(repo) if repo is not None else package

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                                 timeout=20, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is not None and repo is None and git("ls-files", "--error-unmatch", "__init__.py") is None:
        commit = None  # the package's files are not tracked here
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def sha256_file(path: str | os.PathLike, *, memo_dir: str | os.PathLike | None = None) -> str:
    """sha256 of a file. With ``memo_dir`` the digest is remembered per (absolute path, inode, size,
    mtime, ctime), so a multi-GB checkpoint is hashed once, not on every run; any write to the file
    changes its ctime, so a file replaced even with its size and mtime kept is hashed again. A
    damaged memo is ignored and rewritten."""
    path = Path(path)
    stat = path.stat()
    memo_file = None
    ident = f"{path.resolve()}|{stat.st_ino}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}"
    if memo_dir is not None:
        memo_file = Path(memo_dir) / "checksums" / (hashlib.sha1(ident.encode()).hexdigest() + ".txt")
        try:
            cached = memo_file.read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            cached = []
        if (len(cached) == 2 and cached[1] == hashlib.sha1(ident.encode()).hexdigest() and len(cached[0]) == 64
                and all(c in "0123456789abcdef" for c in cached[0])):
            return cached[0]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    if memo_file is not None:
        atomic_write_text(memo_file, f"{value} {hashlib.sha1(ident.encode()).hexdigest()}\n")
    return value


def file_entry(path: str | os.PathLike | None, *, memo_dir=None) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    return {"path": str(path), "bytes": path.stat().st_size,
            "sha256": sha256_file(path, memo_dir=memo_dir)}


def folder_entry(path: str | os.PathLike, *, memo_dir=None) -> dict:
    """A checkpoint that is a folder (a Hugging Face model: config.json + weights): the sha256 of each
    file in it, and one ``sha256`` over their names and digests (what cache keys use)."""
    path = Path(path)
    files = {p.name: sha256_file(p, memo_dir=memo_dir) for p in sorted(path.iterdir()) if p.is_file()}
    combined = hashlib.sha256("".join(f"{name}\0{digest}\n" for name, digest in files.items()).encode())
    return {"path": str(path), "bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file()),
            "files": files, "sha256": combined.hexdigest()}


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def command_line() -> str | None:
    """How this process was started, e.g. ``python -m vidtldr.eval model=umt_b``."""
    if not sys.argv:
        return None
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None and spec.name else Path(sys.argv[0]).name
    return " ".join([program, *sys.argv[1:]])


def base_record() -> dict:
    """The fields every record has, filled with what is known before the run starts."""
    return {
        "schema": SCHEMA_VERSION,
        "created": now_iso(),
        "command": command_line(),
        "host": platform.node(),
        "git": git_info(),
        "versions": package_versions(),
    }


def write_record(run_dir: str | os.PathLike, record: dict) -> Path:
    path = Path(run_dir) / RECORD_NAME
    atomic_write_text(path, jsonio.dumps(record, indent=1, sort_keys=False, default=_json_default) + "\n")
    return path


def read_existing(run_dir: str | os.PathLike) -> dict | None:
    """The record in ``run_dir``, or None when there is none or it cannot be parsed."""
    try:
        with open(Path(run_dir) / RECORD_NAME, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_complete(record: dict | None) -> bool:
    return bool(record) and record.get("status") == "complete"


def protect_finished(run_dir: str | os.PathLike, *, overwrite: bool, move: bool = True) -> Path | None:
    """A run directory that holds a complete record is never reused silently: refuse (RunDirError)
    unless ``overwrite``, which moves the finished run's outputs aside as
    ``record.replaced-<UTC time>.json`` (returned; ``move=False`` leaves that to another rank).
    Failed, interrupted or unreadable records are simply replaced by the new run."""
    run_dir = Path(run_dir)
    old = read_existing(run_dir)
    if not is_complete(old):
        return None
    path = run_dir / RECORD_NAME
    if not overwrite:
        raise RunDirError(f"{path} holds a complete record (finished {old.get('finished')}); it is never "
                          "replaced silently: choose another hydra.run.dir, or pass eval.overwrite=true to keep "
                          "it as record.replaced-<time>.json and run again")
    if not move:
        return None
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    aside = None
    for name in RUN_OUTPUTS:
        source = run_dir / name
        if source.is_file():
            target = source.with_name(f"{source.stem}.replaced-{stamp}{source.suffix}")
            os.replace(source, target)
            aside = aside or target
    return aside


def write_unless_complete(run_dir: str | os.PathLike, record: dict) -> bool:
    """Write a failed / interrupted record, unless the file on disk is already complete (a finished
    record is never replaced by a worse one, e.g. when a signal arrives just after it was written)."""
    if is_complete(read_existing(run_dir)):
        return False
    write_record(run_dir, record)
    return True


def _json_default(value: Any):
    # numpy / torch scalars and paths show up in metrics and configs.
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def read_record(path: str | os.PathLike) -> dict:
    with open(path, encoding="utf-8") as handle:
        record = json.load(handle)
    record.setdefault("_path", str(path))
    return record


def find_records(roots: Iterable[str | os.PathLike]) -> list[Path]:
    """Every ``record.json`` under the given directories (or the files themselves), sorted."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(sorted(root.rglob(RECORD_NAME)))
    return found
