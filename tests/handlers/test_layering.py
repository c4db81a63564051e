"""handlers/ reads one way: no import inside a function (ruff PLC0415) and no cycle between its
modules, so each module can be read knowing only the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

HANDLERS = Path(__file__).resolve().parents[2] / "handlers"


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(HANDLERS.glob("*.py"))}


def test_no_import_inside_a_function():
    found = []
    for name, tree in modules().items():
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [f"{name}.py:{n.lineno}" for n in ast.walk(function) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert found == []


def test_no_import_cycle_between_handler_modules():
    trees = modules()
    names = set(trees) - {"__init__"}
    graph = {}
    for name in names:
        imported = set()
        for node in ast.walk(trees[name]):  # every import, wherever it hides
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                imported |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
        graph[name] = imported & names
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import cycle: " + " -> ".join((*path, name))
        if name not in done:
            for imported in sorted(graph[name]):
                visit(imported, (*path, name))
            done.add(name)

    for name in sorted(names):
        visit(name, ())
