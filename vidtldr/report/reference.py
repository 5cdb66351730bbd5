"""The paper's numbers: one file, ``vidtldr/report/paper_reference.csv`` (package data), one row per
number with its provenance; lookups by (table, setting, dataset, backbone, method, metric)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from vidtldr.errors import ConfigError

REFERENCE_CSV = Path(__file__).resolve().parent / "paper_reference.csv"
COLUMNS = ("table", "setting", "dataset", "backbone", "method", "metric", "value", "provenance")


def load_reference(path: str | Path = REFERENCE_CSV) -> pd.DataFrame:
    """The reference sheet; a missing file or column is a :class:`ConfigError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"paper reference table not found: {path}")
    ref = pd.read_csv(path, dtype={"value": float}, keep_default_na=False, na_values=[""])
    missing = set(COLUMNS) - set(ref.columns)
    if missing:
        raise ConfigError(f"{path}: missing columns {sorted(missing)}")
    return ref


def paper_value(ref: pd.DataFrame | None, tables: Sequence[str], setting: str, dataset: str, backbone: str,
                method: str, metric: str) -> tuple[float | None, str | None]:
    """(value, provenance) of the paper's number for one cell, from the first of ``tables`` that has
    it, or (None, None)."""
    if ref is None or ref.empty:
        return None, None
    for table in tables:
        hit = ref[(ref["table"] == table) & (ref["setting"] == setting) & (ref["dataset"] == dataset)
                  & (ref["backbone"] == backbone) & (ref["method"] == method) & (ref["metric"] == metric)]
        if not hit.empty:
            return float(hit.iloc[0]["value"]), str(hit.iloc[0]["provenance"])
    return None, None


def reference_gflops(ref: pd.DataFrame | None, setting: str, dataset: str, backbone: str, method: str
                     ) -> tuple[float | None, str | None]:
    """The paper's GFLOPs (Figure 1) where printed, else the recount of the published schedule,
    else (for the baseline) the backbone's count for every task."""
    value, prov = paper_value(ref, ("fig1", "gflops"), setting, dataset, backbone, method, "gflops")
    if value is None and method == "none":
        value, prov = paper_value(ref, ("gflops",), setting, "all", backbone, "none", "gflops")
    return value, prov
