"""The configuration tree (``configs/``) outside a running Hydra app: where it is, composing it
with overrides, and turning config nodes into plain Python values. One place, so the evaluation
runner, the table plans, the visualiser, FLOPs/bench tools and the tests compose the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from vidtldr.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def compose_config(overrides: Sequence[str] = (), config_name: str = "config"):
    """``configs/<config_name>.yaml`` composed with ``overrides``, as the command line would.
    Inside a running Hydra app (already initialised) its search path is reused; otherwise Hydra is
    initialised for the duration of the call. A bad override is a :class:`ConfigError`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        if GlobalHydra.instance().is_initialized():
            return compose(config_name=config_name, overrides=list(overrides))
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"cannot compose the configuration from {list(overrides)}: {exc}") from None


def plain(node: Any) -> Any:
    """A config node as plain Python (dicts/lists, interpolations resolved); other values as is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def check_directory_path(key: str, value: Any) -> None:
    """A setting naming a directory (which may not exist yet) must not lie under a file: creating it
    would be a NotADirectoryError traceback far from the setting's name."""
    for part in (Path(str(value)), *Path(str(value)).parents):
        if part.exists() and not part.is_dir():
            raise ConfigError(f"{key}={value}: {part} is a file, expected a directory")
