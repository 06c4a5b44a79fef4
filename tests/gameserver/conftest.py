"""Gameserver test helpers live in the root conftest; these names are re-exported for imports."""

from tests.conftest import ADMIN, FAST_RACE, NodeFactory, RunningNode, with_race

__all__ = ["ADMIN", "FAST_RACE", "NodeFactory", "RunningNode", "with_race"]
