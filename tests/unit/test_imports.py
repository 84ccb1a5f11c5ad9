"""mesh/ imports point one way: no module or package cycles, type-checking imports included."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

MESH = Path(__file__).resolve().parents[2] / "mesh"


def _name(path: Path) -> str:
    parts = path.relative_to(MESH.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in MESH.rglob("*.py")}


@functools.cache  # both graphs below are built from it: each module is parsed once
def _imports(module: str) -> frozenset[str]:
    """Every mesh module `module` imports, at any depth of its code (TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from mesh.node import admin` imports the module mesh.node.admin
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return frozenset(name for name in found if name in MODULES and name != module)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph`, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*path[path.index(child) :], child]
            if child not in state and (found := visit(child)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


# Nodes of their own: the command line and its built-in commands sit on top of everything,
# and the settings take their defaults from the pure cores; the other top-level modules
# are foundations.
_TOP = {"mesh.cli", "mesh.commands", "mesh.__main__", "mesh.config"}


def _package(module: str) -> str:
    parts = module.split(".")
    if module in _TOP:
        return module
    return (
        ".".join(parts[:2]) if len(parts) > 2 or MODULES[module].name == "__init__.py" else "mesh"
    )


def test_the_parser_sees_imports_of_every_kind() -> None:
    imported = _imports("mesh.engine.exchange")
    assert {"mesh.engine.attempt", "mesh.engine.replies", "mesh.errors"} <= imported


def test_no_module_imports_itself_through_others() -> None:
    assert _cycle({module: _imports(module) for module in MODULES}) is None


def test_no_package_imports_itself_through_others() -> None:
    """Foundations (mesh/*.py) are one node; each folder of mesh/ is another."""
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        source = _package(module)
        graph.setdefault(source, set()).update(
            _package(name) for name in _imports(module) if _package(name) != source
        )
    assert _cycle(graph) is None


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
    ],
)
def test_cycles_are_found(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    assert _cycle(graph) == expected
