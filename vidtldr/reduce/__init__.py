"""Token reducers (pure functions + the hook the ViT calls) and schedules.

Every module of this package is imported when a reducer is looked up (:func:`reducer_class`), so a
new reducer is one module with a ``@register_reducer("name")`` class; see :mod:`vidtldr.reduce.base`.
"""

from vidtldr.reduce.base import REDUCERS, MatchOn, Need, ReductionState, Reducer, discover_reducers, register_reducer
from vidtldr.reduce.base import reducer_class as _registered_class
from vidtldr.reduce.schedule import VIDTLDR_PRESETS, parse_schedule, token_counts, tokens_to_remove

__all__ = ["REDUCERS", "MatchOn", "Need", "ReductionState", "Reducer", "register_reducer", "discover_reducers",
           "reducer_class", "VIDTLDR_PRESETS", "parse_schedule", "token_counts", "tokens_to_remove",
           "build_reducer"]


def build_reducer(name: str, schedule=None, **kwargs) -> Reducer:
    """A reducer instance by name (``none``, ``vidtldr``, ``tome``, ``random`` or any registered one,
    or a composition ``A+B``: :func:`vidtldr.reduce.chain.build_chain`)."""
    if "+" in name:
        from vidtldr.reduce.chain import build_chain

        return build_chain(name, schedule, **kwargs)
    return reducer_class(name)(schedule, **kwargs)


def reducer_class(name: str) -> type[Reducer]:
    """The reducer class selected by ``merge.name=<name>``; a ConfigError lists the known names. A
    composition ``A+B`` gives :class:`vidtldr.reduce.chain.Chain` once its parts are checked."""
    if "+" in name:
        from vidtldr.reduce.chain import composition_class

        return composition_class(name)
    return _registered_class(name)
