"""Figures about the shape of the code, for reviews of the house (issue 20).

    python tools/house_figures.py [ROOT]

Prints, for the packages bot/, handlers/ and inference/:
- function-local imports per package (an import statement inside a function body);
- the largest module (lines) and the largest function (lines, decorators excluded);
- modules over 600 lines;
- import cycles between modules, counting imports at module level *and* inside functions
  (strongly connected components of the module graph, by Tarjan's algorithm).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGES = ("bot", "handlers", "inference")


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str, path: Path, known: set[str]) -> tuple[set[str], int]:
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    local = 0

    def add(name: str) -> None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module:
            targets.add(name)

    def visit(node: ast.AST, in_function: bool) -> None:
        nonlocal local
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                local += in_function
                for alias in child.names:
                    add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                local += in_function
                base = resolve(module, is_package, child)
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    add(candidate if candidate in known else base)
            visit(child, inside)

    visit(tree, False)
    return targets, local


def functions(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
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

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    mods = modules(root)
    known = set(mods)
    graph: dict[str, set[str]] = {}
    local_per_package: dict[str, int] = defaultdict(int)
    sizes = []
    funcs = []
    for name, path in mods.items():
        graph[name], local = imports(name, path, known)
        local_per_package[name.split(".")[0]] += local
        sizes.append((len(path.read_text().splitlines()), str(path.relative_to(root))))
        funcs += [(length, f"{path.relative_to(root)}:{line} {fn}") for fn, line, length in functions(path)]
    print("function-local imports:", ", ".join(f"{p} {local_per_package[p]}" for p in PACKAGES))
    sizes.sort(reverse=True)
    funcs.sort(reverse=True)
    print(f"largest module: {sizes[0][1]} ({sizes[0][0]} lines)")
    print(f"largest function: {funcs[0][1]} ({funcs[0][0]} lines)")
    over = [f"{p} ({n})" for n, p in sizes if n > 600]
    print("modules over 600 lines:", ", ".join(over) or "none")
    found = cycles(graph)
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    return 0


if __name__ == "__main__":
    sys.exit(main())
