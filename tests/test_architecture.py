"""The shape of the house (docs/architecture.md): imports point one way, with no circle, module or package.

The graph is read from the source (every ``import``, also those inside functions, which are still a dependency),
so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medapp"
# Lowest first: a module may import its own layer and the layers before it, never one after it.
LAYERS = (
    {"medapp", "medapp.errors", "medapp.choices", "medapp.settings", "medapp.formatting", "medapp.markup"},
    {"medapp.intake"},
    {"medapp.lesion"},
    {"medapp.model"},
    {"medapp.data"},
    {"medapp.serving"},
    {"medapp.evaluation"},
    {"medapp.training"},
    {"medapp.reporting"},
    {"medapp.pacs"},
    {"medapp.cli", "medapp.__main__"},
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").is_file()


def _resolve(module: str, node: ast.ImportFrom, known: set[str]) -> list[str]:
    """medapp modules an ``from ... import`` names (a name that is itself a module counts as that module)."""
    if node.level:
        base = module.split(".") if _is_package(module) else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + (node.module.split(".") if node.module else []))
    else:
        target = node.module or ""
    if target != "medapp" and not target.startswith("medapp."):
        return []
    found = [f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in known]
    return found or [target]


def import_graph() -> dict[str, set[str]]:
    """medapp module -> the medapp modules it imports."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                edges.update(_resolve(name, node, known))
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("medapp"))
        graph[name] = {e for e in edges if e in known and e != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def _layer(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if module in layer or any(module.startswith(prefix + ".") for prefix in layer if prefix != "medapp"):
            return i
    raise AssertionError(f"{module} belongs to no layer of docs/architecture.md; add it to LAYERS")


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    assert "medapp.intake.dicom" in graph["medapp.intake.imaging"]  # imported inside a function
    assert "medapp.model.inference" in graph["medapp.evaluation.evaluate"]


def test_no_import_circle() -> None:
    assert _cycles(import_graph()) == []


def test_no_circle_between_packages() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        package = ".".join(module.split(".")[:2])
        packages.setdefault(package, set()).update(".".join(t.split(".")[:2]) for t in targets)
    assert _cycles({k: v - {k} for k, v in packages.items()}) == []


def test_imports_point_down_the_layers() -> None:
    upward = [(m, t) for m, targets in import_graph().items() for t in targets if _layer(t) > _layer(m)]
    assert upward == []


def test_evaluation_does_not_import_training() -> None:
    graph = import_graph()
    for module in (m for m in graph if m.startswith("medapp.evaluation")):
        assert not any(t.startswith("medapp.training") for t in _reachable(graph, module)), module


@pytest.mark.parametrize("module", ["medapp.intake.medical_image", "medapp.settings", "medapp.formatting"])
def test_foundation_modules_import_nothing_above_them(module: str) -> None:
    allowed = {"medapp.errors"}
    assert import_graph()[module] <= allowed


def test_every_module_is_in_the_architecture_doc() -> None:
    doc = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = [m for m in import_graph() if m.count(".") >= 1 and f"`{m.split('.', 1)[1]}`" not in doc
               and not m.endswith("__main__")]
    assert missing == [], "docs/architecture.md has one line per module"
