"""``vidtldr <command> [overrides]``: one console command for every tool of the project.

Each command is a module ``vidtldr/<command>.py`` (the same one ``python -m vidtldr.<command>``
runs) that declares a one-line ``SUMMARY``. The list is found by reading the package's top-level
modules for that constant (without importing them, so ``vidtldr --help`` is instant): a new command
is its entry module, with no edit here. ``vidtldr <command> ...`` runs that module exactly as
``python -m vidtldr.<command> ...`` would, with the same arguments."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path
from typing import Optional, Sequence

PACKAGE_DIR = Path(__file__).resolve().parent
PROG = "vidtldr"


def _summary(path: Path) -> Optional[str]:
    """The module's top-level ``SUMMARY = "..."`` (None when it has none: not a command)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SUMMARY" for t in node.targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    return None


def commands(package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """Command name -> its one-line summary, for every top-level module that declares one."""
    found = {}
    for path in sorted(package_dir.glob("*.py")):
        summary = _summary(path)
        if summary is not None and not path.stem.startswith("_"):
            found[path.stem] = summary
    return found


def usage(found: dict[str, str]) -> str:
    width = max(map(len, found), default=0)
    lines = [f"usage: {PROG} <command> [key=value ...]", "",
             "Commands that read the configuration tree take Hydra overrides (group=option, key=value), the",
             f"same as `python -m vidtldr.<command>`; `{PROG} <command> --help` shows one command's options.", "",
             "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, summary in found.items()]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point ``vidtldr``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    found = commands()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(found), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name = argv[0].replace("-", "_")  # bench-eval and bench_eval both work
    if name not in found:
        print(f"{PROG}: error: unknown command {argv[0]!r}; the commands are: {', '.join(found)}", file=sys.stderr)
        return 2
    sys.argv = [f"{PROG} {name}", *argv[1:]]
    runpy.run_module(f"vidtldr.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
