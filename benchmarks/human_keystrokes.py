"""The fair-play timing rules on recorded human keystrokes (pure logic, no node).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/human_keystrokes.py      # ≈ 30 s after the download
    PYTHONPATH=$PWD .venv/bin/python benchmarks/human_keystrokes.py --race-keys 200 --min-keys 1000

Every rule of docs/FAIRPLAY.md is calibrated on the simulator's model of people
(``simulators/typing.py``). This runs them on real people instead: the Language Hero corpus, free
text that 162 learners of French typed to a chatbot in a game, one event per change of the message
box with the box's content and a millisecond timestamp (521,203 typing events). It ships inside
the PyPI package ``keylogging-analysis`` 0.0.1 (BSD-3-Clause licence file, "MIT" in its metadata;
the corpus has no separate terms), as a 103 MB CSV: too big for the repository, so this script
fetches the wheel at run time with ``pip download`` into ``--cache`` (a temporary folder, /tmp by
default) and reads the CSV straight from it. The package lists some messages as native speakers'
or as nonsense bursts; all are kept here (harder on the rules).

Keys: an event whose content is the previous content plus one character is that key at that
time; one character removed at the end is a backspace; any other change (a paste, an autocomplete,
an edit in the middle) breaks the log there (no interval spans it). Each player's messages, in
order, are cut into pseudo-races of at least ``--race-keys`` keys; between messages the gap is
set above the pause limit, so no interval spans two messages.

Per player it reports what the server would do with those races:

* the single-race rhythm rules (``gameserver.rhythm.rhythm``: spread, shape, periodicity, letter
  pairs): how many of the player's races would be flagged ``robotic``, and by which rule;
* the pooled letter-pair rule (``persistence.pairs``): the player's races stored one after
  another; held or not, and the lowest pooled F;
* the agreement rule (``persistence.pair_population``): each player judged race by race against
  a profile pooled from everyone else's evidence (leave-one-out), held or not, and the r;
* keyboard geometry: the mean normalised log interval of letter pairs typed by one hand with
  two fingers, one finger on two keys, and the same key twice, each minus that of pairs typed
  by alternating hands (QWERTY touch-typing fingers; AZERTY gives the same hands but for
  a/q/z/w/m). The keystroke literature (Salthouse 1984: alternating-hand intervals 30-60 ms
  shorter) predicts the first two positive and the third negative.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import math
import random
import re
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.fairplay import pair_table_gaps  # noqa: E402
from gameserver.rhythm import rhythm  # noqa: E402
from persistence.pair_population import PopulationLimits, PopulationProfile, agreement  # noqa: E402
from persistence.pairs import PAIRS, PairHistory, PairLimits, Sums, pair_f, race_pairs  # noqa: E402

PACKAGE = "keylogging-analysis==0.0.1"
WHEEL = "keylogging_analysis-0.0.1-py3-none-any.whl"
MEMBER = "keylogging_analysis/data/lh_default.csv"
BACKSPACE = "\b"
BREAK = "\n"  # between two stretches of a player's log: no letter pair, and a pause
GAP_MS = 10_000  # the time a break stands for: above every rule's pause limit

# Touch-typing fingers on QWERTY: hand, then finger 0 (index) to 3 (little).
_FINGERS = {"L": ("rfvtgb", "edc", "wsx", "qaz"), "R": ("yhnujm", "ik", "ol", "p")}
FINGER: dict[str, tuple[str, int]] = {
    key: (hand, f) for hand, cols in _FINGERS.items() for f, keys in enumerate(cols) for key in keys
}


def pair_kind(a: str, b: str) -> str | None:
    """'alt' (two hands), 'hand' (one hand, two fingers), 'finger' (one finger, two keys),
    'rep' (the same key) or None (not two letters)."""
    fa, fb = FINGER.get(a.lower()), FINGER.get(b.lower())
    if fa is None or fb is None:
        return None
    if a.lower() == b.lower():
        return "rep"
    if fa[0] != fb[0]:
        return "alt"
    return "finger" if fa[1] == fb[1] else "hand"


def fetch(cache: Path) -> Path:
    """The wheel in ``cache``, downloaded with pip (no dependencies) if it is not there yet."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"downloading {PACKAGE} (8 MB, a 103 MB CSV inside) into {cache}", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "-q", "-d", str(cache)]
        subprocess.run(cmd, check=True, timeout=600)
    return wheel


def rows_of(wheel: Path) -> Iterator[dict[str, str]]:
    with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as raw:
        yield from csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))


def logs(rows: Iterable[dict[str, str]]) -> dict[str, list[list[tuple[str, int]]]]:
    """Per player (``username``): stretches of (key, ms) in the order typed; see the module doc."""
    out: dict[str, list[list[tuple[str, int]]]] = {}
    content: dict[str, str] = {}
    open_: dict[str, list[tuple[str, int]]] = {}  # message -> its current stretch
    for row in rows:
        if row["event_for_message_type"] != "0":  # 0: a change of the message box by typing
            continue
        message, now = row["message_id"], row["content"]
        ms = round(datetime.fromisoformat(row["key_time"]).timestamp() * 1000)
        before = content.get(message, "")
        content[message] = now
        stretch = open_.get(message)
        if stretch is None:
            stretch = open_[message] = []
            out.setdefault(row["username"], []).append(stretch)
        if len(now) == len(before) + 1 and now.startswith(before):
            key = now[-1]
        elif len(now) + 1 == len(before) and before.startswith(now):
            key = BACKSPACE
        else:  # a paste, an autocomplete, an edit inside the text: no interval spans it
            if stretch:
                open_[message] = fresh = []
                out[row["username"]].append(fresh)
            continue
        if stretch and ms < stretch[-1][1]:
            continue  # out of order: dropped
        stretch.append((key, ms))
    return {player: [s for s in stretches if len(s) >= 2] for player, stretches in out.items()}


def races(stretches: list[list[tuple[str, int]]], race_keys: int) -> list[tuple[str, list[int]]]:
    """The player's stretches joined into pseudo-races of at least ``race_keys`` keys."""
    out: list[tuple[str, list[int]]] = []
    keys: list[str] = []
    times: list[int] = []
    for stretch in stretches:
        if keys:
            keys.append(BREAK)
            times.append(times[-1] + GAP_MS)
        shift = (times[-1] + GAP_MS - stretch[0][1]) if times else -stretch[0][1]
        keys.extend(k for k, _ in stretch)
        times.extend(t + shift for _, t in stretch)
        if len(keys) >= race_keys:
            out.append(("".join(keys), times))
            keys, times = [], []
    return out


@dataclass(slots=True)
class Player:
    name: str
    keys: int
    races: int
    median_ms: float
    robotic_races: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    causes: Counter[str] = field(default_factory=Counter)  # of the robotic races: artefact()
    race_f: float | None = None  # the lowest single-race letter-pair F (rhythm.py), if any was judged
    pooled_f: float | None = None
    lowest_f: float | None = None
    held_at: int | None = None  # pseudo-race after which the pooled rule held the player
    geometry: dict[str, float] = field(default_factory=dict)  # kind -> minus 'alt', normalised logs
    pair_means: dict[str, float] = field(default_factory=dict)  # pooled, pairs seen >= 5 times
    pooled: Sums = field(default_factory=Sums)  # the pooled evidence after the last race
    evidence: list[Sums] = field(default_factory=list)  # the pooled evidence after each race


def artefact(keys: str, times: list[int]) -> str:
    """What a race the rhythm rules flagged holds that no typed passage would (or "none")."""
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # A key held down repeats every 30-40 ms: eight or more of one key at a median under 60 ms.
    if any(statistics.median(gaps[m.start() : m.end() - 1]) < 60 for m in re.finditer(r"(.)\1{7,}", keys)):
        return "key held (auto-repeat)"
    if re.search(r"0{8}", "".join("0" if g == 0 else "1" for g in gaps)):
        return "logged at once (0 ms apart)"
    letters = [a + b for a, b in itertools.pairwise(keys) if a.isalpha() and b.isalpha()]
    if letters and sum(a == b for a, b in letters) > len(letters) / 2:
        return "filler (one letter repeated)"
    return "none"


def geometry(played: list[tuple[str, list[int]]], pause_ms: int) -> dict[str, float]:
    """Mean normalised log interval per pair kind, minus that of alternating-hand pairs."""
    by: dict[str, list[float]] = {}
    for keys, times in played:
        logs_ = [
            (pair_kind(a, b), math.log(t1 - t0))
            for a, b, t0, t1 in zip(keys, keys[1:], times, times[1:], strict=False)
            if 0 < t1 - t0 <= pause_ms and BACKSPACE not in (a, b)
        ]
        if not logs_:
            continue
        mean = statistics.fmean(v for _, v in logs_)
        for kind, v in logs_:
            if kind is not None:
                by.setdefault(kind, []).append(v - mean)
    if "alt" not in by:
        return {}
    alt = statistics.fmean(by["alt"])
    return {k: statistics.fmean(v) - alt for k, v in by.items() if k != "alt" and len(v) >= 20}


def judge(name: str, played: list[tuple[str, list[int]]], limits: PairLimits) -> Player:
    keys = sum(len(k) for k, _ in played)
    gaps = [b - a for _, t in played for a, b in itertools.pairwise(t) if 0 < b - a <= limits.pause_ms]
    p = Player(name, keys, len(played), statistics.median(gaps) if gaps else 0.0)
    history = PairHistory()
    for n, (k, t) in enumerate(played, start=1):
        found = rhythm(k, t)
        if found is not None and found.digraph_f is not None:
            p.race_f = found.digraph_f if p.race_f is None else min(p.race_f, found.digraph_f)
        if found is not None and found.failed:
            p.robotic_races += 1
            p.rules.update(found.failed)
            p.causes[artefact(k, t)] += 1
        history = history.plus(str(n), race_pairs(k, t, limits.pause_ms, limits.clip), limits).judged(limits)
        p.evidence.append(history.pooled())
        f, _ = pair_f(history.pooled(), limits)
        if f is not None:
            p.pooled_f = f
            p.lowest_f = f if p.lowest_f is None else min(p.lowest_f, f)
        if history.held and p.held_at is None:
            p.held_at = n
    p.geometry = geometry(played, limits.pause_ms)
    p.pooled = history.pooled()
    pooled = p.pooled.values
    n = len(PAIRS)
    p.pair_means = {pair: float(pooled[n + i] / pooled[i]) for i, pair in enumerate(PAIRS) if pooled[i] >= 5}
    return p


def pair_table_twin(
    played: list[tuple[str, list[int]]], median_ms: float, rng: random.Random
) -> list[tuple[str, list[int]]]:
    """The same keys timed by a pair-table bot (benchmarks/fairplay.py) at the player's speed;
    breaks stay pauses."""
    gaps = pair_table_gaps(rng, 12_000 / max(median_ms, 30.0))
    out = []
    for keys, _ in played:
        t, times = 0, []
        for key, gap in zip(keys, gaps(keys), strict=True):
            t += GAP_MS if key == BREAK else max(1, round(gap))
            times.append(t)
        out.append((keys, times))
    return out


def profile_r(p: Player, others: list[Player]) -> float | None:
    """Pearson r between the player's pair means and the other players' average ones."""
    ref: dict[str, list[float]] = {}
    for q in others:
        for pair, m in q.pair_means.items():
            ref.setdefault(pair, []).append(m)
    common = [pair for pair in p.pair_means if len(ref.get(pair, ())) >= 3]
    if len(common) < 20:
        return None
    xs = [p.pair_means[c] for c in common]
    ys = [statistics.fmean(ref[c]) for c in common]
    return statistics.correlation(xs, ys)


@dataclass(slots=True)
class Agreement:
    """The population rule (persistence/pair_population.py) on one player, leave-one-out."""

    first: float | None = None  # r when the evidence first reached the pooled rule's count
    lowest: float | None = None  # the lowest r over every judgement after that
    held_at: int | None = None  # pseudo-race from which it would hold the player


def population_rule(
    p: Player, people: list[Player], limits: PairLimits, population: PopulationLimits
) -> Agreement:
    """``p`` judged race by race against a profile pooled from everyone else (each person one
    contribution: their evidence after their last race)."""
    profile = PopulationProfile()
    for q in people:
        if q.name != p.name.removesuffix(" bot"):
            profile = profile.plus(q.pooled, population)
    out = Agreement()
    for n, pooled in enumerate(p.evidence, start=1):
        if pair_f(pooled, limits)[0] is None:
            continue
        r, _ = agreement(pooled, profile, population)
        if r is None:
            continue
        out.first = r if out.first is None else out.first
        out.lowest = r if out.lowest is None else min(out.lowest, r)
        if r < population.min_r and out.held_at is None:
            out.held_at = n
    return out


def population_report(
    humans: list[Player], bots: list[Player], limits: PairLimits, population: PopulationLimits
) -> str:
    lines = [
        f"agreement with everyone else's profile (r < {population.min_r} from "
        f"{limits.min_intervals} intervals held):"
    ]
    for label, group in (("people", humans), ("pair-table bots", bots)):
        found = [(p, population_rule(p, humans, limits, population)) for p in group]
        judged_ = [(p, a) for p, a in found if a.first is not None]
        held = [p for p, a in judged_ if a.held_at is not None]
        firsts = sorted(a.first for _, a in judged_ if a.first is not None)
        lows = sorted(a.lowest for _, a in judged_ if a.lowest is not None)
        not_judged = sorted(p.keys for p, a in found if a.first is None)
        if not firsts:
            continue
        q = statistics.quantiles(firsts, n=10) if len(firsts) >= 10 else [firsts[0]] * 9
        lines.append(
            f"  {label:<16} judged {len(judged_)} of {len(group)}, held {len(held)}; r when first judged: "
            f"median {statistics.median(firsts):+.3f}, 10th-90th pct {q[0]:+.3f} .. {q[-1]:+.3f}; "
            f"lowest r ever {lows[0]:+.3f}, highest {lows[-1]:+.3f}; not judged: {len(not_judged)} "
            f"(keys {not_judged[0] if not_judged else '-'}..{not_judged[-1] if not_judged else '-'})"
        )
    return "\n".join(lines)


def separation(humans: list[Player], bots: list[Player]) -> str:
    """Per statistic: its spread over people and over bots, and the share of bots a threshold
    beyond the most bot-like person would hold (the only threshold that holds no one here)."""
    rows = []
    stats: list[tuple[str, Callable[[Player, list[Player]], float | None], int]] = [
        ("one hand minus alternating", lambda p, _: p.geometry.get("hand"), -1),
        ("same key minus alternating", lambda p, _: p.geometry.get("rep"), 1),
        ("r with other people's pairs", profile_r, -1),
    ]
    for label, stat, bot_side in stats:
        h = [v for p in humans if (v := stat(p, [q for q in humans if q.name != p.name])) is not None]
        b = [
            v
            for p in bots
            if (v := stat(p, [q for q in humans if q.name != p.name.removesuffix(" bot")])) is not None
        ]
        if not h or not b:
            continue
        edge = max(h) if bot_side > 0 else min(h)
        held = sum((v > edge) if bot_side > 0 else (v < edge) for v in b)
        h.sort()
        worst = h[-3:][::-1] if bot_side > 0 else h[:3]  # the three most bot-like people
        rows.append(
            f"{label:<28} people median {statistics.median(h):+.3f} (n={len(h)}, most bot-like "
            f"{', '.join(f'{v:+.3f}' for v in worst)}); pair-table bots median "
            f"{statistics.median(b):+.3f} [{min(b):+.3f} .. {max(b):+.3f}]; "
            f"beyond every person: {held} of {len(b)} bots"
        )
    return "\n".join(rows)


def report(players: list[Player], limits: PairLimits) -> str:
    keys, races_ = sum(p.keys for p in players), sum(p.races for p in players)
    lines = [f"{len(players)} players, {keys:,} keys, {races_} pseudo-races"]
    wpm = sorted(12_000 / p.median_ms for p in players if p.median_ms)
    if wpm:
        mid = statistics.median(wpm)
        lines.append(f"speed from the median interval: {wpm[0]:.0f}-{wpm[-1]:.0f} WPM, median {mid:.0f}")
    robotic = sum(p.robotic_races for p in players)
    rules: Counter[str] = Counter()
    for p in players:
        rules.update(p.rules)
    named = ", ".join(f"{r} {n}" for r, n in rules.most_common()) or "-"
    causes: Counter[str] = Counter()
    for p in players:
        causes.update(p.causes)
    why = ", ".join(f"{c} {n}" for c, n in causes.most_common()) or "-"
    lines.append(
        f"single-race rhythm rules: {robotic} of {races_} races flagged robotic ({named}); "
        f"players with any: {sum(p.robotic_races > 0 for p in players)} of {len(players)}"
    )
    lines.append(f"  what those races hold: {why}")
    race_fs = [p.race_f for p in players if p.race_f is not None]
    if race_fs:
        lines.append(
            f"  single-race letter pairs judged for {len(race_fs)} players; lowest F {min(race_fs):.3f}"
        )
    judged = [p for p in players if p.lowest_f is not None]
    held = [p for p in judged if p.held_at is not None]
    lowest = min((p.lowest_f for p in judged if p.lowest_f is not None), default=float("nan"))
    lines.append(
        f"pooled letter pairs (F < {limits.min_f} from {limits.min_intervals} intervals): "
        f"{len(held)} of {len(judged)} players judged held; lowest pooled F {lowest:.3f}"
    )
    for kind, label in (
        ("hand", "one hand, two fingers"),
        ("finger", "one finger, two keys"),
        ("rep", "same key twice"),
    ):
        values = sorted(p.geometry[kind] for p in players if kind in p.geometry)
        if values:
            q = statistics.quantiles(values, n=10) if len(values) >= 10 else [values[0]] * 9
            lines.append(
                f"{label:<22} minus alternating hands: median {statistics.median(values):+.3f}, "
                f"10th-90th pct {q[0]:+.3f} .. {q[-1]:+.3f}, "
                f"<= 0 for {sum(v <= 0 for v in values)} of {len(values)}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "arena-human-keystrokes")
    ap.add_argument("--wheel", type=Path, help="a wheel already downloaded (no download)")
    ap.add_argument("--race-keys", type=int, default=300, help="keys per pseudo-race (default 300)")
    ap.add_argument("--min-keys", type=int, default=500, help="players with fewer keys are left out")
    ap.add_argument("--seed", type=int, default=14, help="for the pair-table bots' tables and jitter")
    ap.add_argument("--min-r", type=float, default=PopulationLimits().min_r, help="agreement r threshold")
    args = ap.parse_args(argv)
    if args.race_keys < 20 or args.min_keys < 0:
        ap.error("--race-keys >= 20, --min-keys >= 0")
    wheel = args.wheel or fetch(args.cache)
    limits = PairLimits()
    rng = random.Random(args.seed)
    players, bots = [], []
    for name, stretches in sorted(logs(rows_of(wheel)).items()):
        played = races(stretches, args.race_keys)
        if sum(len(k) for k, _ in played) >= args.min_keys:
            person = judge(name, played, limits)
            players.append(person)
            bots.append(judge(f"{name} bot", pair_table_twin(played, person.median_ms, rng), limits))
    print(report(players, limits))
    print("each player's keys timed by a pair-table bot instead (its own random table, fixed):")
    print(report(bots, limits))
    print("telling people from pair-table bots (per player, all their races pooled):")
    print(separation(players, bots))
    print(population_report(players, bots, limits, PopulationLimits(min_r=args.min_r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
