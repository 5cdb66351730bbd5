"""The configuration tree (``configs/``) outside a running Hydra app: where it is, composing it
with overrides, and turning config nodes into plain Python values. One place, so the evaluation
runner, the table plans, the visualiser, FLOPs/bench tools and the tests compose the same way."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import OmegaConf

from vidtldr.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
# Every Hydra app and compose of the project uses these defaults (no working-directory change).
HYDRA_VERSION_BASE = "1.3"


def merge_compositions() -> dict[str, dict]:
    """``merge=A+B`` config nodes for every ordered pair of merge configs (besides ``none``): the
    in-block part B's settings at the top (``merge.r`` and its keys), A's under ``merge.A``. Which
    pairs make sense (A input-level, B not) is checked when the run resolves, with a message naming
    them (vidtldr/reduce/chain.py); the nodes exist so that Hydra composes the name at all."""
    nodes = {path.stem: OmegaConf.to_container(OmegaConf.load(path))
             for path in sorted((CONFIG_DIR / "merge").glob("*.yaml")) if path.stem != "none"}
    out = {}
    for first, own in nodes.items():
        for last, node in nodes.items():
            if first != last:
                out[f"{first}+{last}"] = {**node, "name": f"{first}+{last}",
                                          first: {k: v for k, v in own.items() if k != "name"}}
    return out


def register_merge_compositions() -> None:
    """Put :func:`merge_compositions` in Hydra's config store (group ``merge``), once per process."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, node in merge_compositions().items():
        store.store(group="merge", name=name, node=node)


register_merge_compositions()  # every Hydra entry point imports this module before composing


@functools.lru_cache(maxsize=1)
def _composition_names() -> frozenset[str]:
    """The ``A+B`` names Hydra can compose (read once per process: the merge configs do not change)."""
    return frozenset(merge_compositions())


def check_merge_choice(overrides: Sequence[str]) -> None:
    """``merge=<name>`` must name a merge config (``configs/merge/``) or a composition ``A+B`` of two
    of them (each name of a multirun sweep ``merge=none,vidtldr`` likewise). Hydra's own refusal of
    any other name (``merge=rlt+``, a typo) is many lines listing every pair, then exit status 1;
    this is one line naming the value and what is accepted."""
    for arg in overrides:
        key, sep, value = arg.partition("=")
        if key.lstrip("+") != "merge" or not sep or "(" in value or "${" in value:
            continue  # not a merge choice, or a sweep function (choice(...), glob(...)) Hydra expands itself
        for name in value.split(","):
            _check_merge_name(name)


def _check_merge_name(value: str) -> None:
    names = sorted(path.stem for path in (CONFIG_DIR / "merge").glob("*.yaml"))
    if value in names or value in _composition_names():
        return
    accepted = f"accepted: {', '.join(names)}, or a composition A+B of two of them (e.g. rlt+vidtldr)"
    parts = value.split("+")
    if "" in parts:
        raise ConfigError(f"merge={value}: a part of the composition is empty; {accepted}")
    unknown = [part for part in parts if part not in names]
    if unknown:
        raise ConfigError(f"merge={value}: unknown reducer {unknown[0]!r}; {accepted}")
    raise ConfigError(f"merge={value}: a composition on the command line is two different reducers "
                      f"other than none; {accepted}")


def compose_config(overrides: Sequence[str] = (), config_name: str = "config"):
    """``configs/<config_name>.yaml`` composed with ``overrides``, as the command line would.
    Inside a running Hydra app (already initialised) its search path is reused; otherwise Hydra is
    initialised for the duration of the call. A bad override is a :class:`ConfigError`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    check_merge_choice(overrides)
    try:
        if GlobalHydra.instance().is_initialized():
            return compose(config_name=config_name, overrides=list(overrides))
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=HYDRA_VERSION_BASE):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose the configuration from {list(overrides)}: {exc}") from None


def plain(node: Any) -> Any:
    """A config node as plain Python (dicts/lists, interpolations resolved); other values as is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def directory_problem(path: Path, writable: bool = False) -> Optional[str]:
    """Why folder ``path`` (which may not exist yet) cannot be created or used, or None: a file on
    its way, or (``writable``) a nearest existing folder this user may not write."""
    import os

    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            return f"{part} is a file, expected a directory"
        if part.exists():
            if writable and not os.access(part, os.W_OK | os.X_OK):
                return f"{part} is not writable by this user; choose another folder"
            return None
    return None


def check_directory_path(key: str, value: Any, *, writable: bool = False) -> None:
    """A setting naming a directory (which may not exist yet) must not lie under a file: creating it
    would be a NotADirectoryError traceback far from the setting's name. ``writable``: the nearest
    existing folder must also let this user create it (else a PermissionError deep inside)."""
    problem = directory_problem(Path(str(value)), writable)
    if problem:
        raise ConfigError(f"{key}={value}: {problem}")


def check_file_path(key: str, value: Any) -> None:
    """An output file's setting: not an existing folder, and its folder must be creatable."""
    path = Path(str(value))
    problem = "is a folder, expected a file name" if path.is_dir() else directory_problem(path.parent, True)
    if problem:
        raise ConfigError(f"{key}={value}: {problem}")


def check_run_location(argv: list[str], environ=None) -> None:
    """Hydra creates the run directory before any of our code runs: a ``paths.runs`` /
    ``hydra.run.dir`` / ``hydra.sweep.dir`` under a file would be a NotADirectoryError traceback."""
    import os

    environ = os.environ if environ is None else environ
    given = {"paths.runs": environ.get("VIDTLDR_RUNS")}
    for arg in argv:
        key, _, value = arg.lstrip("+").partition("=")
        if key in ("paths.runs", "hydra.run.dir", "hydra.sweep.dir") and value:
            given[key] = value
    for key, value in given.items():
        if value and "${" not in value:
            check_directory_path(key, value, writable=True)
