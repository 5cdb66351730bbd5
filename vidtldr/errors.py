"""Typed exceptions. Library code raises these; command-line entry points turn them into one
clear message and a non-zero exit (see :func:`vidtldr.errors.cli_guard`)."""

from __future__ import annotations

import contextlib
import errno
import os
import sys


class VidtldrError(Exception):
    """Base class: a user-facing problem whose message names the file, key or value at fault."""


class ConfigError(VidtldrError):
    """A configuration value is missing, malformed or inconsistent."""


class ScheduleError(ConfigError):
    """A token-reduction schedule (``merge.r``) is malformed."""


class CheckpointError(VidtldrError):
    """A checkpoint file cannot be read or does not match the model."""


class AnnotationError(VidtldrError):
    """An annotation file is missing, is not valid JSON, or breaks the expected schema."""


class VideoError(VidtldrError):
    """A video file is missing, unreadable or decodes to unexpected data."""


class MissingFilesError(VidtldrError):
    """Files needed for a run are absent; the message lists all of them and where to get them."""


class RunDirError(VidtldrError):
    """The run directory already holds a complete record (it is never replaced silently)."""


class CacheError(VidtldrError):
    """A cache file is damaged and cannot be repaired by recomputing it; the message names the
    file and the command that clears it."""


class DiskFullError(VidtldrError):
    """A write failed for lack of space; nothing half-written was left in place."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        super().__init__(f"no space left on the device holding {self.path}; free some space (or point "
                         "paths.cache / hydra.run.dir elsewhere) and re-run: finished work was kept")


def is_disk_full(exc: BaseException) -> bool:
    """An ``OSError`` for a full device or an exhausted quota (torch wraps these in RuntimeErrors
    whose text is all that is left of them)."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, RuntimeError) and "No space left on device" in str(exc)


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM (what a batch scheduler sends at its time limit) during a run: both end it
    the same way, with status ``interrupted`` and the finished cache shards kept."""

    def __init__(self, signal_name: str = "SIGINT", signum: int = 2):
        self.signal_name, self.signum = signal_name, signum
        super().__init__(signal_name)

    def __str__(self) -> str:
        return f"interrupted by {self.signal_name}"


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (what a record's ``error`` field holds)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def permission_message(exc: OSError) -> str:
    """One line for a file or folder the process may not write (or read): which, and what to do."""
    where = exc.filename or "a file"
    return (f"permission denied: {where}: choose a folder this user can write (hydra.run.dir=, paths.cache=, "
            "paths.runs=, or the command's output option), or change the folder's permissions")


@contextlib.contextmanager
def cli_guard(prog: str):
    """Turn a :class:`VidtldrError` into ``prog: error: <message>`` on stderr and exit status 2
    (likewise a PermissionError: an unwritable run folder or cache is the user's setting, not a bug);
    an interruption into one line and the shell's status for the signal (130 SIGINT, 143 SIGTERM)."""
    try:
        yield
    except VidtldrError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except PermissionError as exc:
        print(f"{prog}: error: {permission_message(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt as exc:
        name, signum = (exc.signal_name, exc.signum) if isinstance(exc, RunInterrupted) else ("SIGINT", 2)
        print(f"{prog}: interrupted by {name}; finished work (cached features) was kept: re-run the same "
              "command to resume", file=sys.stderr)
        raise SystemExit(128 + signum) from None
