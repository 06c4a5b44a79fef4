"""Draining a node: what became of its races since the drain began, and when the process exits.

A drain takes no new races and lets every race the node already has end on its own time:

- a running race (or one in its countdown) runs to its own time limit, or ends sooner when every
  racer is done;
- a race still waiting for its players keeps its reserved seats: the players were told to come
  here, so it starts when they are all seated (or at its wait timeout with whoever came) and then
  runs to its time limit like any other; a race nobody joined ends at its wait timeout as it
  would anyway ("nobody joined", counted ``unplayed``).

So a drain ends at the latest ``RaceSettings.longest_race_s`` after it began; ``latest_end``
gives the exact bound for the races the node has. An admin drain with exit (``POST /admin/drain
{"exit": true}``) waits for that, however long; SIGTERM or SIGINT waits at most
``ARENA_NODE_SHUTDOWN_GRACE_S`` and the node then aborts what still runs (``gameserver.stopping.until_exit``).

The node counts each race's outcome when its result is in the outbox (``DrainReport``), shows
the counts in ``GET /admin/status`` and writes them to ``node:{id}:drain`` as it stops, so
``python -m ops.admin drain`` can tell what happened even after the node exited.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from arena.protocol import RaceState

if TYPE_CHECKING:
    from gameserver.race import Race

SHUTDOWN_REASON = "the server is shutting down"  # the end reason of a race the node aborted
FAULT_REASON = "the server failed on this race"  # the end reason of a race aborted after a fault


class Outcome(StrEnum):
    FINISHED = "finished"  # ended on its own: every racer done, or its time limit
    UNPLAYED = "unplayed"  # nobody joined before its wait timeout (aborted "nobody joined")
    ABORTED = "aborted"  # the node stopped before the race ended (the SIGTERM grace ran out), or failed on it


def outcome_of(race: Race) -> Outcome:
    if race.state is RaceState.FINISHED:
        return Outcome.FINISHED
    return Outcome.ABORTED if race.end_reason in (SHUTDOWN_REASON, FAULT_REASON) else Outcome.UNPLAYED


def latest_end(race: Race) -> int:
    """The latest instant (ms) the race can end on its own, as things stand."""
    if race.ended:
        return race.ended_at or race.created_at
    if race.ends_at is not None:  # countdown or running: its time limit is set
        return race.ends_at
    s = race.settings
    return race.created_at + int((s.wait_timeout_s + s.countdown_s) * 1000) + race.time_limit_ms()


@dataclass(slots=True)
class DrainReport:
    """Races of a drain, counted as their results reach the outbox."""

    started_at: int  # ms
    exiting: bool = False  # the process exits once drained (or at the SIGTERM grace)
    finished: int = 0
    unplayed: int = 0
    aborted: int = 0
    moved: int = 0  # handed to another node by a drain with move (gameserver/mover.py), no result here

    def count(self, outcome: Outcome) -> None:
        if outcome is Outcome.FINISHED:
            self.finished += 1
        elif outcome is Outcome.UNPLAYED:
            self.unplayed += 1
        else:
            self.aborted += 1

    def view(self, running: int, ends_by: int | None) -> dict[str, Any]:
        """``running``: races whose result is not written yet; ``ends_by``: when they end at the latest."""
        return asdict(self) | {"running": running, "ends_by": ends_by}
