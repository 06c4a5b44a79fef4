"""What ghosts cost a node's CPU, measured in-process (issue 16; docs/PERFORMANCE.md "Ghosts").

Races of one player run for ``--seconds`` of race clock at the node's tick rate (10 Hz): each
tick calls ``Race.advance`` (which feeds every ghost the keys its log typed by then, through the
same ``TypingState`` as a player's keys) and, when the race is dirty, builds its progress rows,
as the node's tick does. The same races without ghosts run alternately; the difference in
``time.process_time`` per race-second is what ghosts add. No I/O, no sockets: the frames the
ghosts' progress causes are the node's ordinary frame cost (docs/PERFORMANCE.md, node capacity).
Bounded: ``--races`` races x ``--seconds`` x ``--repeat``.

    .venv/bin/python benchmarks/ghost_cost.py [--races 200] [--ghosts 3] [--seconds 30] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import RaceType
from gameserver.fairplay import FairPlayLimits
from gameserver.ghost import parse_ghosts
from gameserver.passages import Passage, PassageKind
from gameserver.race import Race
from gameserver.scoring import ScoringLimits
from gameserver.settings import RaceSettings

TEXT = "the quick brown fox jumps over the lazy dog " * 8  # ~350 chars, a standard passage
SETTINGS = RaceSettings(countdown_s=0.0, wait_timeout_s=10, standard_limit_s=600)
TICK_MS = 100


def ghost_log(rng: random.Random) -> dict[str, object]:
    """A 70-WPM typist's log of the whole passage: ~170 ms a key, irregular."""
    times, t = [], 0
    for _ in TEXT:
        t += max(30, int(rng.gauss(170, 60)))
        times.append(t)
    return {"name": "ghost", "keys": TEXT, "key_times": times, "race_id": "r", "player_id": "p"}


def make_races(n: int, ghosts: int, rng: random.Random) -> list[Race]:
    races = []
    for i in range(n):
        logs = tuple(parse_ghosts([ghost_log(rng) for _ in range(ghosts)], limit_ms=600_000))
        race = Race(
            race_id=RaceId(f"r{i}"),
            node_id=NodeId("bench"),
            race_type=RaceType.STANDARD,
            passage=Passage(id="s1", kind=PassageKind.STANDARD, text=TEXT, source="bench"),
            seats={PlayerId("p1")},
            now=0,
            settings=SETTINGS,
            scoring=ScoringLimits(),
            fairplay=FairPlayLimits(),
            ghosts=logs,
        )
        race.join(PlayerId("p1"), "player", 0)
        races.append(race)
    return races


def run(races: list[Race], seconds: float) -> float:
    """CPU seconds for ``seconds`` of race clock: every race ticked at 10 Hz."""
    start_at = races[0].start_at or 0
    started = time.process_time()
    for t in range(start_at, start_at + int(seconds * 1000), TICK_MS):
        for race in races:
            race.advance(t)
            if race.dirty:
                race.progress_rows(t)
                race.take_changes()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--races", type=int, default=200)
    parser.add_argument("--ghosts", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(16)
    costs: dict[int, list[float]] = {0: [], args.ghosts: []}
    for _ in range(args.repeat):
        for ghosts in costs:
            races = make_races(args.races, ghosts, rng)
            costs[ghosts].append(run(races, args.seconds) / (args.races * args.seconds))
    base, with_ghosts = (statistics.median(costs[g]) for g in costs)
    keys_per_s = len(TEXT) / (ghost_log(random.Random(0))["key_times"][-1] / 1000)  # type: ignore[index]
    print(f"{args.races} races, {args.ghosts} ghosts each, {args.seconds:.0f} s race clock, x{args.repeat}")
    print(f"per race-second: {base * 1e6:.1f} us without ghosts, {with_ghosts * 1e6:.1f} us with")
    extra = with_ghosts - base
    print(f"ghosts add {extra * 1e6:.1f} us per race-second, {extra * 1e6 / args.ghosts:.1f} us per ghost")
    share = extra * 1000 * 100  # CPU seconds a second, for 1,000 races, in % of a core
    print(f"(~{keys_per_s:.1f} keys a second each): {share:.1f} % of a core per 1,000 such races")

if __name__ == "__main__":
    main()
