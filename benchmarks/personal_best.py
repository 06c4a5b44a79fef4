"""How often the review rules hold fast honest regulars (pure logic over persistence.review, no node).

    .venv/bin/python benchmarks/personal_best.py                    # 1,000 regulars, 20 races each
    .venv/bin/python benchmarks/personal_best.py --players 200 --races 30

Each regular is one typist model (``simulators/typing.py`` as in benchmarks/fairplay.py) at a
speed of 150-210 WPM, racing fresh quick/standard passages (100-500 characters) one after
another; the day's form moves each race's speed by a log-normal factor (sigma ``--form``) on
top of the simulator's own ±4 %. Each finish is judged by ``persistence.review.review_state``
with the player's history as persistence keeps it (best clear WPM, clear races), and a clear
finish joins the history. "casual start" regulars play their first ten races at 70-80 % of
their speed (a phone, a new keyboard, not trying) before racing in earnest: the honest case the
personal-best rule is most likely to hold. It prints, per class and speed band, how many
regulars had a result held and by which rule, and how many held results were typed below
180 WPM (the goal: none).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.results import ParticipantRecord  # noqa: E402
from benchmarks.fairplay import Texts, person  # noqa: E402
from persistence.review import History, ReviewState, review_state  # noqa: E402
from persistence.settings import ReadSideSettings  # noqa: E402
from simulators.typing import plan_keystrokes  # noqa: E402

BANDS = ((150, 180), (180, 200), (200, 210))


def finish(wpm: float) -> ParticipantRecord:
    return ParticipantRecord(
        player_id="p", name="p", place=1, status="finished", valid=True, flags=[], wpm=wpm,
        raw_wpm=wpm, accuracy=98.0, consistency=80.0, correct_chars=1, typed_chars=1, errors=0,
        elapsed_ms=1, joined_at=0, finished_at=1, keys="", key_times=[],
    )  # fmt: skip


def regular(
    rng: random.Random, texts: Texts, wpm: float, races: int, form: float, casual: bool, s: ReadSideSettings
) -> list[tuple[float, str]]:
    """(awarded WPM, 'clear' | 'wpm' | 'pb') of each race of one regular."""
    out: list[tuple[float, str]] = []
    history = History()
    base = person(rng, wpm)
    slow = rng.uniform(0.7, 0.8)
    for n in range(races):
        speed = wpm * rng.lognormvariate(-form * form / 2, form) * (slow if casual and n < 10 else 1.0)
        profile = dataclasses.replace(base, wpm=speed)  # the same hands, today's speed
        text = texts.cut(rng, rng.randint(100, 500))
        plan = plan_keystrokes(text, profile, rng)
        awarded = round(len(text) * 12_000 / plan[-1][1], 2)
        state = review_state(finish(awarded), s, history)
        if state is ReviewState.CLEAR:
            history = history.plus(awarded)
            out.append((awarded, "clear"))
        else:
            out.append((awarded, "wpm" if awarded >= s.review_wpm else "pb"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--players", type=int, default=1000, help="regulars per class")
    ap.add_argument("--races", type=int, default=20, help="races per regular (the rule needs 10 stored)")
    ap.add_argument("--form", type=float, default=0.05, help="sigma of the day's form between races")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args(argv)
    settings = ReadSideSettings()
    texts = Texts()
    s = settings
    print(
        f"review rules: WPM >= {s.review_wpm:g}; personal best > {s.review_pb_ratio:g}x the best"
        f" of >= {s.review_min_races} stored races and >= {s.review_pb_min_wpm:g} WPM"
    )
    print(f"{'class':<14} {'band':>7} {'players':>7} {'held by pb':>10} {'held by wpm':>11}"
          f" {'races held pb':>13} {'races held wpm':>14} {'held < 180':>10}")  # fmt: skip
    for casual in (False, True):
        rng = random.Random(f"{args.seed}:{casual}")
        bands: dict[tuple[int, int], Counter[str]] = {b: Counter() for b in BANDS}
        for _ in range(args.players):
            wpm = rng.uniform(150, 210)
            races = regular(rng, texts, wpm, args.races, args.form, casual, settings)
            c = bands[next(b for b in BANDS if b[0] <= wpm < b[1] or wpm == b[1])]
            c["players"] += 1
            c["held_pb"] += any(s == "pb" for _, s in races)
            c["held_wpm"] += any(s == "wpm" for _, s in races)
            c["races_pb"] += sum(s == "pb" for _, s in races)
            c["races_wpm"] += sum(s == "wpm" for _, s in races)
            c["races"] += len(races)
            c["held_slow"] += sum(s != "clear" and w < 180 for w, s in races)
        name = "casual start" if casual else "steady"
        for (lo, hi), c in bands.items():
            print(f"{name:<14} {lo:>3}-{hi:<3} {c['players']:>7} {c['held_pb']:>10} {c['held_wpm']:>11}"
                  f" {c['races_pb']:>6} of {c['races']:<6} {c['races_wpm']:>6} of {c['races']:<6}"
                  f" {c['held_slow']:>10}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
