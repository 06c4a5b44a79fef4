"""The project's modules import one another one way: no circle, not even under ``TYPE_CHECKING``.

Read from the source (ast), so an import under ``TYPE_CHECKING`` or inside a function counts: a
circle there still means two modules that cannot be understood (or changed) apart.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("arena", "gameserver", "lobby", "matchmaker", "persistence", "tournaments", "ops", "simulators")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports() -> dict[str, set[str]]:
    """Each project module and the project modules it imports (``from pkg import mod`` included)."""
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] not in PACKAGES:
                    continue
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] in PACKAGES}
        graph[name] = (deps & modules.keys()) - {name}
    return graph


def test_the_graph_reads_imports() -> None:
    graph = project_imports()
    assert "gameserver.room" in graph["gameserver.session"]
    assert "gameserver.connection" in graph["gameserver.room"]
    assert "gameserver.mover" in graph["gameserver.node"]
    assert "lobby.context" in graph["lobby.middlewares"]


def test_no_module_imports_itself_through_others() -> None:
    try:
        order = list(TopologicalSorter(project_imports()).static_order())
    except CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None
    assert order


def test_a_circle_is_found() -> None:
    graph = project_imports() | {"gameserver.connection": {"gameserver.room"}}
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        assert "gameserver.room" in exc.args[1]
    else:
        raise AssertionError("the circle connection -> room -> connection was not found")
