"""Strict readers of configuration values, and the one check every command runs before it builds a
model: booleans are ``true``/``false`` only, numbers are numbers in their range, named options are
one of their options, and no key is given that nothing reads.

Why strict: Python's ``bool("no")`` is ``True`` and ``float("abc")`` is a traceback, so a loose
reader turns ``eval.overwrite=no`` into "replace the complete record" and ``budget.gflops=abc``
into a stack trace after the model was built. Every mistake here is one :class:`ConfigError`
line naming the key, the value given and what is accepted (exit 2 through ``cli_guard``).
"""

from __future__ import annotations

import difflib
import math
from functools import lru_cache
from typing import Any, Iterable, Optional, Sequence

from vidtldr.errors import ConfigError

_MISSING = object()

# Every boolean key of every command's configuration (a key is checked where the config has it);
# tests/test_plain_errors.py checks that each boolean default in configs/ is listed here.
FLAGS = ("deterministic", "print_table", "save_predictions", "eval.overwrite", "eval.flops", "cache.enabled",
         "cache.frames",
         "logger.wandb.enabled", "dataset.trimmed30", "dataset.paper_row",
         "fidelity.tokens", "fidelity.time_reference", "fidelity.itm", "tune.plot",  # fidelity, tune
         "compare.plot", "compare.time.materialized",                             # compare
         "trace", "table",                                                        # flops
         "gif",                                                                   # visualize
         "autocast", "breakdown", "profile", "check_outputs", "decode", "render_only",  # bench
         "quick", "bench.memory_probe", "bench.generate_only",                    # bench_eval
         "manifest")                                                              # data.validate
# Booleans whose ``null`` means "decide for me" (bench_eval: write unless quick).
OPTIONAL_FLAGS = ("write",)

# Named options of the evaluation's configuration: key -> accepted values.
CHOICES = {"eval.attention": ("fused", "materialized"), "eval.itm_engine": ("grouped", "pairwise"),
           "eval.token_store": ("disk", "memory"), "eval.token_store_dtype": ("fp32", "fp16"),
           "data.on_error": ("raise", "skip"), "data.source": ("tiny", "real"),
           "data.decoder": ("decord", "pyav", "torchcodec"), "dataset.setting": ("finetuned", "zeroshot"),
           "model.init": ("random", "checkpoint"), "precision": ("fp32", "bf16", "fp16"),
           "logger.wandb.mode": ("offline", "online", "disabled")}

# Integers: key -> smallest accepted value (``None`` where the config allows null).
INTEGERS = {"eval.itm_batch": 1, "eval.text_batch": 1, "eval.itm_group_batch": 1, "data.batch_size": 1,
            "data.num_workers": 0, "data.limit": 1, "eval.k_test": 1, "eval.num_frames": 1, "eval.clips": 1,
            "eval.crops": 1, "seed": 0,
            "model.seed": 0}
NULLABLE = ("data.limit", "eval.k_test", "eval.num_frames", "eval.clips", "eval.crops")
# Integers that also accept ``auto`` (vidtldr.data.workers resolves it).
AUTO_INTEGERS = ("data.num_workers",)


def _auto(key: str, value: Any) -> bool:
    """True for ``auto`` where a key accepts it; a one-line error naming ``auto`` for a bad value there."""
    if key not in AUTO_INTEGERS:
        return False
    if value != "auto":
        try:
            integer(key, value, low=INTEGERS[key])
        except ConfigError:
            raise ConfigError(f"{key}={shown(value)}: accepted values: auto, or an integer >= {INTEGERS[key]}") from None
    return True

# Sections whose keys are fixed by configs/: a key added there with ``+`` that nothing reads would
# be ignored silently (``+model.attention=materialized`` ran fused).
CLOSED_SECTIONS = ("model", "eval", "data", "cache")


def lookup(cfg: Any, key: str, default: Any = _MISSING) -> Any:
    """The value at dotted ``key`` (``default`` where a part is absent)."""
    node = cfg
    for part in key.split("."):
        if node is None or not hasattr(node, "get") or part not in node:
            return default
        node = node[part]
    return node


def shown(value: Any) -> str:
    """A value as the user typed it on the command line."""
    from vidtldr.config_utils import plain

    value = plain(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(shown(v) for v in value) + "]"
    return str(value)


def flag(key: str, value: Any, *, nullable: bool = False) -> Optional[bool]:
    """``value`` of ``key`` as a bool: only ``true``/``false`` (``null`` where ``nullable``)."""
    if value is None and nullable:
        return None
    if isinstance(value, bool):
        return value
    extra = " (or null)" if nullable else ""
    raise ConfigError(f"{key}={shown(value)}: not a boolean; accepted values: true, false{extra}")


def number(key: str, value: Any, *, low: Optional[float] = None, high: Optional[float] = None,
           low_open: bool = False, what: str = "a number") -> float:
    """``value`` of ``key`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    parsed: Optional[float] = None
    if not isinstance(value, bool):
        try:
            parsed = float(value)
        except (TypeError, ValueError):
            parsed = None
    if parsed is None or not math.isfinite(parsed):
        raise ConfigError(f"{key}={shown(value)}: not {what}; accepted: {_range(low, high, low_open)}")
    if (low is not None and (parsed < low or (low_open and parsed == low))) or (high is not None and parsed > high):
        raise ConfigError(f"{key}={shown(value)}: out of range; accepted: {_range(low, high, low_open)}")
    return parsed


def integer(key: str, value: Any, *, low: Optional[int] = None, high: Optional[int] = None) -> int:
    """``value`` of ``key`` as an int in ``[low, high]`` (``2.0`` is 2; ``2.5`` and ``abc`` are refused)."""
    parsed = number(key, value, low=low, high=high, what="an integer")
    if parsed != int(parsed):
        raise ConfigError(f"{key}={shown(value)}: not an integer; accepted: {_range(low, high, False)}")
    return int(parsed)


def integers(key: str, value: Any, *, low: int = 1) -> list[int]:
    """A non-empty list of ints >= ``low`` (``tune.ks``, ``fidelity.ks``)."""
    from vidtldr.config_utils import plain

    items = plain(value)
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"{key}={shown(value)}: expected a non-empty list of integers >= {low}, e.g. [1,5,10]")
    try:
        return [integer(key, v, low=low) for v in items]
    except ConfigError:
        raise ConfigError(f"{key}={shown(value)}: expected a non-empty list of integers >= {low}, "
                          "e.g. [1,5,10]") from None


def choice(key: str, value: Any, options: Sequence[str]) -> str:
    """``value`` of ``key`` as one of ``options`` (named in the message)."""
    if isinstance(value, str) and value in options:
        return value
    raise ConfigError(f"{key}={shown(value)}: accepted values: {', '.join(options)}")


def _range(low, high, low_open: bool) -> str:
    def fmt(x):
        return str(int(x)) if float(x) == int(x) else str(x)

    if low is not None and high is not None:
        return f"{'>' if low_open else '>='} {fmt(low)} and <= {fmt(high)}"
    if low is not None:
        return f"{'>' if low_open else '>='} {fmt(low)}"
    if high is not None:
        return f"<= {fmt(high)}"
    return "a number"


@lru_cache(maxsize=1)
def known_keys() -> dict[str, frozenset]:
    """Keys each closed section has in some file of configs/ (the model group: any model file)."""
    import yaml

    from vidtldr.config_utils import CONFIG_DIR

    known: dict[str, set] = {section: set() for section in CLOSED_SECTIONS}
    for path in CONFIG_DIR.glob("*.yaml"):
        data = yaml.safe_load(path.read_text()) or {}
        for section in CLOSED_SECTIONS:
            if isinstance(data.get(section), dict):
                known[section].update(data[section])
    for path in (CONFIG_DIR / "model").glob("*.yaml"):
        known["model"].update(yaml.safe_load(path.read_text()) or {})
    return {section: frozenset(keys) for section, keys in known.items()}


def check_known_keys(cfg: Any) -> None:
    """A key of a closed section that no config defines is a mistake (typo, wrong section)."""
    known = known_keys()
    for section in CLOSED_SECTIONS:
        node = lookup(cfg, section, None)
        if node is None or not hasattr(node, "keys") or not known[section]:
            continue
        for name in node.keys():
            if name in known[section]:
                continue
            homes = [s for s in CLOSED_SECTIONS if name in known[s]]
            near = difflib.get_close_matches(name, sorted(known[section]), n=1)
            hint = (f"; did you mean {homes[0]}.{name}?" if homes else
                    f"; did you mean {section}.{near[0]}?" if near else "")
            raise ConfigError(f"{section}.{name}={shown(node[name])}: {section} has no key {name!r}, "
                              f"nothing would read it{hint}")


def check_settings(cfg: Any, flags: Iterable[str] = FLAGS) -> None:
    """Every typed key of the run configuration that ``cfg`` has: booleans, named options,
    integers, and no unknown key in the closed sections. Cheap: run before anything is built."""
    for key in flags:
        value = lookup(cfg, key)
        if value is not _MISSING:
            flag(key, value)
    for key in OPTIONAL_FLAGS:
        value = lookup(cfg, key)
        if value is not _MISSING:
            flag(key, value, nullable=True)
    for key, options in CHOICES.items():
        value = lookup(cfg, key)
        if value is not _MISSING:
            choice(key, value, options)
    for key, low in INTEGERS.items():
        value = lookup(cfg, key)
        if value is not _MISSING and not (value is None and key in NULLABLE) and not _auto(key, value):
            integer(key, value, low=low)
    value = lookup(cfg, "cache.frames_max_gb")
    if value is not _MISSING:
        number("cache.frames_max_gb", value, low=0, what="a size in GiB")
    value = lookup(cfg, "eval.token_store_window_mb")
    if value is not _MISSING:
        number("eval.token_store_window_mb", value, low=0, low_open=True)
    check_known_keys(cfg)
