"""How long a passage the rhythm rules need to catch a log-normal bot (pure logic, no node).

    .venv/bin/python benchmarks/rhythm_sweep.py                  # about a minute
    .venv/bin/python benchmarks/rhythm_sweep.py --runs 50 --lengths 200,400,800
    .venv/bin/python benchmarks/rhythm_sweep.py --careers 1000 --races 8   # pooled letter pairs

For each passage length, ``--runs`` log-normal bots (the fair-play benchmark's "log-normal
bot": gaps drawn log-normally whatever the letters, 110-180 WPM) and as many honest typists
(``simulators/typing.py`` as in benchmarks/fairplay.py, 20-210 WPM, typos, pauses, letter-pair
speeds of their own keyboard) are judged by ``gameserver.rhythm.rhythm``; it prints, per length,
how many of each were flagged, and which rules fired. Every run is seeded (``--seed``).

``--careers N`` judges careers instead (``persistence.pairs``: letter-pair evidence pooled over a
player's races): N honest typists (one model per player, 20-210 WPM, a fresh 100-500 character
passage each race), N/4 honest typists of the hard corner (flat keyboard, pair-speed sigma 0.2,
jittery hands, jitter 0.5-0.55), N/4 log-normal bots (110-180 WPM), N/4 replayers (one person's
timing recorded on another text, replayed 1.6x faster: 150-200 WPM) and N/4 pair-table bots (a
made-up speed per letter pair, fixed across its races, 110-180 WPM), ``--races`` short races each.
It prints, per race K, how many careers of each are held by then (by either letter-pair rule:
the pooled F, ``pairs_history``, or the agreement with the population profile,
``pairs_population``; the profile built first by ``--population`` simulated honest regulars, then
fixed), the lowest pooled F each class reached (the margin below which the F threshold must not
go) and the spread of the careers' agreement r with the profile (``--min-r``: its threshold).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fairplay import Texts, pair_table_gaps, person, scripted, warm_population  # noqa: E402
from gameserver.rhythm import rhythm  # noqa: E402
from persistence.pair_population import PopulationLimits, PopulationProfile, agreement  # noqa: E402
from persistence.pair_population import judged as population_judged  # noqa: E402
from persistence.pairs import PairHistory, PairLimits, pair_f, race_pairs  # noqa: E402
from simulators.typing import TypingProfile, plan_keystrokes  # noqa: E402

LENGTHS = (100, 200, 300, 400, 500, 600, 800, 1000, 1200)


def judged(plan: list[tuple[str, int]]) -> tuple[str, ...]:
    found = rhythm("".join(k for k, _ in plan), [t for _, t in plan])
    return () if found is None else found.failed


def sweep(
    lengths: tuple[int, ...], runs: int, seed: int
) -> list[tuple[int, int, Counter[str], int, Counter[str]]]:
    """Per length: (length, bots flagged, their rules, honest flagged, their rules)."""
    texts = Texts()
    rows = []
    for chars in lengths:
        rng = random.Random(seed * 100_003 + chars)
        bot_rules: Counter[str] = Counter()
        honest_rules: Counter[str] = Counter()
        bots = honest = 0
        for _ in range(runs):
            text = texts.cut(rng, chars)
            mean = 12_000 / rng.uniform(110, 180)
            gaps = [mean * rng.lognormvariate(-0.08, 0.4) for _ in text]
            failed = judged(scripted(text, gaps.__getitem__))
            bots += bool(failed)
            bot_rules.update(failed)
            failed = judged(plan_keystrokes(text, person(rng, rng.uniform(20, 210)), rng))
            honest += bool(failed)
            honest_rules.update(failed)
        rows.append((chars, bots, bot_rules, honest, honest_rules))
    return rows


Plan = list[tuple[str, int]]
CAREER_CLASSES = ("honest", "honest flat+jittery", "log-normal bot", "replayed 1.6x", "pair-table bot")


def career_races(kind: str, rng: random.Random, texts: Texts, races: int) -> list[Plan]:
    """One player's ``races`` short races (100-500 characters each, fresh passages)."""
    plans: list[Plan] = []
    wpm = rng.uniform(110, 180)
    profile = person(rng, rng.uniform(20, 210))
    if kind == "honest flat+jittery":
        p = profile
        profile = TypingProfile(
            p.wpm, p.error_rate, rng.uniform(0.5, 0.55), p.notice_delay_chars, p.pause_chance, 0.2,
            p.keyboard, p.population,
        )  # fmt: skip
    recorder = person(rng, rng.uniform(95, 125))  # replayed 1.6x: 150-200 WPM
    # its own letter-pair speeds, kept across races (drawn only for it: the others' streams stay)
    table = pair_table_gaps(rng, wpm) if kind == "pair-table bot" else None
    for _ in range(races):
        text = texts.cut(rng, rng.randint(100, 500))
        if kind.startswith("honest"):
            plans.append(plan_keystrokes(text, profile, rng))
        elif table is not None:
            plans.append(scripted(text, table(text).__getitem__))
        elif kind == "log-normal bot":
            plans.append(scripted(text, lambda i: 12_000 / wpm * rng.lognormvariate(-0.08, 0.4)))
        else:
            other = texts.cut(rng, len(text) + 200)
            recorded = [t for _, t in plan_keystrokes(other, recorder, rng)]
            plans.append([(ch, round(recorded[i] / 1.6)) for i, ch in enumerate(text)])
    return plans


@dataclass(slots=True)
class CareerRow:
    count: int
    held_by: list[int]  # careers held by race K (any rule)
    lowest_f: float = float("inf")  # lowest pooled F seen
    by_reason: Counter[str] = field(default_factory=Counter)
    rs: list[float] = field(default_factory=list)  # each judged career's last r with the profile


def careers(
    n: int,
    races: int,
    seed: int,
    limits: PairLimits,
    population: PopulationLimits,
    profile: PopulationProfile,
) -> dict[str, CareerRow]:
    """Per class: careers, held by race 1..races (either letter-pair rule), lowest pooled F, r.
    The population profile is fixed (``warm_population``): the careers here are judged by it,
    they do not add to it."""
    texts = Texts()
    out: dict[str, CareerRow] = {}
    for kind in CAREER_CLASSES:
        count = n if kind == "honest" else max(1, n // 4)
        rng = random.Random(f"{seed}:{kind}")
        row = out[kind] = CareerRow(count, [0] * races)
        for c in range(count):
            history = PairHistory()
            r_last: float | None = None
            for k, plan in enumerate(career_races(kind, rng, texts, races)):
                keys, times = "".join(key for key, _ in plan), [t for _, t in plan]
                pairs = race_pairs(keys, times, limits.pause_ms, limits.clip)
                history = history.plus(f"{c}:{k}", pairs, limits).judged(limits)
                history, _ = population_judged(history, profile, limits, population)
                f, intervals = pair_f(history.pooled(), limits)
                if f is not None:
                    row.lowest_f = min(row.lowest_f, f)
                if intervals >= limits.min_intervals:
                    r_last = agreement(history.pooled(), profile, population)[0]
                if history.held:
                    row.by_reason[history.why] += 1
                    for j in range(k, races):
                        row.held_by[j] += 1
                    break
            if r_last is not None:
                row.rs.append(r_last)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100, help="bots and honest typists per length")
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="passage lengths, characters")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--careers", type=int, default=0, help="honest careers (0: sweep lengths instead)")
    ap.add_argument("--races", type=int, default=8, help="short races per career")
    ap.add_argument("--min-f", type=float, default=PairLimits().min_f, help="pooled F threshold")
    ap.add_argument("--min-r", type=float, default=PopulationLimits().min_r, help="agreement r (0: off)")
    ap.add_argument("--population", type=int, default=300, help="honest players who built the profile")
    args = ap.parse_args(argv)
    if args.careers:
        limits = PairLimits(min_f=args.min_f)
        population = PopulationLimits(min_r=args.min_r)
        profile = warm_population(args.population, args.seed, Texts(), limits, population)
        print(
            f"pooled letter pairs, F < {limits.min_f} from {limits.min_intervals} intervals held; "
            f"agreement with the population profile ({profile.players} of {args.population} honest "
            f"players contributed) r < {population.min_r} held"
        )
        head = f"{'class':<20} {'n':>5}  held by race K = 1..{args.races}{'':<10} lowest F"
        print(f"{head}  r: lowest  10th  median  highest  held by")
        rows = careers(args.careers, args.races, args.seed, limits, population, profile)
        for kind, row in rows.items():
            rs = sorted(row.rs)
            tenth = statistics.quantiles(rs, n=10)[0] if len(rs) >= 10 else rs[0] if rs else 0.0
            mid = statistics.median(rs) if rs else 0.0
            r_text = f"{rs[0]:+.3f} {tenth:+.3f} {mid:+.3f} {rs[-1]:+.3f}" if rs else "-"
            why = ", ".join(f"{w} {c}" for w, c in sorted(row.by_reason.items())) or "-"
            print(
                f"{kind:<20} {row.count:>5}  {' '.join(f'{h:>5}' for h in row.held_by)}  {row.lowest_f:8.3f}"
                f"  {r_text}  {why}"
            )
        return 0
    lengths = tuple(int(x) for x in args.lengths.split(","))
    print(f"{'chars':>5} {'bots flagged':>12} {'honest flagged':>14}  rules (bots | honest)")
    for chars, bots, bot_rules, honest, honest_rules in sweep(lengths, args.runs, args.seed):
        named = ", ".join(f"{r} {n}" for r, n in bot_rules.most_common()) or "-"
        named_h = ", ".join(f"{r} {n}" for r, n in honest_rules.most_common()) or "-"
        print(f"{chars:>5} {bots:>5} of {args.runs:<4} {honest:>7} of {args.runs:<4}  {named} | {named_h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
