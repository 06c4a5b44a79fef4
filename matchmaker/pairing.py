"""Forming races from queued tickets: pure, no I/O.

One pass looks at a queue's oldest tickets (and the long-waiting tickets of neighbouring
regions) and forms groups:

1. Anchors are taken oldest first, so the longest wait is served first.
2. An anchor's skill window is ``base_window + widen_per_s * waited`` (capped at
   ``max_window``); partners are the tickets closest in rating inside it, home region first.
3. Until ``fallback_wait`` a race needs ``max_players``; from then on ``min_players``.
4. A ticket of a neighbouring region may join only once it has itself waited
   ``neighbour_wait``; the race is hosted in the anchor's region.
5. From ``max_wait`` a ticket gets a race even alone (a solo race against the clock), so no
   player waits forever, whatever the traffic.

Languages: a ticket with a language only shares a race with tickets of that language or of
none. The same player never appears twice in a group.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from arena.tickets import QueuedTicket


@dataclass(frozen=True, slots=True)
class PairingRules:
    min_players: int = 2
    max_players: int = 5
    base_window: float = 100.0
    widen_per_s: float = 25.0
    max_window: float = 800.0
    fallback_wait_ms: int = 3000
    neighbour_wait_ms: int = 6000
    max_wait_ms: int = 15000

    def window(self, waited_ms: int) -> float:
        return min(self.max_window, self.base_window + self.widen_per_s * max(0, waited_ms) / 1000)

    def needed(self, waited_ms: int) -> int:
        if waited_ms >= self.max_wait_ms:
            return 1
        if waited_ms >= self.fallback_wait_ms:
            return self.min_players
        return self.max_players


class GroupKind(StrEnum):
    FULL = "full"  # max players, home region only
    FALLBACK = "fallback"  # fewer players, after the fallback wait
    NEIGHBOUR = "neighbour"  # includes tickets from a neighbouring region
    SOLO = "solo"  # one player, after the max wait


@dataclass(frozen=True, slots=True)
class Group:
    region: str  # where the race is hosted: the anchor's region
    tickets: tuple[QueuedTicket, ...]  # the anchor first
    kind: GroupKind

    @property
    def anchor(self) -> QueuedTicket:
        return self.tickets[0]


def _kind(region: str, tickets: Sequence[QueuedTicket], rules: PairingRules) -> GroupKind:
    if len(tickets) == 1:
        return GroupKind.SOLO
    if any(t.region != region for t in tickets):
        return GroupKind.NEIGHBOUR
    return GroupKind.FULL if len(tickets) >= rules.max_players else GroupKind.FALLBACK


def form_groups(
    home: Sequence[QueuedTicket],
    neighbours: Sequence[QueuedTicket],
    rules: PairingRules,
    now_ms: int,
) -> list[Group]:
    """Groups to claim from ``home`` (one queue) plus eligible ``neighbours``; none overlap."""
    home_index = _RatingIndex(home)
    eligible = [t for t in neighbours if now_ms - t.enqueued_at >= rules.neighbour_wait_ms]
    foreign_index = _RatingIndex(eligible)
    groups: list[Group] = []
    for anchor_pos in sorted(range(len(home_index.items)), key=lambda i: home_index.order_key(i)):
        if home_index.taken(anchor_pos):
            continue
        anchor = home_index.items[anchor_pos]
        waited = now_ms - anchor.enqueued_at
        window = rules.window(waited)
        fit = _Fit(anchor)
        room = rules.max_players - 1
        home_picks = home_index.nearest(anchor.rating, window, room, fit.accepts)
        foreign_picks = foreign_index.nearest(anchor.rating, window, room - len(home_picks), fit.accepts)
        size = 1 + len(home_picks) + len(foreign_picks)
        if size < rules.needed(waited):
            continue
        home_index.take(anchor_pos)
        for i in home_picks:
            home_index.take(i)
        for i in foreign_picks:
            foreign_index.take(i)
        tickets = (
            anchor,
            *(home_index.items[i] for i in home_picks),
            *(foreign_index.items[i] for i in foreign_picks),
        )
        groups.append(Group(anchor.region, tickets, _kind(anchor.region, tickets, rules)))
    return groups


@dataclass
class _Fit:
    """Who may still join a group being formed: language and player checks."""

    anchor: QueuedTicket
    language: str | None = None
    players: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.language = self.anchor.language
        self.players = {self.anchor.player_id}

    def accepts(self, ticket: QueuedTicket) -> bool:
        if ticket.id == self.anchor.id or ticket.player_id in self.players:
            return False
        if ticket.language is not None:
            if self.language is not None and ticket.language != self.language:
                return False
            self.language = ticket.language
        self.players.add(ticket.player_id)
        return True


class _RatingIndex:
    """Tickets sorted by rating; taken ones are skipped via path-compressed pointers, so a
    pass over a pool of n tickets stays near O(n log n) however many are taken."""

    def __init__(self, tickets: Sequence[QueuedTicket]) -> None:
        self.items = sorted(tickets, key=lambda t: (t.rating, t.enqueued_at, t.id))
        self._ratings = [t.rating for t in self.items]
        n = len(self.items)
        self._right = list(range(n + 1))  # _right[i]: next untaken index >= i (n: none)
        self._left = list(range(n + 1))  # _left[i + 1] - 1: previous untaken index <= i (-1: none)
        self._taken = [False] * n

    def order_key(self, i: int) -> tuple[int, str]:
        t = self.items[i]
        return (t.enqueued_at, t.id)

    def taken(self, i: int) -> bool:
        return self._taken[i]

    def take(self, i: int) -> None:
        self._taken[i] = True
        self._right[i] = i + 1
        self._left[i + 1] = i

    def nearest(
        self, rating: float, window: float, limit: int, accepts: Callable[[QueuedTicket], bool]
    ) -> list[int]:
        """Up to ``limit`` untaken tickets within ``window`` of ``rating``, closest first."""
        picks: list[int] = []
        if limit <= 0 or not self.items:
            return picks
        pos = bisect.bisect_left(self._ratings, rating)
        lo = self._prev(pos - 1)
        hi = self._next(pos)
        while len(picks) < limit:
            lo_ok = lo >= 0 and rating - self._ratings[lo] <= window
            hi_ok = hi < len(self.items) and self._ratings[hi] - rating <= window
            if not lo_ok and not hi_ok:
                break
            if hi_ok and (not lo_ok or self._ratings[hi] - rating <= rating - self._ratings[lo]):
                if accepts(self.items[hi]):
                    picks.append(hi)
                hi = self._next(hi + 1)
            else:
                if accepts(self.items[lo]):
                    picks.append(lo)
                lo = self._prev(lo - 1)
        return picks

    def _next(self, i: int) -> int:
        return _find(self._right, i)

    def _prev(self, i: int) -> int:
        return _find(self._left, i + 1) - 1


def _find(parent: list[int], i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root
