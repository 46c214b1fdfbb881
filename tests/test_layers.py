"""The layering is a one-way chain (DESIGN.md): read from the source, function-level imports included.

errors, report, settings, formatting at the bottom (standard library only); the domain packages (adapters, tasks,
probes, loaders, render, metrics, findings, gates) above them never import the plugin manager, the engine or a
face; and no import cycle exists anywhere, even through imports inside functions. Imports under
``if TYPE_CHECKING:`` do not run and are not counted.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "src" / "gradhealth"

BOTTOM = ("errors", "report", "settings", "_setting_types", "formatting", "_version")
DOMAIN = ("adapters", "tasks", "probes", "loaders", "render", "metrics", "findings", "gates", *BOTTOM)
ABOVE_DOMAIN = ("plugins", "engine", "cli", "pytest_plugin", "testing", "demo", "monitor", "integrations")

#: Upward imports that are allowed, each with its reason.
CONVENIENCES = {
    ("gradhealth.report", "gradhealth.plot"): "Report.plot() is the documented shortcut to plot_report(); it "
    "imports the plot package (and matplotlib) only when called",
}


def module_names() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("gradhealth", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = module_names()


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                yield child
                yield from _runtime_nodes(child)
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str) -> set[str]:
    """The gradhealth modules ``name`` imports at run time (anywhere in the file)."""
    path = MODULES[name]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def top_level(name: str) -> str:
    return name.split(".")[1] if name.count(".") else ""


@pytest.mark.parametrize("name", sorted(m for m in MODULES if top_level(m) in DOMAIN))
def test_domain_modules_never_import_the_plugin_manager_the_engine_or_a_face(name: str) -> None:
    upward = sorted(m for m in GRAPH[name] if top_level(m) in ABOVE_DOMAIN)
    assert not upward, f"{name} imports {upward}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if top_level(m) in BOTTOM))
def test_bottom_layer_imports_only_the_bottom_layer_and_no_torch_or_numpy(name: str) -> None:
    upward = {m for m in GRAPH[name] if top_level(m) not in BOTTOM and (name, m) not in CONVENIENCES}
    assert not upward, upward
    source = MODULES[name].read_text(encoding="utf-8")
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not any(n.split(".")[0] in {"torch", "numpy"} for n in names), (name, names)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (import cycles)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycle_even_through_function_level_imports() -> None:
    assert strongly_connected(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_graph_sees_function_level_imports() -> None:
    # Report.__str__ and Report.plot import inside the methods: both must be in the graph
    assert {"gradhealth.formatting", "gradhealth.plot"} <= GRAPH["gradhealth.report"]
