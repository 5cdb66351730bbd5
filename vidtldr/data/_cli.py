"""Tiny ``key=value`` argument parsing shared by the data CLIs (Hydra-style overrides without
composing a whole Hydra config)."""

from __future__ import annotations

from typing import Any

from vidtldr.errors import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def parse_kv(argv: list[str], allowed: dict[str, type], aliases: dict[str, str] | None = None,
             positional: list[str] | None = None) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}`` typed by ``allowed``; bare words fill
    ``positional`` names in order. Unknown keys and bad values are ConfigErrors."""
    aliases = aliases or {}
    slots = list(positional or [])
    out: dict[str, Any] = {}
    for arg in argv:
        if "=" not in arg:
            if not slots:
                raise ConfigError(f"unexpected argument {arg!r} (use key=value)")
            out[slots.pop(0)] = arg
            continue
        key, value = arg.split("=", 1)
        key = aliases.get(key.lstrip("+"), key.lstrip("+"))
        if key not in allowed:
            raise ConfigError(f"unknown option {key!r}; known: {', '.join(sorted(allowed))}")
        out[key] = _convert(key, value, allowed[key])
    return out


def _convert(key: str, value: str, kind: type) -> Any:
    if kind is bool:
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{key}={value!r}: expected true or false")
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}={value!r}: expected an integer") from None
    return value
