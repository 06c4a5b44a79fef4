"""How long a passage the rhythm rules need to catch a log-normal bot (pure logic, no node).

    .venv/bin/python benchmarks/rhythm_sweep.py                  # about a minute
    .venv/bin/python benchmarks/rhythm_sweep.py --runs 50 --lengths 200,400,800

For each passage length, ``--runs`` log-normal bots (the fair-play benchmark's "log-normal
bot": gaps drawn log-normally whatever the letters, 110-180 WPM) and as many honest typists
(``simulators/typing.py`` as in benchmarks/fairplay.py, 20-210 WPM, typos, pauses, letter-pair
speeds of their own keyboard) are judged by ``gameserver.rhythm.rhythm``; it prints, per length,
how many of each were flagged, and which rules fired. Every run is seeded (``--seed``).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fairplay import Texts, person, scripted  # noqa: E402
from gameserver.rhythm import rhythm  # noqa: E402
from simulators.typing import plan_keystrokes  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100, help="bots and honest typists per length")
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="passage lengths, characters")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args(argv)
    lengths = tuple(int(x) for x in args.lengths.split(","))
    print(f"{'chars':>5} {'bots flagged':>12} {'honest flagged':>14}  rules (bots | honest)")
    for chars, bots, bot_rules, honest, honest_rules in sweep(lengths, args.runs, args.seed):
        named = ", ".join(f"{r} {n}" for r, n in bot_rules.most_common()) or "-"
        named_h = ", ".join(f"{r} {n}" for r, n in honest_rules.most_common()) or "-"
        print(f"{chars:>5} {bots:>5} of {args.runs:<4} {honest:>7} of {args.runs:<4}  {named} | {named_h}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
