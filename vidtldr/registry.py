"""Name -> class registries filled by decorators, and the discovery that fills them.

Reducers (``vidtldr.reduce``), tasks (``vidtldr.tasks``) and backbone families (``vidtldr.models``) are
plug-ins: a module that defines a decorated class is all it takes to add one, because looking a name
up imports every module of the plug-in package first. The three registries differ only in what they
check about a class, so the bookkeeping lives here once.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, TypeVar

C = TypeVar("C", bound=type)


def registrar(registry: dict, kind: str, name: str, check: Callable[[type], None]) -> Callable[[C], C]:
    """A class decorator that checks a class with ``check`` and stores it as ``registry[name]``.

    Re-registering the same class (a module imported twice, e.g. under ``python -m``) is allowed; a
    second class under a taken name is a TypeError naming both, so two plug-ins never shadow each other.
    """

    def wrap(cls: C) -> C:
        check(cls)
        held = registry.get(name)
        if held is not None and (held.__module__, held.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(f"{kind} name {name!r} is taken by {held.__module__}.{held.__qualname__}; "
                            f"{cls.__module__}.{cls.__qualname__} needs another name")
        cls.name = name
        registry[name] = cls
        return cls

    return wrap


def import_plugins(package: str, *, recursive: bool = False) -> None:
    """Import every module of ``package`` (with ``recursive``, of its sub-packages too), so that their
    decorators run. An import error in a plug-in module is raised, not hidden."""
    pkg = importlib.import_module(package)
    if recursive:
        names = [info.name for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{package}.")]
    else:
        names = [f"{package}.{info.name}" for info in pkgutil.iter_modules(pkg.__path__)]
    for name in names:
        importlib.import_module(name)
