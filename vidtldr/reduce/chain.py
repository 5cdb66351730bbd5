"""Composition ``merge=A+B``: an input-level reducer, then an in-block one, in one forward.

``merge=rlt+vidtldr`` removes repeated tubelets before block 0 (run-length tokenization), then
vid-TLDR merges inside the blocks on what is left. Each part keeps its own budget: ``merge.r`` (and
the other top-level ``merge.*`` keys) belong to the in-block part, the last one; an input-level part
``A`` takes its settings from ``merge.A`` (``merge.rlt.r``, ``merge.rlt.threshold``), defaulting to its
own config. The composition describes itself through its parts, so the FLOPs, the exact prefix of
fused attention and source tracing compose: the patch embedding runs on every tubelet, the input
part's decision is charged once, and the blocks see the survivors with the in-block part's
``need``/``match_on``/``tracks_sizes``.

Rules: two parts or more, every part but the last input-level, the last one not.
"""

from __future__ import annotations

import inspect

import torch

from vidtldr.errors import ConfigError
from vidtldr.reduce.base import ReductionState, Reducer


def check_shape(name: str) -> None:
    """A ConfigError naming ``merge=<name>`` unless it is two or more non-empty parts, none of them
    ``none`` (checked before any part is looked up: ``rlt+`` is a malformed name, not a reducer '')."""
    parts = name.split("+")
    if len(parts) < 2 or "" in parts:
        raise ConfigError(f"merge={name}: a composition is A+B (input-level reducers, then one in-block "
                          "reducer), e.g. rlt+vidtldr; a part is empty")
    if "none" in parts:
        raise ConfigError(f"merge={name}: 'none' cannot be part of a composition")


def check_parts(name: str, classes: list[type]) -> None:
    """A ConfigError naming ``merge=<name>`` unless it is input-level parts followed by one in-block part."""
    check_shape(name)
    parts = name.split("+")
    for part, cls in zip(parts[:-1], classes[:-1], strict=True):
        if not cls.input_level:
            raise ConfigError(f"merge={name}: {part} acts inside the blocks; only an input-level reducer "
                              f"(before block 0) may come before another part")
    if classes[-1].input_level:
        raise ConfigError(f"merge={name}: the last part ({parts[-1]}) must act inside the blocks, "
                          "not before block 0")


def part_keywords(cls: type) -> list[str]:
    """Keyword arguments of a reducer besides its schedule (the ``merge.*`` keys it takes)."""
    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "schedule")]


def check_chain_args(name: str, classes: list[type], args: dict) -> None:
    """``merge.*`` keys of a composition: the in-block part's keywords, one dict per input-level part
    with ``r`` and that part's keywords."""
    parts = name.split("+")
    accepted = part_keywords(classes[-1]) + parts[:-1]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ConfigError(f"merge={name}: unknown key(s) {', '.join('merge.' + k for k in unknown)}; "
                          f"it takes merge.r{''.join(', merge.' + k for k in accepted)}")
    for part, cls in zip(parts[:-1], classes[:-1], strict=True):
        given = args.get(part) or {}
        own = ["r", *part_keywords(cls)]
        if not isinstance(given, dict):
            raise ConfigError(f"merge.{part}={given}: expected the settings of {part}, e.g. merge.{part}.r=0.3; "
                              f"{part} takes {', '.join(f'merge.{part}.{k}' for k in own)}")
        extra = sorted(set(given) - set(own))
        if extra:
            raise ConfigError(f"merge={name}: unknown key(s) {', '.join(f'merge.{part}.{k}' for k in extra)}; "
                              f"{part} takes {', '.join(f'merge.{part}.{k}' for k in own)}")


class Chain(Reducer):
    """Input-level parts, then one in-block part (built by :func:`build_chain`)."""

    input_level = True

    def __init__(self, name: str, inputs: list[Reducer], inner: Reducer):
        super().__init__(inner.schedule)
        self.name, self.inputs, self.inner = name, list(inputs), inner
        # the blocks see the in-block part: its description is the composition's
        self.need, self.match_on, self.tracks_sizes = inner.need, inner.match_on, inner.tracks_sizes
        self.exact_decisions = inner.exact_decisions
        self.similarity_shape, self.selection_flops = inner.similarity_shape, inner.selection_flops

    @property
    def adaptive(self) -> bool:
        """Content-adaptive if any part is (its token counts then differ per video)."""
        return any(getattr(part, "adaptive", False) for part in (*self.inputs, self.inner))

    def describe(self) -> dict:
        return {"name": self.name, "r": list(self.schedule), "parts": [p.describe() for p in (*self.inputs, self.inner)]}

    # in-block: the last part
    def tokens_removed(self, layer: int, num_tokens: int) -> int:
        return self.inner.tokens_removed(layer, num_tokens)

    def reducing_blocks(self, num_tokens: int) -> list[int]:
        return self.inner.reducing_blocks(num_tokens)

    def needs(self, layer: int, num_tokens: int):
        return self.inner.needs(layer, num_tokens)

    def reduce(self, x: torch.Tensor, layer: int, state: ReductionState, aux: dict) -> torch.Tensor:
        return self.inner.reduce(x, layer, state, aux)

    # before block 0: the input-level parts in order
    def input_removed(self, num_tokens: int, per_step: int) -> int:
        left = num_tokens
        for part in self.inputs:
            left -= part.input_removed(left, per_step)
        return num_tokens - left

    def input_flops(self, dims, num_tokens: int, removed: int) -> int:
        total, left = 0, num_tokens
        for part in self.inputs:
            gone = part.input_removed(left, (dims.img_size // dims.patch_size) ** 2)
            total += part.input_flops(dims, left, gone)
            left -= gone
        return total

    def reduce_input(self, x: torch.Tensor, state: ReductionState, aux: dict) -> torch.Tensor:
        for part in self.inputs:
            x = part.reduce_input(x, state, aux)
        return x


def build_chain(name: str, schedule: list | None = None, **kwargs) -> Chain:
    """The composition ``name`` (``A+B``): the in-block part runs ``schedule`` with the top-level
    keywords, each input-level part its own ``kwargs[part]`` (``r`` + keywords, else its config's)."""
    from vidtldr.reduce.base import reducer_class

    check_shape(name)
    parts = name.split("+")
    classes = [reducer_class(part) for part in parts]
    check_parts(name, classes)
    check_chain_args(name, classes, kwargs)
    depth = len(schedule) if schedule else 1
    inputs = []
    for part in parts[:-1]:
        own = {**_config_defaults(part), **(kwargs.pop(part, None) or {})}
        r = own.pop("r", None)
        inputs.append(reducer_class(part)(_part_schedule(part, r, depth), **own))
    return Chain(name, inputs, reducer_class(parts[-1])(schedule, **kwargs))


def _part_schedule(part: str, r, depth: int) -> list:
    """An input-level part's ``merge.<part>.r`` as a schedule; a mistake names that key (the schedule
    parser names ``merge.r``, which is the in-block part's)."""
    from vidtldr.errors import ScheduleError
    from vidtldr.reduce.schedule import parse_schedule

    try:
        return parse_schedule(r, depth)
    except ScheduleError as exc:
        raise ScheduleError(str(exc).replace("merge.r", f"merge.{part}.r", 1)) from None


def _config_defaults(part: str) -> dict:
    """The settings of ``configs/merge/<part>.yaml`` besides its name (an input part's defaults)."""
    from omegaconf import OmegaConf

    from vidtldr.config_utils import CONFIG_DIR

    path = CONFIG_DIR / "merge" / f"{part}.yaml"
    if not path.is_file():
        return {}
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return {k: v for k, v in node.items() if k != "name"}


def composition_class(name: str) -> type[Chain]:
    """:class:`Chain` for ``merge.name=A+B`` once every part is a registered reducer that may stand
    where it stands (input-level parts first, one in-block part last)."""
    from vidtldr.reduce.base import reducer_class

    check_shape(name)
    check_parts(name, [reducer_class(part) for part in name.split("+")])
    return Chain
