"""Ghosts: a stored keystroke log replayed on a race's clock as a racer everyone sees.

A ghost is a past racer's keystroke log (keys and their times, ms since that race's start),
taken by the lobby from PostgreSQL only if that result was clean (no fair-play flag, not held or
rejected for review). It travels to the node in the race definition (``POST /admin/races``
``ghosts``, validated here) and is kept in the race's checkpoint definition, so a rebuilt race
has its ghosts too. The race feeds each ghost the keys whose time has come at every ``advance``
(the tick, 10 Hz), through the same ``TypingState`` as a player's keys, so its position, WPM and
finish are computed like anyone's. A ghost is never judged by fair play (its log was judged when
it was raced), never waits for a socket, and is left out of the race's outbox record: its result
is shown to the racers, never stored, rated or ranked as a new one.

Pure: no I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arena.ids import PlayerId

MAX_GHOSTS = 3  # per race: a solo race against one, a private race with a few
# A log is what a race accepted from one racer: the passage (a marathon is ~2,000 chars) plus
# its errors and corrections. Twice the longest passage's keys is ample; more is not a log we wrote.
MAX_GHOST_KEYS = 12_000
MAX_NAME_CHARS = 32
MAX_REF_CHARS = 64  # source race and player ids


class GhostError(ValueError):
    """A ghost definition the node refuses; the message says which field and why."""


@dataclass(frozen=True, slots=True)
class GhostLog:
    """One ghost: who it replays (``source_race``, ``source_player``) and their keystroke log."""

    id: PlayerId  # its id in this race: "ghost-1".. (never a real player's id)
    name: str
    keys: str  # "\b" is a backspace, as stored (persistence/keylog.py)
    times: tuple[int, ...]  # ms since the race start, non-decreasing
    source_race: str
    source_player: str

    def to_wire(self) -> list[Any]:
        """The compact form of the checkpoint definition."""
        return [self.id, self.name, self.keys, list(self.times), self.source_race, self.source_player]

    @classmethod
    def from_wire(cls, item: Sequence[Any]) -> GhostLog:
        gid, name, keys, times, race, player = item
        times_ = tuple(int(t) for t in times)
        return cls(PlayerId(str(gid)), str(name), str(keys), times_, str(race), str(player))


def ghost_id(n: int) -> PlayerId:
    return PlayerId(f"ghost-{n}")


def parse_ghosts(raw: object, *, limit_ms: int) -> list[GhostLog]:
    """The ``ghosts`` of a race definition: a list of at most ``MAX_GHOSTS`` objects
    ``{name, keys, key_times, race_id, player_id}``; every field range-checked. Key times must
    be non-decreasing and within the race's time limit ``limit_ms``."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_GHOSTS:
        raise GhostError(f"ghosts must be a list of at most {MAX_GHOSTS} objects")
    ghosts = []
    for n, item in enumerate(raw, start=1):
        if not isinstance(item, dict):
            raise GhostError(f"ghost {n} must be an object")
        name, keys, times = item.get("name"), item.get("keys"), item.get("key_times")
        race, player = item.get("race_id", ""), item.get("player_id", "")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
            raise GhostError(f"ghost {n}: name must be 1 to {MAX_NAME_CHARS} characters")
        if not all(isinstance(ref, str) and len(ref) <= MAX_REF_CHARS for ref in (race, player)):
            raise GhostError(f"ghost {n}: race_id and player_id must be strings of at most {MAX_REF_CHARS}")
        if not isinstance(keys, str) or not 1 <= len(keys) <= MAX_GHOST_KEYS:
            raise GhostError(f"ghost {n}: keys must be a string of 1 to {MAX_GHOST_KEYS} keys")
        if not isinstance(times, list) or len(times) != len(keys):
            raise GhostError(f"ghost {n}: key_times must be a list with one time per key")
        last = 0
        for t in times:
            if type(t) is not int or not last <= t <= limit_ms:
                raise GhostError(f"ghost {n}: key_times must be non-decreasing integers from 0 to {limit_ms}")
            last = t
        ghosts.append(GhostLog(ghost_id(n), name, keys, tuple(times), race, player))
    return ghosts


class GhostFeed:
    """Where a ghost's replay stands: the keys due up to an instant of the race clock."""

    __slots__ = ("_next", "log")

    def __init__(self, log: GhostLog) -> None:
        self.log = log
        self._next = 0

    @property
    def exhausted(self) -> bool:
        return self._next >= len(self.log.times)

    def due(self, elapsed_ms: int) -> tuple[str, list[int]] | None:
        """The keys typed up to ``elapsed_ms`` since the start and not yet fed; None if none."""
        i = self._next
        j = bisect_right(self.log.times, elapsed_ms, lo=i)
        if j == i:
            return None
        self._next = j
        return self.log.keys[i:j], list(self.log.times[i:j])
