"""Dataset configs by name: ``configs/dataset/<name>.yaml`` next to the package (the same files
Hydra composes with ``dataset=<name>``)."""

from __future__ import annotations

from typing import Any

from vidtldr.config_utils import CONFIG_DIR
from vidtldr.errors import ConfigError

DATASET_CONFIG_DIR = CONFIG_DIR / "dataset"
REQUIRED_KEYS = ("name", "task", "reader", "annotation", "video_dir", "trimmed30", "num_frames",
                 "test_name", "k_test")


def dataset_names() -> list[str]:
    return sorted(p.stem for p in DATASET_CONFIG_DIR.glob("*.yaml"))


def load_dataset_config(name: str) -> dict[str, Any]:
    """The dataset config ``name`` as a plain dict; ConfigError lists the known names."""
    from omegaconf import OmegaConf

    path = DATASET_CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    check_dataset_config(cfg, str(path))
    return cfg


def check_dataset_config(cfg: dict[str, Any], where: str) -> None:
    """A ConfigError naming ``where`` when a dataset config lacks a required key."""
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ConfigError(f"{where}: missing keys {missing}")
    if cfg["reader"] == "qa" and not cfg.get("answer_list"):
        raise ConfigError(f"{where}: a QA dataset needs 'answer_list'")


def all_dataset_configs() -> dict[str, dict[str, Any]]:
    return {name: load_dataset_config(name) for name in dataset_names()}
