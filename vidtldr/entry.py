"""How a command that reads the configuration tree starts: one Hydra entry wrapper for all of them
(the same ``version_base``, the command's ``configs/<name>.yaml``, the body inside
:func:`~vidtldr.errors.cli_guard`), and its variant for commands that write a record into a run
folder (fidelity, tune, compare)."""

from __future__ import annotations

import sys
from typing import Any, Callable

from vidtldr.config_utils import CONFIG_DIR, HYDRA_VERSION_BASE, check_merge_choice, check_run_location
from vidtldr.errors import ConfigError, cli_guard

# Keys renamed so that one concept has one name in every command (what one run executes is
# eval.attention, clips per forward data.batch_size, the folder a command writes into out): per
# configuration, old key -> new key. An old key on the command line is one line naming the new one.
RENAMED_KEYS = {
    "flops": {"attention": "eval.attention", "batch": "data.batch_size", "table_out": "out", "table_json": "out"},
    "bench": {"attention": "attentions", "batch": "data.batch_size", "out_json": "out", "out_md": "out"},
    "bench_eval": {"out_dir": "out"},
    "validate": {"report": "out"},
}


def check_renamed(config_name: str, argv: list[str]) -> None:
    """A :class:`ConfigError` for the first override that uses a key this command renamed."""
    renamed = RENAMED_KEYS.get(config_name, {})
    for arg in argv:
        key = arg.lstrip("+~").partition("=")[0]
        if key in renamed:
            new = renamed[key]
            folder = " (the folder written into; the file names inside are fixed)" if new == "out" else ""
            raise ConfigError(f"{key}= was renamed: use {new}={folder}")


def hydra_entry(config_name: str, prog: str, job: Callable[[Any], Any], *, run_folder: bool = False) -> None:
    """Run ``job(cfg)`` on ``configs/<config_name>.yaml`` composed with the command line's
    overrides; a :class:`~vidtldr.errors.VidtldrError` is one line and exit status 2. With
    ``run_folder``, the run location given on the command line is checked first (Hydra creates the
    folder before the job runs, where a path under a file would be a traceback)."""
    import hydra

    with cli_guard(prog):
        check_renamed(config_name, sys.argv[1:])
        check_merge_choice(sys.argv[1:])
        if run_folder:
            check_run_location(sys.argv[1:])
    if not any(arg.startswith("hydra.job.name=") for arg in sys.argv[1:]):
        # The job (and its log file in the run folder) is named after the command, not this module.
        sys.argv.append(f"hydra.job.name={config_name}")

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=HYDRA_VERSION_BASE)
    def _run(cfg) -> None:
        with cli_guard(prog):
            job(cfg)

    _run()


def run_dir() -> str:
    """The running Hydra job's output folder (``hydra.run.dir``)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def record_command(config_name: str, prog: str, run: Callable, format_table: Callable, summary: Callable) -> None:
    """A command whose job writes its record into the run folder: ``run(cfg, run_dir)``, then the
    record's table (unless ``print_table=false``) and its summary as one JSON line (the last line)."""
    from vidtldr import jsonio

    def job(cfg) -> None:
        record = run(cfg, run_dir())
        if cfg.get("print_table", True):
            print(format_table(record), flush=True)
        print(jsonio.dumps(summary(record)), flush=True)

    hydra_entry(config_name, prog, job, run_folder=True)
