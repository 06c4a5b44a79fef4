"""The lobby's modules import one another one way: parts -> ``lobby.context`` -> handler modules.

Read from the source (ast), so an import under ``TYPE_CHECKING`` or inside a function counts too.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import lobby

LOBBY_DIR = Path(lobby.__file__).parent

# What ``lobby.context.Lobby`` holds: these modules must not reach lobby.context, even indirectly.
PARTS = ("lobby.auth", "lobby.nodes", "lobby.presence", "lobby.private_races", "lobby.ratelimit")


def lobby_imports() -> dict[str, set[str]]:
    """Each ``lobby.*`` module and the ``lobby.*`` modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(LOBBY_DIR.glob("*.py")):
        name = "lobby" if path.stem == "__init__" else f"lobby.{path.stem}"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "lobby":
                deps |= {f"lobby.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lobby."):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name.startswith("lobby.")}
        graph[name] = deps
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in graph.get(todo.pop(), set()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_the_graph_reads_imports() -> None:
    graph = lobby_imports()
    assert {"lobby.context", "lobby.app", *PARTS} <= graph.keys()
    assert set(PARTS) <= graph["lobby.context"]  # Lobby names its parts' types
    assert "lobby.context" in graph["lobby.middlewares"]


def test_no_part_reaches_the_context() -> None:
    graph = lobby_imports()
    for part in PARTS:
        assert "lobby.context" not in reachable(graph, part), part


def test_the_lobby_package_has_no_import_cycle() -> None:
    try:
        TopologicalSorter(lobby_imports()).prepare()
    except CycleError as exc:
        raise AssertionError(f"import cycle: {exc.args[1]}") from None
