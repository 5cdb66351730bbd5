"""Writing files: atomically, and with the permissions the process umask allows.

Every file the project writes (``record.json``, ``results/*``, tune outputs, cache shards, generated
data) goes through :func:`atomic_output` (or its wrappers :func:`atomic_write_bytes` and
:func:`atomic_write_text`): readers see the old file or
the complete new one, never half of it. The temporary file is created like any ``open(path, "w")``
(mode 0666 minus the umask), so a cache or results folder shared by a group stays readable by it
when the umask allows (``umask 002``), and private when the umask says so (``umask 077``)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator, Optional

from vidtldr.errors import DiskFullError, is_disk_full

# What a plain open(..., "w") asks for; the kernel removes the umask's bits.
_FILE_MODE = 0o666


def _temp_name(path: Path, suffix: str) -> Path:
    """A hidden name beside ``path``, unique per call (two writers of one file never share it)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


def _create_temp(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    """Open a new temporary file beside ``path`` for writing, mode 0666 minus the umask (unlike
    ``tempfile.mkstemp``, whose 0600 ignores it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = _temp_name(path, suffix)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), _FILE_MODE), tmp
        except FileExistsError:  # a leftover of the same pid and random name: draw again
            continue


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a new temporary file beside ``path`` (ending in ``suffix``, by default ``path``'s own, so
    that a writer choosing its format by extension still can), flushed to the disk and moved onto
    ``path`` when the block ends without error, removed otherwise (including on KeyboardInterrupt):
    readers see the old file or the complete new one. A full disk is a :class:`DiskFullError`
    naming ``path``. The one implementation of an atomic write (bytes, text, encoders, images)."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = _create_temp(path, suffix or path.suffix)
        os.close(fd)
        yield tmp
        _sync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if is_disk_full(exc):
            raise DiskFullError(path) from None
        raise


def _sync(path: Path) -> None:
    """Flush ``path``'s data to the disk before it is renamed into place (a crash right after the
    rename must not leave an empty file under the final name)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`."""
    with atomic_output(path, ".tmp") as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_report_files(folder: Path, texts: dict[str, tuple[str, str]], plot_stem: Optional[str] = None,
                       draw: Optional[Callable[[Path, Path], None]] = None) -> dict[str, str]:
    """A command's report beside its record: ``texts`` ``{output key: (file name, content)}`` written
    atomically, then (``plot_stem``) ``draw(png, svg)`` into ``<plot_stem>.png``/``.svg``; returns
    ``{output key: path}`` with ``plot_png``/``plot_svg`` for the plot."""
    out = {}
    for key, (name, text) in texts.items():
        atomic_write_text(folder / name, text)
        out[key] = str(folder / name)
    if plot_stem is not None and draw is not None:
        png, svg = folder / f"{plot_stem}.png", folder / f"{plot_stem}.svg"
        draw(png, svg)
        out.update(plot_png=str(png), plot_svg=str(svg))
    return out


def temp_dir_beside(path: str | os.PathLike) -> Path:
    """A new hidden directory beside ``path`` to fill and then rename onto it, mode 0777 minus the
    umask (unlike ``tempfile.mkdtemp``, whose 0700 would make the renamed folder private)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            tmp.mkdir(mode=0o777)
            return tmp
        except FileExistsError:
            continue
