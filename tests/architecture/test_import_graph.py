"""The package's import graph, read from the source with ``ast``: acyclic, and layered as
docs/architecture.md says (the domain imports no stream processor, broker or database client)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "stitchboard"
SHELLS = ("stitchboard.flows", "stitchboard.sinks", "stitchboard.app", "stitchboard.testing")
INFRASTRUCTURE = ("bytewax", "confluent_kafka", "clickhouse_connect", "chdb")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imported(name: str) -> Iterator[str]:
    """Every module ``name`` imports, at any depth of its code (functions and TYPE_CHECKING too)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            yield from submodules
            if len(submodules) < len(node.names):  # a name defined in ``base`` itself
                yield base


def internal_edges(name: str) -> set[str]:
    """The package modules whose code ``name`` uses.

    A package's ``__init__`` runs before its modules (Python's mechanics, not a dependency), so an
    edge goes to a package only when a name defined in its ``__init__`` is imported.
    """
    return {target for target in imported(name) if target in MODULES and target != name}


GRAPH = {name: internal_edges(name) for name in MODULES}


def in_layer(name: str, layer: str) -> bool:
    return name == layer or name.startswith(layer + ".")


def is_domain(name: str) -> bool:
    return not any(in_layer(name, shell) for shell in SHELLS)


def find_cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(GRAPH[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_graph_is_read_from_every_module() -> None:
    assert {"stitchboard.stitching.store", "stitchboard.flows.steps", "stitchboard.app.cli"} <= set(GRAPH)
    assert "stitchboard.conversation" in GRAPH["stitchboard.metrics"]
    assert "stitchboard.stitching.emitted" in GRAPH["stitchboard.stitching.store"]  # ``from pkg import mod``
    assert (
        "stitchboard.adapters" in GRAPH["stitchboard.flows.steps"]
    )  # ``adapters.normalise`` is its __init__'s


def test_the_package_import_graph_is_acyclic() -> None:
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


def test_domain_modules_import_no_stream_processor_broker_or_database_client() -> None:
    offending = {
        name: sorted(target for target in imported(name) if target.split(".")[0] in INFRASTRUCTURE)
        for name in MODULES
        if is_domain(name)
    }
    assert {name: targets for name, targets in offending.items() if targets} == {}


def test_domain_modules_import_no_shell() -> None:
    upward = {name: sorted(t for t in GRAPH[name] if not is_domain(t)) for name in MODULES if is_domain(name)}
    assert {name: targets for name, targets in upward.items() if targets} == {}


def test_flows_and_sinks_import_neither_each_other_nor_the_app_nor_the_generator() -> None:
    forbidden = {
        "stitchboard.flows": (
            "stitchboard.sinks",
            "stitchboard.app",
            "stitchboard.testing",
            "stitchboard.synthetic",
        ),
        "stitchboard.sinks": (
            "stitchboard.flows",
            "stitchboard.app",
            "stitchboard.testing",
            "stitchboard.synthetic",
        ),
    }
    wrong = {
        name: sorted(t for t in GRAPH[name] if any(in_layer(t, bad) for bad in banned))
        for layer, banned in forbidden.items()
        for name in MODULES
        if in_layer(name, layer)
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_only_test_support_imports_test_support() -> None:
    users = sorted(
        name
        for name in MODULES
        if not in_layer(name, "stitchboard.testing")
        and any(in_layer(t, "stitchboard.testing") for t in GRAPH[name])
    )
    assert users == []
