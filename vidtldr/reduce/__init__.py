"""Token reducers (pure functions + the hook the ViT calls) and schedules."""

from vidtldr.reduce.base import REDUCERS, Need, ReductionState, Reducer, register_reducer
from vidtldr.reduce.schedule import VIDTLDR_PRESETS, parse_schedule, token_counts, tokens_to_remove

__all__ = ["REDUCERS", "Need", "ReductionState", "Reducer", "register_reducer", "VIDTLDR_PRESETS",
           "parse_schedule", "token_counts", "tokens_to_remove", "build_reducer"]


def build_reducer(name: str, schedule=None, **kwargs) -> Reducer:
    """Look a reducer up by name (``none``, ``vidtldr``, ``tome``, ``random``)."""
    # Importing the modules registers them; done lazily so that a missing optional one is named.
    from vidtldr.errors import ConfigError
    import importlib
    for module in ("vidtldr", "tome", "random_drop"):
        try:
            importlib.import_module(f"vidtldr.reduce.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"vidtldr.reduce.{module}":
                raise
    if name not in REDUCERS:
        raise ConfigError(f"merge.name: unknown reducer {name!r}; available: {sorted(REDUCERS)}")
    return REDUCERS[name](schedule, **kwargs)
