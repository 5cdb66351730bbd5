"""Caption cleaning, equivalent to the official ``dataset.utils.pre_text`` (docs/protocol.md section 3).

Every quirk is intentional: the official eval datasets call it with ``max_l=None``, so there is
no word truncation, and a single tab / newline / NBSP survives because only runs of two or more
whitespace characters collapse.
"""

from __future__ import annotations

import re

# Characters the official cleaning deletes outright (after lower-casing).
_DELETED = re.compile(r"[,.'!?\"()*#:;~]")
# Runs of >= 2 Unicode whitespace characters become one space; a single one is left alone.
_WHITESPACE_RUN = re.compile(r"\s{2,}")


def pre_text(text: str) -> str:
    """Clean one caption or question exactly like the official eval datasets do."""
    out = _DELETED.sub("", text.lower())
    # "-" and "/" become spaces before "<person>" is unwrapped, so "<person/>" -> "<person >".
    out = out.replace("-", " ").replace("/", " ").replace("<person>", "person")
    out = _WHITESPACE_RUN.sub(" ", out)
    # rstrip("\n") first, then strip(" "): a leading "\n" or a trailing lone tab survives.
    return out.rstrip("\n").strip(" ")
