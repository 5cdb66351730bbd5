"""Backbone families as registered adapters.

A family is one adapter class decorated with ``@register_family("<name>")``; a model config selects it
with ``family: <name>`` (``vidtldr/configs/model/*.yaml``). The adapter says, from architecture data
alone, how to build and load the models of that family; everything above the models layer (the
resolver, the assembler, the analytic FLOPs, the runner) goes through it and never through a
family's classes:

* ``heads``: the head sets it can build (a task declares the one it needs; UMT: ``retrieval``, ``qa``);
* :meth:`architecture` -> the architecture object of ``arch`` at a frame count for a head set. It
  has a ``vision`` section with the fields of :class:`vidtldr.models.config.VisionConfig`
  (``img_size``, ``patch_size``, ``width``, ``depth``, ``num_heads``, ``num_frames``,
  ``tubelet_size``, ``num_tokens``): the analytic FLOPs and the benchmarks read only that, and
  ``to_dict()`` (part of the feature-cache key);
* :meth:`build` -> the model, which offers ``encode_vision(videos, reducer=...)`` (videos
  ``[B, T, 3, H, W]`` -> an output with ``tokens`` ``[B, N, C]``, ``pooled``, ``token_counts``) plus
  the head methods its head sets promise (retrieval: ``encode_text``, ``itc_vision``, ``itc_text``,
  ``itm_logit``...; see docs/architecture.md, "Model API"), and ``set_attention(mode)``;
* :meth:`build_vision` -> the vision encoder alone, as the benchmarks time it (random weights): a
  module whose ``forward(videos, reducer=...)`` returns what ``encode_vision`` returns, with a
  settable ``attention`` (``fused`` | ``materialized``) and ``cfg`` (the ``vision`` section). The
  text side is not built, so the benchmarks' memory peaks count the encoder alone;
* :meth:`load_weights` -> load a checkpoint file into a built model (``kind``: ``finetuned`` or
  ``pretrained``), returning a report object or None.

A family is found by importing ``vidtldr.models.<name>`` when that module exists, else by importing
every module of ``vidtldr.models`` and its sub-packages; a new family is its module (+ architecture
data), there is no list to edit.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional

FAMILIES: dict[str, type["BackboneFamily"]] = {}


class BackboneFamily:
    """Base class of a family adapter (module docstring)."""

    name: ClassVar[str] = ""
    heads: ClassVar[tuple[str, ...]] = ()

    # Every family implements these three (checked when it registers, :func:`check_family`).
    def architecture(self, arch: str, heads: str, num_frames: Optional[int] = None) -> Any:
        raise NotImplementedError(f"backbone family {self.name!r}: BackboneFamily.architecture")

    def build(self, arch_cfg: Any, attention: str = "fused") -> Any:
        raise NotImplementedError(f"backbone family {self.name!r}: BackboneFamily.build")

    def build_vision(self, arch_cfg: Any, attention: str = "fused") -> Any:
        raise NotImplementedError(f"backbone family {self.name!r} cannot build its vision encoder alone "
                                  "(BackboneFamily.build_vision), which the benchmarks time")

    def load_weights(self, model: Any, path: str, kind: str) -> Any:
        raise NotImplementedError(f"backbone family {self.name!r}: BackboneFamily.load_weights")

    def check_heads(self, heads: str, where: str) -> str:
        """``heads`` if this family builds it, else a ConfigError naming ``where``."""
        from vidtldr.errors import ConfigError

        if heads not in self.heads:
            raise ConfigError(f"{where}: backbone family {self.name!r} has no {heads!r} heads "
                              f"(it builds {', '.join(self.heads)})")
        return heads


def register_family(name: str):
    """Class decorator: make a backbone family selectable by a model config's ``family: <name>``."""

    from vidtldr.registry import registrar

    return registrar(FAMILIES, "backbone family", name, check_family)


REQUIRED_METHODS = ("architecture", "build", "load_weights")


def check_family(cls: type) -> None:
    """A family subclasses :class:`BackboneFamily`, names the head sets it builds and implements
    :data:`REQUIRED_METHODS` (a forgotten one is named here, not met as a bare error at run time)."""
    if not (isinstance(cls, type) and issubclass(cls, BackboneFamily)):
        raise TypeError(f"{cls!r}: a registered family must subclass vidtldr.models.family.BackboneFamily")
    missing = [m for m in REQUIRED_METHODS if getattr(cls, m) is getattr(BackboneFamily, m)]
    if missing:
        raise TypeError(f"{cls.__module__}.{cls.__qualname__} must implement {', '.join(missing)} "
                        "(vidtldr/models/family.py, docs/architecture.md 'A new backbone family')")
    if not cls.heads or not all(isinstance(h, str) for h in cls.heads):
        raise TypeError(f"{cls.__module__}.{cls.__qualname__}.heads = {cls.heads!r}; expected head set names")


def discover_families() -> dict[str, type[BackboneFamily]]:
    """Import every module of ``vidtldr.models`` and of its sub-packages (registering the families
    they define) and return the registry."""
    from vidtldr.registry import import_plugins

    import_plugins(__name__.rsplit(".", 1)[0], recursive=True)
    return dict(FAMILIES)


def _import_quietly(module: str) -> None:
    import importlib

    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the module exists but lacks a dependency: say so
            raise


def get_family(name: str, where: str = "model.family") -> BackboneFamily:
    """The family registered as ``name`` (an instance); a ConfigError lists the known ones."""
    from vidtldr.errors import ConfigError

    if name not in FAMILIES:  # a family named like its module (umt -> vidtldr.models.umt) loads alone
        _import_quietly(f"{__name__.rsplit('.', 1)[0]}.{name}")
    known = FAMILIES if name in FAMILIES else discover_families()
    if name not in known:
        raise ConfigError(f"{where}: unknown backbone family {name!r}; available: {sorted(known)}")
    return known[name]()


__all__ = ["BackboneFamily", "FAMILIES", "register_family", "discover_families", "get_family"]
