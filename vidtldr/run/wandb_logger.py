"""Optional Weights & Biases logging of a finished run (config, metrics, result table).

Off by default (``logger.wandb.enabled=false``); ``mode=offline`` writes a run directory under
``<dir>/wandb/`` that ``wandb sync`` can upload later. The package is imported only when enabled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from vidtldr.errors import ConfigError


def flatten(prefix: str, value: Any, out: dict) -> dict:
    """{"itm": {"img_r1": 1}} -> {"itm/img_r1": 1}; only numbers are kept."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            flatten(f"{prefix}/{key}" if prefix else str(key), sub, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = value
    return out


def log_to_wandb(settings: Mapping[str, Any], record: dict, run_dir: str | Path) -> dict:
    """Log ``record`` to wandb; returns {"mode", "id", "dir"} for the record."""
    try:
        import wandb
    except ImportError:
        raise ConfigError("logger.wandb.enabled=true but the wandb package is not installed "
                          "(pip install -e '.[wandb]')") from None
    mode = settings["mode"]  # logger.wandb's keys, resolved (vidtldr/run/settings.py); defaults in config.yaml
    if mode not in ("offline", "online", "disabled"):
        raise ConfigError(f"logger.wandb.mode must be offline, online or disabled, got {mode!r}")
    where = Path(settings["dir"] or run_dir)
    where.mkdir(parents=True, exist_ok=True)
    ident = record.get("run", {})
    name = f"{ident.get('dataset')}-{ident.get('model')}-{ident.get('merge')}"
    run = wandb.init(project=settings["project"], entity=settings["entity"], mode=mode,
                     dir=str(where), name=name, config=record.get("config", {}),
                     tags=list(settings["tags"] or []), reinit="finish_previous")
    try:
        numbers = flatten("", {"metrics": record.get("metrics", {}), "gflops": record.get("gflops") or {},
                               "timings": record.get("timings", {})}, {})
        run.log(numbers)
        run.summary.update(numbers)
        rows = [[key, value] for key, value in sorted(numbers.items()) if key.startswith("metrics/")]
        run.log({"results": wandb.Table(columns=["metric", "value"], data=rows)})
        info = {"mode": mode, "id": run.id, "dir": str(Path(run.dir).parent) if run.dir else None}
    finally:
        run.finish()
    return info
