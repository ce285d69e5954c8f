"""The package's shape: imports go one way (no cycle, counting imports inside functions), the
reference layers carry no fast-path code, and the weights package builds no model."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hrformer"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> Dict[str, Set[str]]:
    """module -> the package modules it imports anywhere in its body (functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: Set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            deps.update(c for c in candidates if c in modules and c != name)
        graph[name] = deps
    return graph


def _find_cycle(graph: Dict[str, Set[str]]):
    state: Dict[str, int] = {}
    stack = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            # A package's __init__ re-exporting its submodules is not a cycle with them.
            if dep.startswith(node + "."):
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle():
    cycle = _find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_dependencies_point_one_way():
    graph = import_graph()

    def reaches(start: str, target_prefix: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            for dep in graph[node]:
                if dep.startswith(target_prefix):
                    return True
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return False

    for name in graph:
        if name.startswith("hrformer.weights"):
            assert not reaches(name, "hrformer.model") and not reaches(name, "hrformer.factory"), name
        if name.startswith("hrformer.layers"):
            assert not reaches(name, "hrformer.fast"), f"{name} reaches the fast path"


def test_reference_layers_have_no_fast_path_code():
    for path in (PACKAGE / "layers").glob("*.py"):
        text = path.read_text()
        for word in ("mkldnn", "onednn", "oneDNN", "_pays", "torch.ops"):
            assert word not in text, f"{path.name} mentions {word}"
