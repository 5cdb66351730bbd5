"""Typed exceptions. Library code raises these; command-line entry points turn them into one
clear message and a non-zero exit (see :func:`vidtldr.errors.cli_guard`)."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def cli_guard(prog: str):
    """Turn a :class:`VidtldrError` into ``prog: error: <message>`` on stderr and exit status 2."""
    try:
        yield
    except VidtldrError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
