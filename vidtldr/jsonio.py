"""The one way the project turns data into JSON: strict JSON only.

Python's ``json`` writes ``NaN`` and ``Infinity`` by default, which no strict JSON reader accepts
(``jq``, JavaScript, most languages). Every record, table, summary line and cache key goes through
:func:`dumps`: a float that is not finite becomes ``null`` (an undefined value, which is what it
means here) and ``allow_nan=False`` guarantees nothing else slips through.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, +-inf) replaced by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``obj`` as strict JSON (non-finite floats as null); keywords as json.dumps."""
    kwargs.pop("allow_nan", None)
    default = kwargs.pop("default", None)

    def fallback(value: Any) -> Any:
        # an object json cannot write (a numpy or torch scalar, a Path) is converted, then made finite
        if default is None:
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
        return finite_or_none(default(value))

    return json.dumps(finite_or_none(obj), allow_nan=False, default=fallback, **kwargs)
