"""The package's layers (docs/architecture.md, "Layers"): imports only go downward and never form a
cycle. Imports are read statically from every module's source (also the ones inside functions: a
lazy import is still a dependency), so the check is fast and needs no heavy library; a second test
imports every module for real, so a module that no longer imports cannot hide."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "vidtldr"

# Lowest first. A module may import modules of its own layer (without cycles) and of lower layers.
# `analysis` (flops / bench / search / visualize sub-packages) sits above `report` so that it can use report's labels and
# paper reference; report never needs analysis.
LAYERS = ["base", "data|reduce", "models", "cost", "tasks", "run", "report", "analysis", "commands"]
BASE_MODULES = {"vidtldr", "vidtldr.errors", "vidtldr.config_utils", "vidtldr.config_values", "vidtldr.jsonio",
                "vidtldr.labels", "vidtldr.files", "vidtldr.provenance", "vidtldr.entry", "vidtldr.registry"}
SUBPACKAGE_LAYER = {"data": "data|reduce", "reduce": "data|reduce", "models": "models", "cost": "cost",
                    "tasks": "tasks", "run": "run", "report": "report", "analysis": "analysis"}

# Back-edges being removed by work in flight, each (importer, imported). TODO lead: empty this after
# the merges; an entry that no longer occurs fails test_known_back_edges_still_exist, so it cannot go stale.
KNOWN_BACK_EDGES: set[tuple[str, str]] = set()


def module_files(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for path in sorted((root / "vidtldr").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def layer_of(module: str) -> str:
    if module in BASE_MODULES:
        return "base"
    parts = module.split(".")
    if len(parts) == 2 and parts[1] not in SUBPACKAGE_LAYER:  # a top-level module that is not a base module is a command (python -m vidtldr.X)
        return "commands"
    if parts[1] not in SUBPACKAGE_LAYER:
        raise AssertionError(f"{module}: subpackage {parts[1]!r} has no layer; add it to SUBPACKAGE_LAYER "
                             "and to docs/architecture.md")
    return SUBPACKAGE_LAYER[parts[1]]


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks (annotations only, never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(module: str, path: pathlib.Path, modules: dict[str, pathlib.Path]) -> list[tuple[str, int]]:
    """(imported package module, line) for every import of one module: ``from a.b import c`` names
    the module ``a.b.c`` when that is a module, else ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _type_checking_nodes(tree)
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in modules else target, node.lineno))
    return [(name, line) for name, line in found if name == "vidtldr" or name.startswith("vidtldr.")]


def import_graph(root: pathlib.Path = ROOT, skip: set = frozenset()) -> dict[str, list[tuple[str, int]]]:
    """Module -> its imports of package modules, leaving out the (importer, imported) pairs in ``skip``."""
    modules = module_files(root)
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    return {name: [(t, line) for t, line in targets if (name, t) not in skip] for name, targets in graph.items()}


def back_edges(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    out = []
    for module, targets in graph.items():
        mine = LAYERS.index(layer_of(module))
        for target, line in targets:
            theirs = LAYERS.index(layer_of(target))
            same_tier_other_package = (theirs == mine and layer_of(module) == "data|reduce"
                                       and module.split(".")[1] != target.split(".")[1])
            if theirs > mine or same_tier_other_package:
                out.append(f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)}) "
                           f"at line {line}")
    return sorted(out)


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (or a self-import): Tarjan."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target, _ in graph.get(node, []):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or any(t == node for t, _ in graph.get(node, [])):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    for module in module_files():
        assert layer_of(module) in LAYERS


def test_no_import_goes_up_a_layer():
    bad = back_edges(import_graph(skip=KNOWN_BACK_EDGES))
    assert not bad, "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(bad)


def test_known_back_edges_still_exist():
    graph = import_graph()
    fixed = sorted(edge for edge in KNOWN_BACK_EDGES if edge[1] not in {t for t, _ in graph.get(edge[0], [])})
    assert not fixed, f"fixed, remove from KNOWN_BACK_EDGES in tests/test_layers.py: {fixed}"


def test_no_import_cycle():
    found = cycles(import_graph(skip=KNOWN_BACK_EDGES))  # a known back-edge closes cycles of its own
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_checker_sees_lazy_imports_cycles_and_back_edges(tmp_path):
    """The checks themselves on a made-up package: a function-level import up a layer and a cycle
    between two report modules are both reported; TYPE_CHECKING imports are not."""
    pkg = tmp_path / "vidtldr"
    for sub in ("data", "models", "report"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("def f():\n    from vidtldr.models import m\n")
    (pkg / "models" / "m.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vidtldr.report import x\n")
    (pkg / "report" / "x.py").write_text("from . import y\n")
    (pkg / "report" / "y.py").write_text("from vidtldr.report.x import thing\nimport vidtldr.data.a\n")
    graph = import_graph(tmp_path)
    assert back_edges(graph) == ["vidtldr.data.a (layer data|reduce) imports vidtldr.models.m (layer models) "
                                 "at line 2"]
    assert cycles(graph) == [["vidtldr.report.x", "vidtldr.report.y"]]


@pytest.mark.parametrize("module", sorted(module_files()))
def test_every_module_imports(module):
    importlib.import_module(module)
