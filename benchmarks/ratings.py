"""Rating models compared on a simulated population whose true skill is known.

Pure and in-process (no servers). Every model sees the same population and the same arrivals;
races are formed by the real pairing code (``matchmaker/pairing.py``) from each model's own
ratings, so a model that rates badly also pairs badly, as it would in production.

Population (``--players``, 10,000 by default): true speed spread like typists' (about 40 ±
17 wpm, clipped to 12-160), players joining over the first 60% of the run, 20% of them
improving (up to +30% over their first 150 races). A race's speed is the true speed times a
day-to-day factor (sd 7%, redrawn every "day" of ``--rounds-per-day`` rounds) times a per-race
factor (sd 6%); 3% of entries do not finish. Each round a random share of the active players
queue with waits of 0-6 s, so pairing forms full, fallback and solo races as in production.

Printed per model:

- ``tau@N``: Kendall's tau between ratings and true current speed over every player who has
  raced, after N rated races in all (several N);
- ``pred``: before each race of the second half, Kendall's tau between the predicted order
  (by rating) and the finishing order, averaged over races (pairing puts close players
  together, so this is near 0 for every model: the matchmaker does its job);
- ``pred rnd``: the same for 4 players drawn at random from those who raced (every 5th race
  of the second half; raced, not rated): how well ratings order players in general;
- ``place``: median (and p80) rated races a newcomer (joined after 40% of the run) needs
  before its rating percentile is within 10 points of its true percentile for three races in
  a row (``never`` counts those that had not);
- ``us/race``: CPU microseconds of the rating update per rated race (the update alone).

    .venv/bin/python benchmarks/ratings.py               # 10,000 players, 40,000 races a model: ~3 min
    .venv/bin/python benchmarks/ratings.py --players 2000 --races 20000   # smoke run, seconds
    .venv/bin/python benchmarks/ratings.py --models glicko2,plackett_luce

Bounded: ``--races`` rated races per model, and the whole run stops at ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import bisect
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openskill.models import (
    BradleyTerryFull,
    BradleyTerryPart,
    PlackettLuce,
    ThurstoneMostellerFull,
    ThurstoneMostellerPart,
)

from arena import rating as glicko
from arena.tickets import QueuedTicket, TicketId
from matchmaker.pairing import PairingRules, form_groups

# openskill's scale (mu 25, sigma 25/3) onto Glicko's (1500, 350): the matchmaker's windows
# are in Glicko points, so every model is paired on the same scale.
SCALE = 350.0 / (25.0 / 3.0)


# ---- population ---------------------------------------------------------------------


@dataclass
class Player:
    pid: str
    base_wpm: float
    joins_round: int
    gain: float  # fraction of speed gained over the first 150 races (0 for most)
    races: int = 0

    def true_wpm(self) -> float:
        return self.base_wpm * (1.0 + self.gain * min(1.0, self.races / 150.0))


def make_population(n: int, rounds: int, rng: random.Random) -> list[Player]:
    players = []
    for i in range(n):
        wpm = min(160.0, max(12.0, rng.gauss(40.0, 17.0)))
        joins = 0 if i < n // 5 else rng.randrange(0, max(1, int(rounds * 0.6)))
        gain = rng.uniform(0.1, 0.3) if rng.random() < 0.2 else 0.0
        players.append(Player(f"p{i}", wpm, joins, gain))
    return players


# ---- candidate models ---------------------------------------------------------------------


class Model:
    """One candidate: rates a race, and gives the number pairing and prediction use."""

    name = ""

    def mm_rating(self, pid: str) -> float:
        raise NotImplementedError

    def rate(self, ranking: Sequence[tuple[str, int | None]]) -> None:
        raise NotImplementedError


class Glicko2(Model):
    name = "glicko2"

    def __init__(self) -> None:
        self.ratings: dict[str, glicko.Rating] = {}

    def mm_rating(self, pid: str) -> float:
        return self.ratings.get(pid, glicko.DEFAULT).rating

    def rate(self, ranking: Sequence[tuple[str, int | None]]) -> None:
        placings = [glicko.Placing(pid, place) for pid, place in ranking]
        self.ratings.update(glicko.rate_race(self.ratings, placings))


class OpenSkill(Model):
    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        self.name = name
        self.model = factory()
        self.ratings: dict[str, Any] = {}

    def _get(self, pid: str) -> Any:
        r = self.ratings.get(pid)
        if r is None:
            r = self.ratings[pid] = self.model.rating()
        return r

    def mm_rating(self, pid: str) -> float:
        r = self.ratings.get(pid)
        mu = 25.0 if r is None else float(r.mu)
        return 1500.0 + SCALE * (mu - 25.0)

    def rate(self, ranking: Sequence[tuple[str, int | None]]) -> None:
        last = 1 + max((p for _, p in ranking if p is not None), default=0)
        teams = [[self._get(pid)] for pid, _ in ranking]
        ranks = [float(p if p is not None else last) for _, p in ranking]  # DNFs tie for last
        for (pid, _), team in zip(ranking, self.model.rate(teams, ranks=ranks), strict=True):
            self.ratings[pid] = team[0]


MODELS: dict[str, Callable[[], Model]] = {
    "glicko2": Glicko2,
    "plackett_luce": lambda: OpenSkill("plackett_luce", PlackettLuce),
    "thurstone_mosteller_full": lambda: OpenSkill("thurstone_mosteller_full", ThurstoneMostellerFull),
    "thurstone_mosteller_part": lambda: OpenSkill("thurstone_mosteller_part", ThurstoneMostellerPart),
    "bradley_terry_full": lambda: OpenSkill("bradley_terry_full", BradleyTerryFull),
    "bradley_terry_part": lambda: OpenSkill("bradley_terry_part", BradleyTerryPart),
    # openskill's default beta (sigma / 2) assumes noisy games; a race's speed is steadier than
    # that (about a quarter of the population's spread), so the same models with beta halved:
    "plackett_luce_beta/2": lambda: OpenSkill("plackett_luce_beta/2", lambda: PlackettLuce(beta=25 / 12)),
    "thurstone_mosteller_full_beta/2": lambda: OpenSkill(
        "thurstone_mosteller_full_beta/2", lambda: ThurstoneMostellerFull(beta=25 / 12)
    ),
    "bradley_terry_full_beta/2": lambda: OpenSkill(
        "bradley_terry_full_beta/2", lambda: BradleyTerryFull(beta=25 / 12)
    ),
}


# ---- Kendall's tau (tau-a, O(n log n) by merge sort) -------------------------------------


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    order = sorted(range(n), key=lambda i: (xs[i], ys[i]))
    seq = [ys[i] for i in order]
    discordant = _count_inversions(seq)
    # pairs tied in x are counted neither way (close enough: model ratings rarely tie)
    pairs = n * (n - 1) // 2
    return 1.0 - 2.0 * discordant / pairs


def _count_inversions(seq: list[float]) -> int:
    if len(seq) < 2:
        return 0
    mid = len(seq) // 2
    left, right = seq[:mid], seq[mid:]
    count = _count_inversions(left) + _count_inversions(right)
    i = j = k = 0
    while i < len(left) and j < len(right):
        if right[j] < left[i]:
            seq[k] = right[j]
            count += len(left) - i
            j += 1
        else:
            seq[k] = left[i]
            i += 1
        k += 1
    seq[k:] = left[i:] + right[j:]
    return count


# ---- the run ----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    taus: dict[int, float] = field(default_factory=dict)
    pred: list[float] = field(default_factory=list)
    pred_random: list[float] = field(default_factory=list)
    placed_after: list[int] = field(default_factory=list)
    never_placed: int = 0
    rate_s: float = 0.0
    rated: int = 0
    races_per_player: dict[int, float] = field(default_factory=dict)


def simulate(model: Model, args: argparse.Namespace, deadline: float) -> Result:
    rng = random.Random(args.seed)  # the same population and arrivals for every model
    rounds_est = max(1, args.races // max(1, args.players // 25))
    players = make_population(args.players, rounds_est, rng)
    by_id = {p.pid: p for p in players}
    rules = PairingRules()
    checkpoints = sorted({int(args.races * f) for f in (0.1, 0.25, 0.5, 1.0)})
    result = Result(model.name)
    newcomer_round = int(rounds_est * 0.4)
    streak: dict[str, int] = {}
    placed: set[str] = set()
    newcomers: set[str] = set()
    day_factor: dict[str, float] = {}
    raced_list: list[Player] = []  # everyone who has raced, in order of first race
    rnd = 0
    while result.rated < args.races and time.monotonic() < deadline:
        if rnd % args.rounds_per_day == 0:
            day_factor = {p.pid: rng.gauss(1.0, 0.07) for p in players}
        active = [p for p in players if p.joins_round <= rnd]
        for p in active:
            if p.joins_round == rnd and rnd >= newcomer_round:
                newcomers.add(p.pid)
        queued = [p for p in active if rng.random() < 0.08]
        now = 1_000_000
        tickets = [
            QueuedTicket(
                TicketId(f"t{rnd}-{p.pid}"),
                p.pid,
                p.pid,
                model.mm_rating(p.pid),
                None,
                "quick",
                "eu",
                now - rng.randrange(0, 6000),
            )
            for p in queued
        ]
        tickets.sort(key=lambda t: t.enqueued_at)
        groups = form_groups(tickets, [], rules, now)
        second_half = result.rated >= args.races // 2
        for group in groups:
            if len(group.tickets) < 2:
                continue
            entrants = [by_id[t.player_id] for t in group.tickets]
            speeds = {
                p.pid: p.true_wpm() * day_factor[p.pid] * rng.gauss(1.0, 0.06)
                for p in entrants
                if rng.random() >= 0.03
            }
            finishers = sorted(speeds, key=lambda pid: -speeds[pid])
            place = {pid: i + 1 for i, pid in enumerate(finishers)}
            ranking = [(p.pid, place.get(p.pid)) for p in entrants]
            if second_half and len(finishers) >= 2:
                predicted = [model.mm_rating(pid) for pid in finishers]
                actual = [-float(place[pid]) for pid in finishers]
                result.pred.append(kendall_tau(predicted, actual))
            if second_half and result.rated % 5 == 0:
                result.pred_random.append(_predict_random_race(model, raced_list, day_factor, rng))
            t0 = time.perf_counter()
            model.rate(ranking)
            result.rate_s += time.perf_counter() - t0
            result.rated += 1
            for p in entrants:
                if p.races == 0:
                    raced_list.append(p)
                p.races += 1
            if result.rated in checkpoints:
                raced = [p for p in players if p.races > 0]
                result.taus[result.rated] = kendall_tau(
                    [model.mm_rating(p.pid) for p in raced], [p.true_wpm() for p in raced]
                )
                result.races_per_player[result.rated] = statistics.mean(p.races for p in raced)
            if result.rated >= args.races:
                break
        # newcomers: are their percentiles right yet?
        _track_newcomers(model, players, newcomers, placed, streak, result, groups)
        rnd += 1
    result.never_placed = len(newcomers - placed)
    for p in players:  # the next model starts from the same population
        p.races = 0
    return result


def _predict_random_race(
    model: Model, raced: Sequence[Player], day_factor: dict[str, float], rng: random.Random
) -> float:
    """Kendall's tau of the predicted against the run order of 4 players drawn at random (not
    paired by rating, so the order is not a coin toss), raced but not rated."""
    entrants = rng.sample(raced, 4)
    speeds = [p.true_wpm() * day_factor[p.pid] * rng.gauss(1.0, 0.06) for p in entrants]
    return kendall_tau([model.mm_rating(p.pid) for p in entrants], speeds)


def _track_newcomers(
    model: Model,
    players: Sequence[Player],
    newcomers: set[str],
    placed: set[str],
    streak: dict[str, int],
    result: Result,
    groups: Sequence[Any],
) -> None:
    raced_now = {t.player_id for g in groups if len(g.tickets) >= 2 for t in g.tickets}
    todo = [pid for pid in raced_now if pid in newcomers and pid not in placed]
    if not todo:
        return
    raced = [p for p in players if p.races > 0]
    ratings = sorted(model.mm_rating(p.pid) for p in raced)
    speeds = sorted(p.true_wpm() for p in raced)
    n = len(raced)
    by_id = {p.pid: p for p in raced}
    for pid in todo:
        p = by_id[pid]
        mine = bisect.bisect_left(ratings, model.mm_rating(pid)) / n
        truth = bisect.bisect_left(speeds, p.true_wpm()) / n
        streak[pid] = streak.get(pid, 0) + 1 if abs(mine - truth) <= 0.10 else 0
        if streak[pid] >= 3:
            placed.add(pid)
            result.placed_after.append(p.races)


def report(results: Sequence[Result]) -> None:
    if not results:
        return
    checkpoints = sorted(results[0].taus)
    taus = (f"tau@{n}" for n in checkpoints)
    head = ["model", *taus, "pred", "pred rnd", "place p50/p80", "never", "us/race"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in results:
        placed = sorted(r.placed_after)
        p50 = placed[len(placed) // 2] if placed else -1
        p80 = placed[int(len(placed) * 0.8)] if placed else -1
        row = [
            r.name,
            *(f"{r.taus[n]:.3f}" if n in r.taus else "-" for n in checkpoints),
            f"{statistics.mean(r.pred):.3f}" if r.pred else "-",
            f"{statistics.mean(r.pred_random):.3f}" if r.pred_random else "-",
            f"{p50}/{p80}",
            str(r.never_placed),
            f"{1e6 * r.rate_s / max(1, r.rated):.0f}",
        ]
        print(" | ".join(row))
    first = results[0]
    rpp = ", ".join(f"{n}: {first.races_per_player[n]:.1f}" for n in sorted(first.races_per_player))
    print(f"\nmean rated races per player who raced, at each N ({first.name}): {rpp}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", type=int, default=10_000)
    ap.add_argument("--races", type=int, default=40_000, help="rated races per model")
    ap.add_argument("--rounds-per-day", type=int, default=20, help="rounds between day-to-day redraws")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--seed", type=int, default=18)
    ap.add_argument("--max-seconds", type=float, default=300.0, help="stop the whole run after this")
    args = ap.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        ap.error(f"unknown model(s): {', '.join(unknown)}")
    deadline = time.monotonic() + args.max_seconds
    results = []
    for name in names:
        if time.monotonic() >= deadline:
            print(f"{name}: skipped, --max-seconds reached")
            continue
        t0 = time.monotonic()
        results.append(simulate(MODELS[name](), args, deadline))
        print(f"{name}: {results[-1].rated} races in {time.monotonic() - t0:.1f} s", flush=True)
    print()
    report(results)
    if any(r.rated < args.races for r in results):
        print("\n(partial: --max-seconds reached before --races for some models)")


if __name__ == "__main__":
    main()
