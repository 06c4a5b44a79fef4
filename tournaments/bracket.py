"""Tournament brackets: seeding, heats, advancement, tie-breaks, final ranking. Pure logic.

A tournament is played in rounds. Each round splits the remaining players into heats of at
most ``heat_size``; a heat is one race (rule ``top_k``) or ``races_per_round`` races scored
by points (rule ``points``). From each heat the best ``advance`` players go on; the last
round is the one that seats everybody left in a single heat (the final).

Seeding: players are ordered by rating (best first) and dealt into heats in snake order
(1 2 3 3 2 1 ...), so heats are balanced in strength and their sizes differ by at most one.
A heat of one player is a bye: that player advances without racing.

Standings inside a heat (documented tie-break, in order):
  1. points (``points`` rule; one race counts as a race of points too),
  2. best single place (a finish beats a DNF; lower place is better),
  3. total WPM over the heat's races (valid results only),
  4. seed (the better-rated player wins the tie),
  5. player id (so the order is total and repeatable).
Flagged results are never ranked: they score like a DNF.

Final ranking: players who reached a later round rank above those eliminated earlier; the
final heat's standings order its players; players eliminated in the same round are ordered
by their standing inside their heat (1st of a heat before 2nd of any heat, ...), then by
heat points, WPM and seed as above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class Advancement(StrEnum):
    TOP_K = "top_k"  # one race per heat, the top ``advance`` places go on
    POINTS = "points"  # ``races_per_round`` races per heat, points decide


@dataclass(frozen=True, slots=True)
class BracketRules:
    heat_size: int = 5
    advance: int = 2  # players per heat who go on
    rule: Advancement = Advancement.TOP_K
    races_per_round: int = 1  # used by the points rule
    max_rounds: int = 10  # a safety bound; the final may come earlier

    def __post_init__(self) -> None:
        if self.heat_size < 2:
            raise ValueError("heat_size must be at least 2")
        if not 1 <= self.advance < self.heat_size:
            raise ValueError("advance must be at least 1 and below heat_size")
        if self.rule is Advancement.TOP_K and self.races_per_round != 1:
            raise ValueError("the top_k rule plays one race per heat")
        if self.races_per_round < 1:
            raise ValueError("races_per_round must be at least 1")


@dataclass(frozen=True, slots=True)
class Entrant:
    player_id: str
    name: str
    rating: float


@dataclass(frozen=True, slots=True)
class RaceEntry:
    """One player's result in one race of a heat, as the outbox record has it."""

    player_id: str
    place: int | None  # None: DNF, no-show or flagged
    wpm: float
    valid: bool = True


@dataclass(frozen=True, slots=True)
class Standing:
    player_id: str
    points: int
    best_place: int | None
    total_wpm: float
    seed: int  # 1 = best-rated entrant of the tournament

    def sort_key(self) -> tuple[int, int, float, int, str]:
        best = self.best_place if self.best_place is not None else 10**6
        return (-self.points, best, -self.total_wpm, self.seed, self.player_id)


def seed_order(entrants: Sequence[Entrant]) -> list[Entrant]:
    """Best rating first; equal ratings by player id so seeding is repeatable."""
    return sorted(entrants, key=lambda e: (-e.rating, e.player_id))


def heat_count(players: int, heat_size: int) -> int:
    return max(1, math.ceil(players / heat_size))


def deal_heats(seeded: Sequence[Entrant], heat_size: int) -> list[list[Entrant]]:
    """Snake-deal already seeded players into balanced heats."""
    n_heats = heat_count(len(seeded), heat_size)
    heats: list[list[Entrant]] = [[] for _ in range(n_heats)]
    for i, entrant in enumerate(seeded):
        lap, pos = divmod(i, n_heats)
        heats[pos if lap % 2 == 0 else n_heats - 1 - pos].append(entrant)
    return heats


def round_sizes(players: int, rules: BracketRules) -> list[int]:
    """Players at the start of each round, up to and including the final."""
    sizes = [players]
    while sizes[-1] > rules.heat_size and len(sizes) < rules.max_rounds:
        heats = deal_sizes(sizes[-1], rules.heat_size)
        sizes.append(sum(min(rules.advance, h) for h in heats))
    return sizes


def deal_sizes(players: int, heat_size: int) -> list[int]:
    n_heats = heat_count(players, heat_size)
    base, extra = divmod(players, n_heats)
    return [base + (1 if i < extra else 0) for i in range(n_heats)]


def race_points(place: int | None, heat_size: int) -> int:
    """Points for one race: heat_size for a win down to 1 for the last place; 0 for a DNF."""
    return 0 if place is None else max(1, heat_size - place + 1)


def heat_standings(
    members: Sequence[Entrant],
    races: Sequence[Sequence[RaceEntry]],
    seeds: dict[str, int],
    heat_size: int,
) -> list[Standing]:
    """Order a heat's members by the documented tie-break; absent players score like DNFs."""
    points = {m.player_id: 0 for m in members}
    best: dict[str, int | None] = {m.player_id: None for m in members}
    wpm = {m.player_id: 0.0 for m in members}
    for race in races:
        for entry in race:
            if entry.player_id not in points:
                continue  # not a member of this heat: ignore rather than trust
            place = entry.place if entry.valid else None
            points[entry.player_id] += race_points(place, heat_size)
            if place is not None:
                previous = best[entry.player_id]
                best[entry.player_id] = place if previous is None else min(previous, place)
                wpm[entry.player_id] += entry.wpm
    standings = [Standing(pid, points[pid], best[pid], round(wpm[pid], 2), seeds[pid]) for pid in points]
    return sorted(standings, key=Standing.sort_key)


def advancers(standings: Sequence[Standing], advance: int) -> list[str]:
    """Who goes on from a heat. A heat of one (a bye) advances its only player."""
    return [s.player_id for s in standings[:advance]]


@dataclass(slots=True)
class RoundOutcome:
    """A finished round: every heat's standings, in heat order."""

    heats: list[list[Standing]] = field(default_factory=list)


def final_ranking(rounds: Sequence[RoundOutcome]) -> list[str]:
    """Every player once, best first (see the module docstring for the rule)."""
    ranking: list[str] = []
    placed: set[str] = set()
    for i in range(len(rounds) - 1, -1, -1):
        outcome = rounds[i]
        is_final = i == len(rounds) - 1
        if is_final:
            for heat in outcome.heats:
                for s in heat:
                    if s.player_id not in placed:
                        ranking.append(s.player_id)
                        placed.add(s.player_id)
            continue
        # Anyone of this round not placed by a later round was eliminated here.
        eliminated = [
            (pos, s) for heat in outcome.heats for pos, s in enumerate(heat) if s.player_id not in placed
        ]
        eliminated.sort(key=lambda item: (item[0], *item[1].sort_key()))
        for _, s in eliminated:
            ranking.append(s.player_id)
            placed.add(s.player_id)
    return ranking


def prize_for(rank: int, prizes: Sequence[str]) -> str | None:
    """Prizes are listed by final rank: prizes[0] for the winner, and so on."""
    return prizes[rank - 1] if 1 <= rank <= len(prizes) else None
