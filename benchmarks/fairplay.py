"""Fair play: honest typist models and cheater models raced through a real node.

    .venv/bin/python benchmarks/fairplay.py               # about 90 s: every class, 6 racers each
    .venv/bin/python benchmarks/fairplay.py --per-class 2 --json /tmp/fairplay.json
    .venv/bin/python benchmarks/fairplay.py --per-class 2 --careers 3 --career-races 5

Starts Redis and one node (``python -m gameserver``) on free loopback ports, creates one custom
race per racer through the admin listener, and races every model over the real protocol at the
same time: each client says hello, joins, answers the node's pings (after its simulated round
trip, or as its cheat says) and sends its inputs at the race's input instants, as a client
written from docs/PROTOCOL.md would.  A round trip of R ms is simulated by sending everything
R ms late (the client's clock lags the server's by R/2, its inputs take R/2 to arrive).  Then it
prints, per class, how many racers finished clean, held for review or flagged, the flags
raised, and the awarded WPM against the speed the model typed at; and the false-positive rate
over the honest classes.  "Held" is what persistence would do with a clean finish
(``persistence.review.review_state``): at or above ``ARENA_REVIEW_WPM`` (200) it is held; the
personal-best rule needs ten stored races of the player, and every racer here is new, so it
never applies.  Every wait has a deadline; the node and Redis are stopped on any exit.

``--careers N`` also races N careers per career class at the same time: one player racing
``--career-races`` short races (100-500 characters, fresh passages) in a row, one typist model
(or one bot) throughout.  Their keystroke logs, as the node received them, are then judged as
persistence would store them one after another (``persistence.pairs``: the letter-pair evidence
pooled over the player's races), and a second table says after which race each career was held.
With placement (``persistence.placement``, on by default): how many of its races were stored
provisional, how many ended on a board (clear, or provisional then released), and after which race
its provisional races were released ("placed after", one number per career; "-" never).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.clock import now_ms  # noqa: E402
from arena.codec import WireFormat, decode_server, encode  # noqa: E402
from arena.protocol import (  # noqa: E402
    BACKSPACE,
    Countdown,
    Hello,
    Input,
    Join,
    Joined,
    Ping,
    Pong,
    Results,
    Start,
)
from benchmarks.node_capacity import ADMIN_TOKEN, TOKEN_SECRET, NodeProcess, bench_node_env  # noqa: E402
from gameserver.passages import Corpus  # noqa: E402
from ops.services import RedisServer, free_port  # noqa: E402
from persistence.pair_population import PopulationLimits, PopulationProfile, judged  # noqa: E402
from persistence.pair_store import pair_limits, population_limits  # noqa: E402
from persistence.pairs import PairHistory, PairLimits, race_pairs  # noqa: E402
from persistence.placement import Settle, step  # noqa: E402
from persistence.review import HoldReason, ReviewState  # noqa: E402
from persistence.settings import ReadSideSettings  # noqa: E402
from simulators.typing import TypingProfile, digraph_factor, draw_profile, plan_keystrokes  # noqa: E402

Plan = list[tuple[str, int]]  # (key, ms since the start on the typist's clock)
CADENCE_MS = 250  # the node's default input cadence; clients here send at every second instant
SEND_MS = 500
RACE_DEADLINE_S = 150.0
REVIEW = ReadSideSettings()  # ARENA_REVIEW_WPM's default: which clean finishes are held


@dataclass(slots=True)
class Batch:
    send_ms: int  # when it reaches the server, ms after the start (server clock)
    keys: str
    times: list[int]


@dataclass(slots=True)
class Script:
    """What one client does: its inputs, how it answers pings, what it really typed at."""

    text: str
    batches: list[Batch]
    typed_wpm: float  # the speed the model really typed at (its plan's own figure)
    rtt_ms: int = 0
    pong_delay_ms: int | None = None  # None: after the round trip; else this late
    forged_pongs: int = 0  # unsolicited pongs claiming a 5 s round trip


@dataclass(slots=True)
class Outcome:
    cls: str
    honest: bool
    typed_wpm: float
    status: str = "none"
    wpm: float = 0.0
    flags: list[str] = field(default_factory=list)
    place: int | None = None


# ---- typist models -------------------------------------------------------------------------


def person(rng: random.Random, wpm: float) -> TypingProfile:
    """A human-like typist (simulators.typing): log-normal gaps, typos fixed with backspace,
    word pauses, and letter-pair speeds of its own keyboard."""
    d = draw_profile(rng)
    return TypingProfile(
        wpm=wpm,
        error_rate=d.error_rate,
        jitter_cv=d.jitter_cv,
        notice_delay_chars=d.notice_delay_chars,
        pause_chance=d.pause_chance,
        digraph_sd=d.digraph_sd,
        keyboard=d.keyboard,
        population=d.population,
    )


def at_instants(
    plan: Plan, rtt_ms: int, every_ms: int = SEND_MS, shift: Callable[[int], int] | None = None
) -> list[Batch]:
    """An honest client: at every ``every_ms`` of its own clock it sends what it typed since the
    last send (at most 64 keys a message); it arrives ``rtt_ms`` later on the server's clock."""
    batches: list[Batch] = []
    i, instant = 0, every_ms
    while i < len(plan):
        j = i
        while j < len(plan) and plan[j][1] <= instant:
            j += 1
        for k in range(i, j, 64):
            chunk = plan[k : min(j, k + 64)]
            times = [t if shift is None else shift(t) for _, t in chunk]
            batches.append(Batch(instant + rtt_ms, "".join(key for key, _ in chunk), times))
        i = j
        instant += every_ms
    return batches


def plan_wpm(text: str, plan: Plan) -> float:
    return round(len(text) * 12_000 / plan[-1][1], 1)


def scripted(text: str, gap: Callable[[int], float], start: int = 300) -> Plan:
    t, plan = start, []
    for i, ch in enumerate(text):
        t += max(1, round(gap(i)))
        plan.append((ch, t))
    return plan


def honest(lo: float, hi: float, long: bool = False) -> Callable[[random.Random, Texts], Script]:
    def make(rng: random.Random, texts: Texts) -> Script:
        wpm = rng.uniform(lo, hi)
        text = texts.long(rng) if long else texts.sized(rng, wpm)
        plan = plan_keystrokes(text, person(rng, wpm), rng)
        rtt = rng.randrange(0, 401)
        return Script(text, at_instants(plan, rtt), plan_wpm(text, plan), rtt_ms=rtt)

    return make


def honest_bursts(rng: random.Random, texts: Texts) -> Script:
    """A 120-150 WPM typist with a 5-second burst at 1.8x (up to about 250 WPM)."""
    wpm = rng.uniform(120, 150)
    text = texts.sized(rng, wpm)
    plan = plan_keystrokes(text, person(rng, wpm), rng)
    a = plan[-1][1] // 3
    squeezed: Plan = []
    for key, t in plan:  # the stretch [a, a + 9 s) typed in 5 s: everything after moves up
        squeezed.append((key, t if t < a else a + round((t - a) / 1.8) if t < a + 9000 else t - 4000))
    rtt = rng.randrange(0, 401)
    return Script(text, at_instants(squeezed, rtt), plan_wpm(text, squeezed), rtt_ms=rtt)


def forged_pongs(rng: random.Random, texts: Texts) -> Script:
    s = honest(30, 60)(rng, texts)
    s.forged_pongs, s.pong_delay_ms = 3, 10**9  # never answers a real ping, forges three
    return s


def late_pongs(rng: random.Random, texts: Texts) -> Script:
    s = honest(50, 80)(rng, texts)
    s.pong_delay_ms = 900
    return s


def smart_paste(rng: random.Random, texts: Texts) -> Script:
    """Human-looking claimed times at 240 WPM; the whole text sent when they say it is done."""
    text = texts.sized(rng, 240)
    plan = plan_keystrokes(text, person(rng, 240), rng)
    done = plan[-1][1]
    batches = [
        Batch(done, "".join(k for k, _ in plan[i : i + 64]), [t for _, t in plan[i : i + 64]])
        for i in range(0, len(plan), 64)
    ]
    return Script(text, batches, plan_wpm(text, plan))


def replayed(long: bool) -> Callable[[random.Random, Texts], Script]:
    """A person's timing recorded on another text, replayed 1.6x faster (about 220 WPM)."""

    def make(rng: random.Random, texts: Texts) -> Script:
        text = texts.long(rng) if long else texts.sized(rng, 220)
        other = texts.long(rng)
        recorded = [t for _, t in plan_keystrokes(other, person(rng, 137), rng)]
        plan = [(ch, round(recorded[i] / 1.6)) for i, ch in enumerate(text)]
        return Script(text, at_instants(plan, 50), plan_wpm(text, plan), rtt_ms=50)

    return make


def bot(kind: str, long: bool = False) -> Callable[[random.Random, Texts], Script]:
    """Scripted timing shaped to pass a whole-race coefficient-of-variation check."""

    def make(rng: random.Random, texts: Texts) -> Script:
        wpm = rng.uniform(110, 180)
        text = texts.long(rng) if long else texts.sized(rng, wpm)
        mean = 12_000 / wpm
        gaps: dict[str, Callable[[int], float]] = {
            "jitter": lambda i: mean * rng.uniform(0.8, 1.2),
            "two_pauses": lambda i: (
                mean * rng.uniform(0.85, 1.15) + (1800 if i in (len(text) // 3, 2 * len(text) // 3) else 0)
            ),
            "alternating": lambda i: mean * (0.6 if i % 2 else 1.4),
            "lognormal": lambda i: mean * rng.lognormvariate(-0.08, 0.4),
        }
        plan = scripted(text, gaps[kind])
        return Script(text, at_instants(plan, 50), plan_wpm(text, plan), rtt_ms=50)

    return make


def held_back(rng: random.Random, texts: Texts) -> Script:
    """Types like a person at 90-130 WPM but sends only every 3 s, with the true key times."""
    wpm = rng.uniform(90, 130)
    text = texts.sized(rng, wpm)
    plan = plan_keystrokes(text, person(rng, wpm), rng)
    return Script(text, at_instants(plan, 50, every_ms=3000), plan_wpm(text, plan), rtt_ms=50)


def time_shifted(rng: random.Random, texts: Texts) -> Script:
    """Sends on time but claims every key 1 s earlier than it was typed (a finish 1 s early)."""
    wpm = rng.uniform(90, 130)
    text = texts.sized(rng, wpm)
    plan = plan_keystrokes(text, person(rng, wpm), rng)
    batches = at_instants(plan, 50, shift=lambda t: t - 1000 if t > 2000 else t // 2)
    return Script(text, batches, plan_wpm(text, plan), rtt_ms=50)


def smoothed_burst(rng: random.Random, texts: Texts) -> Script:
    """A 500 WPM scripted burst in the middle of human typing, its claimed times spread out."""
    wpm = rng.uniform(100, 130)
    text = texts.sized(rng, wpm)
    plan = plan_keystrokes(text, person(rng, wpm), rng)
    a, b = len(plan) // 3, min(len(plan), len(plan) // 3 + 60)
    t0 = plan[a][1]
    real = [
        (k, t if i < a else t0 + (i - a) * 24 if i < b else t - (plan[b - 1][1] - (t0 + (b - 1 - a) * 24)))
        for i, (k, t) in enumerate(plan)
    ]
    # Claim the burst at 250 WPM, ending where it really ended: it starts earlier than it did.
    end = real[b - 1][1]
    claimed = [(k, t if not a <= i < b else end - (b - 1 - i) * 48) for i, (k, t) in enumerate(real)]
    batches = at_instants(real, 50)
    by_key = iter(t for _, t in claimed)
    for batch in batches:
        batch.times = sorted(max(0, next(by_key)) for _ in batch.keys)
    return Script(text, batches, plan_wpm(text, real), rtt_ms=50)


def padded_accuracy(rng: random.Random, texts: Texts) -> Script:
    """Deletes and retypes correct characters to pad its keystroke count (accuracy, raw WPM)."""
    wpm = rng.uniform(60, 90)
    text = texts.sized(rng, wpm)
    plan = plan_keystrokes(text, person(rng, wpm), rng)
    padded: Plan = []
    for i, (k, t) in enumerate(plan):
        padded.append((k, t))
        if i % 7 == 6 and k != BACKSPACE:
            padded += [(BACKSPACE, t + 40), (k, t + 90)]
    shift = 0
    out: Plan = []
    for k, t in padded:  # keep times non-decreasing
        shift = max(shift, out[-1][1] + 1 - t if out else 0)
        out.append((k, t + shift))
    return Script(text, at_instants(out, 50), plan_wpm(text, out), rtt_ms=50)


HONEST: dict[str, Callable[[random.Random, Texts], Script]] = {
    "honest 20-60": honest(20, 60),
    "honest 60-120": honest(60, 120),
    "honest 120-180": honest(120, 180),
    "honest 180-210": honest(180, 210),
    "honest bursts": honest_bursts,
    "honest long 150-210": honest(150, 210, long=True),
}
CHEATS: dict[str, Callable[[random.Random, Texts], Script]] = {
    "forged pongs": forged_pongs,
    "late pongs": late_pongs,
    "smart paste": smart_paste,
    "replayed 1.6x": replayed(long=False),
    "replayed 1.6x long": replayed(long=True),
    "jitter ±20%": bot("jitter"),
    "two pauses": bot("two_pauses"),
    "alternating": bot("alternating"),
    "log-normal bot": bot("lognormal"),
    "log-normal bot long": bot("lognormal", long=True),
    "held back 3 s": held_back,
    "claims 1 s early": time_shifted,
    "smoothed burst": smoothed_burst,
    "padded accuracy": padded_accuracy,
}


# ---- careers: one player, several short races in a row ---------------------------------------


def career_chars(rng: random.Random, wpm: float) -> int:
    """100-500 characters, at most about 40 s of typing (a custom race's limit)."""
    return rng.randint(100, max(100, min(500, int(wpm * 5 * 40 / 60))))


def honest_career(flat: bool) -> Callable[[random.Random, Texts, int], list[Script]]:
    def make(rng: random.Random, texts: Texts, races: int) -> list[Script]:
        wpm = rng.uniform(60, 210)
        profile = person(rng, wpm)
        if flat:  # the hard corner: pair speeds barely differ, the hands are jittery
            profile = dataclasses.replace(profile, digraph_sd=0.2, jitter_cv=rng.uniform(0.5, 0.55))
        rtt = rng.randrange(0, 401)
        scripts = []
        for _ in range(races):
            text = texts.cut(rng, career_chars(rng, wpm))
            plan = plan_keystrokes(text, profile, rng)
            scripts.append(Script(text, at_instants(plan, rtt), plan_wpm(text, plan), rtt_ms=rtt))
        return scripts

    return make


def lognormal_career(rng: random.Random, texts: Texts, races: int) -> list[Script]:
    wpm = rng.uniform(110, 180)
    scripts = []
    for _ in range(races):
        text = texts.cut(rng, career_chars(rng, wpm))
        plan = scripted(text, lambda i: 12_000 / wpm * rng.lognormvariate(-0.08, 0.4))
        scripts.append(Script(text, at_instants(plan, 50), plan_wpm(text, plan), rtt_ms=50))
    return scripts


def pair_table_gaps(rng: random.Random, wpm: float) -> Callable[[str], list[float]]:
    """A bot that makes up its own speed per letter pair (log-normal factors, sigma 0.2-0.4, from
    a random "keyboard", as simulators/typing.py draws a person's) and keeps that table across
    its races, with log-normal jitter (sigma 0.35) on every key: the structure the letter-pair
    rules look for, with no keyboard behind it. Per text: the gaps before each character (ms)."""
    sd, keyboard = rng.uniform(0.2, 0.4), rng.randrange(1 << 30)
    table = TypingProfile(wpm, 0.0, 0.0, 0, 0.0, sd, keyboard, population=0.0)  # nothing shared
    cache: dict[str, float] = {}
    mean = 12_000 / wpm

    def gaps(text: str) -> list[float]:
        factors = [digraph_factor(table, text[i - 1] if i else "", ch, cache) for i, ch in enumerate(text)]
        return [mean * f * rng.lognormvariate(-0.06, 0.35) for f in factors]

    return gaps


def pair_table_career(rng: random.Random, texts: Texts, races: int) -> list[Script]:
    wpm = rng.uniform(110, 180)
    gaps = pair_table_gaps(rng, wpm)
    scripts = []
    for _ in range(races):
        text = texts.cut(rng, career_chars(rng, wpm))
        plan = scripted(text, gaps(text).__getitem__)
        scripts.append(Script(text, at_instants(plan, 50), plan_wpm(text, plan), rtt_ms=50))
    return scripts


def replay_career(rng: random.Random, texts: Texts, races: int) -> list[Script]:
    """One person's timing (95-125 WPM) recorded on other texts, replayed 1.6x: 150-200 WPM."""
    recorder = person(rng, rng.uniform(95, 125))
    scripts = []
    for _ in range(races):
        text = texts.cut(rng, career_chars(rng, 180))
        recorded = [t for _, t in plan_keystrokes(texts.cut(rng, len(text) + 200), recorder, rng)]
        plan = [(ch, round(recorded[i] / 1.6)) for i, ch in enumerate(text)]
        scripts.append(Script(text, at_instants(plan, 50), plan_wpm(text, plan), rtt_ms=50))
    return scripts


CAREERS: dict[str, tuple[bool, Callable[[random.Random, Texts, int], list[Script]]]] = {
    "honest career 60-210": (True, honest_career(flat=False)),
    "honest career flat": (True, honest_career(flat=True)),
    "log-normal bot career": (False, lognormal_career),
    "replayed 1.6x career": (False, replay_career),
    "pair-table bot career": (False, pair_table_career),
}


@dataclass(slots=True)
class Career:
    cls: str
    honest: bool
    races: list[Outcome] = field(default_factory=list)
    held_at: int | None = None  # the race (1-based) from which persistence holds on letter pairs
    held_why: str = ""  # which letter-pair rule: pairs_history or pairs_population
    provisional: int = 0  # races stored provisional (placement)
    placed_at: int | None = None  # the race whose evidence released the provisional ones
    states: list[str] = field(default_factory=list)  # each race's review state in the end ("-": not ranked)

    @property
    def ranked(self) -> int:
        """Races that end on a board: clear, or provisional then released."""
        return sum(s in (ReviewState.CLEAR, ReviewState.RELEASED) for s in self.states)


def judge_career(
    career: Career,
    scripts: list[Script],
    review: ReadSideSettings = REVIEW,
    profile: PopulationProfile | None = None,
) -> None:
    """As persistence would store the races one after another: a valid finish joins the player's
    letter-pair evidence (the keys and times as the node received them), then is judged, with the
    review rules and placement (persistence/placement.py: the store's steps, without PostgreSQL);
    with ``profile``, by the population rule too (persistence/pair_population.py; the profile
    stays as it is)."""
    limits = pair_limits(review)
    population = population_limits(review)
    history = PairHistory()
    pending: list[int] = []  # indexes of the provisional races
    ranked = 0
    for n, (o, script) in enumerate(zip(career.races, scripts, strict=True), start=1):
        if o.status != "finished" or o.flags:
            career.states.append("-")
            continue
        keys = "".join(b.keys for b in script.batches)
        times = [t for b in script.batches for t in b.times]
        history = history.plus(str(n), race_pairs(keys, times, limits.pause_ms, limits.clip), limits)
        history, short = history.assessed(limits)
        if profile is not None:
            history, _ = judged(history, profile, limits, population)
        if history.held and career.held_at is None:
            career.held_at, career.held_why = n, history.why
        rule = HoldReason.WPM if o.wpm >= review.review_wpm else None
        s = step(rule, history.held, short, review.placement and ranked == 0 and career.placed_at is None)
        career.states.append(s.state.value)
        if s.settle is not None:
            settled = ReviewState.RELEASED if s.settle is Settle.RELEASE else ReviewState.HELD
            for i in pending:
                career.states[i] = settled.value
            ranked += len(pending) if s.settle is Settle.RELEASE else 0
            if s.settle is Settle.RELEASE and pending:
                career.placed_at = n
            pending = []
        if s.state is ReviewState.PROVISIONAL:
            career.provisional += 1
            pending.append(n - 1)
        ranked += s.state is ReviewState.CLEAR


async def race_career(
    http: aiohttp.ClientSession,
    node: NodeProcess,
    cls: str,
    honest_: bool,
    scripts: list[Script],
    profile: PopulationProfile | None = None,
) -> Career:
    career = Career(cls, honest_)
    for script in scripts:
        career.races.append(await race_one(http, node, cls, honest_, script))
    judge_career(career, scripts, REVIEW, profile)
    return career


def career_table(careers: list[Career], races: int) -> str:
    lines = [
        f"{'career class':<22} {'n':>3} {'races':>5} {'clean':>5} {'flagged':>7} {'held wpm':>8}"
        f" {'provisional':>11} {'ranked':>6}  {'placed after':<12}"
        f"  held on letter pairs by race K = 1..{races}  (by rule)"
    ]
    for cls in dict.fromkeys(c.cls for c in careers):
        rows = [c for c in careers if c.cls == cls]
        outs = [o for c in rows for o in c.races]
        clean = sum(o.status == "finished" and not o.flags for o in outs)
        flagged = sum(bool(o.flags) for o in outs)
        held_wpm = sum(is_held(o) for o in outs)
        by = [sum(c.held_at is not None and c.held_at <= k for c in rows) for k in range(1, races + 1)]
        provisional = sum(c.provisional for c in rows)
        ranked = sum(c.ranked for c in rows)
        placed = ",".join("-" if c.placed_at is None else str(c.placed_at) for c in rows)
        rules = Counter(c.held_why for c in rows if c.held_at is not None)
        why = ", ".join(f"{w} {k}" for w, k in sorted(rules.items())) or "-"
        lines.append(
            f"{cls:<22} {len(rows):>3} {len(outs):>5} {clean:>5} {flagged:>7} {held_wpm:>8}"
            f" {provisional:>11} {ranked:>6}  {placed:<12}  {' '.join(f'{h:>2}' for h in by)}  ({why})"
        )
    honest = [c for c in careers if c.honest]
    slow = [c for c in honest if c.held_at is not None]
    lines.append(f"honest careers held on letter pairs: {len(slow)} of {len(honest)}")
    cheats = [c for c in careers if not c.honest]
    lines.append(f"cheat careers' races on a board: {sum(c.ranked for c in cheats)} of "
                 f"{sum(len(c.races) for c in cheats)}")  # fmt: skip
    return "\n".join(lines)


def warm_population(
    players: int, seed: int, texts: Texts, pairs: PairLimits, limits: PopulationLimits
) -> PopulationProfile:
    """The population profile persistence would have pooled from ``players`` honest regulars
    (20-210 WPM, ten races of 100-500 characters each), each contributing as persistence lets
    them (pair_population.judged): what a deployment has once its first players have raced."""
    rng = random.Random(f"{seed}:population")
    profile = PopulationProfile()
    for c in range(players):
        typist = person(rng, rng.uniform(20, 210))
        history = PairHistory()
        for k in range(10):
            plan = plan_keystrokes(texts.cut(rng, rng.randint(100, 500)), typist, rng)
            keys, times = "".join(key for key, _ in plan), [t for _, t in plan]
            history = history.plus(f"{c}:{k}", race_pairs(keys, times, pairs.pause_ms, pairs.clip), pairs)
            history, profile = judged(history.judged(pairs), profile, pairs, limits)
    return profile


class Texts:
    """Passages from the corpus, cut to what a model finishes within the race's time limit."""

    def __init__(self) -> None:
        self._texts = [p.text for p in Corpus.load()]

    def sized(self, rng: random.Random, wpm: float) -> str:
        # At most about 40 s of typing (a custom race's limit is 0.6 s a character, 60 s at least).
        chars = max(40, min(180, int(wpm * 5 * 40 / 60)))
        return self.cut(rng, chars)

    def long(self, rng: random.Random) -> str:
        return self.cut(rng, 1100)

    def cut(self, rng: random.Random, chars: int) -> str:
        text = rng.choice(self._texts)
        while len(text) < chars:
            text += " " + rng.choice(self._texts)
        return text[:chars].strip()


# ---- the client ----------------------------------------------------------------------------


async def race_one(
    http: aiohttp.ClientSession, node: NodeProcess, cls: str, honest_: bool, script: Script
) -> Outcome:
    out = Outcome(cls, honest_, script.typed_wpm)
    body = {"race_type": "custom", "custom_text": script.text, "players": [{"name": "racer"}]}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with http.post(f"{node.admin_url}/admin/races", json=body, headers=headers) as resp:
        seat = (await resp.json())["seats"][0]
    async with http.ws_connect(f"ws://127.0.0.1:{node.port}/ws") as ws:
        pending: set[asyncio.Task[None]] = set()

        async def send_later(delay_ms: float, msg: Any) -> None:
            await asyncio.sleep(max(0.0, delay_ms / 1000))
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(str(encode(msg, WireFormat.JSON)))

        def later(delay_ms: float, msg: Any) -> None:
            task = asyncio.create_task(send_later(delay_ms, msg))
            pending.add(task)
            task.add_done_callback(pending.discard)

        await ws.send_str(str(encode(Hello(token=seat["player_token"]), WireFormat.JSON)))
        await ws.send_str(str(encode(Join(ticket=seat["ticket"]), WireFormat.JSON)))
        start_at: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        results: asyncio.Future[Results] = asyncio.get_running_loop().create_future()

        async def read() -> None:
            async for frame in ws:
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                msg = decode_server(frame.data)
                if isinstance(msg, Ping):
                    delay = script.rtt_ms if script.pong_delay_ms is None else script.pong_delay_ms
                    if delay < 60_000:
                        later(delay, Pong(echo=msg.sent, time=now_ms()))
                elif isinstance(msg, (Countdown, Start, Joined)) and msg.start_at and not start_at.done():
                    start_at.set_result(msg.start_at)
                elif isinstance(msg, Results) and not results.done():
                    results.set_result(msg)

        reader = asyncio.create_task(read())
        try:
            start = await asyncio.wait_for(start_at, 30)
            for n in range(script.forged_pongs):
                later(1000 * (n + 1), Pong(echo=start - 5000, time=now_ms()))
            for seq, batch in enumerate(script.batches, start=1):
                later(start + batch.send_ms - now_ms(), Input(seq=seq, keys=batch.keys, times=batch.times))
            got = await asyncio.wait_for(results, RACE_DEADLINE_S)
            row = got.results[0]
            out.status, out.wpm, out.flags, out.place = row.status, row.wpm, row.flags, row.place
        except TimeoutError:
            out.status = "timeout"
        finally:
            reader.cancel()
            for task in list(pending):
                task.cancel()
            await asyncio.gather(reader, *pending, return_exceptions=True)
    return out


# ---- the run -------------------------------------------------------------------------------


def is_held(o: Outcome, review_wpm: float = REVIEW.review_wpm) -> bool:
    """What persistence would hold for review (``persistence.review.review_state``) of a player
    with no stored history: a clean finish at or above the review threshold."""
    return o.status == "finished" and not o.flags and o.wpm >= review_wpm


def table(outcomes: list[Outcome], review_wpm: float = REVIEW.review_wpm) -> str:
    lines = [
        f"{'class':<22} {'n':>3} {'clean':>5} {'held':>4} {'flagged':>7} {'dnf':>4}"
        f"  {'typed':>6} {'awarded':>7}  flags"
    ]
    for cls in dict.fromkeys(o.cls for o in outcomes):
        rows = [o for o in outcomes if o.cls == cls]
        flagged = [o for o in rows if o.flags]
        held = [o for o in rows if is_held(o, review_wpm)]
        clean = [o for o in rows if not o.flags and o.status == "finished" and not is_held(o, review_wpm)]
        dnf = [o for o in rows if o.status != "finished"]
        flags = Counter(f for o in rows for f in o.flags)
        typed = statistics.median(o.typed_wpm for o in rows)
        awarded = statistics.median(o.wpm for o in rows)
        counts = f"{len(rows):>3} {len(clean):>5} {len(held):>4} {len(flagged):>7} {len(dnf):>4}"
        named = ", ".join(f"{f} {n}" for f, n in flags.most_common())
        lines.append(f"{cls:<22} {counts}  {typed:>6.1f} {awarded:>7.1f}  {named}")
    honest = [o for o in outcomes if o.honest]
    fp = sum(bool(o.flags) for o in honest)
    gaps = [abs(o.wpm - o.typed_wpm) for o in honest if not o.flags and o.status == "finished"]
    lines.append(
        f"false positives: {fp} of {len(honest)} honest racers ({100 * fp / max(1, len(honest)):.1f} %)"
    )
    held_slow = sum(is_held(o, review_wpm) and o.typed_wpm < 180 for o in honest)
    held_all = sum(is_held(o, review_wpm) for o in honest)
    lines.append(
        f"honest racers held for review: {held_all} of {len(honest)}"
        f" ({held_slow} of them typing below 180 WPM)"
    )
    if gaps:
        lines.append(
            f"honest awarded vs typed WPM: median |diff| {statistics.median(gaps):.2f}, max {max(gaps):.2f}"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> tuple[list[Outcome], list[Career]]:
    rng = random.Random(args.seed)
    texts = Texts()
    jobs: list[tuple[str, bool, Script]] = []
    for cls, make in HONEST.items():
        jobs += [(cls, True, make(rng, texts)) for _ in range(args.per_class)]
    for cls, make in CHEATS.items():
        jobs += [(cls, False, make(rng, texts)) for _ in range(args.per_class)]
    career_jobs = [
        (cls, honest_, make(rng, texts, args.career_races))
        for cls, (honest_, make) in CAREERS.items()
        for _ in range(args.careers)
    ]
    # The profile a deployment's first 300 honest regulars would have built (pure, ~20 s).
    pairs, population = pair_limits(REVIEW), population_limits(REVIEW)
    profile = warm_population(300, args.seed, texts, pairs, population) if career_jobs else None
    redis = RedisServer()
    redis.start()
    work = Path(tempfile.mkdtemp(prefix="fairplay-bench-"))
    players = len(jobs) + len(career_jobs)
    env = bench_node_env(
        "fairplay-node", redis.url, free_port(), players, admin_token=ADMIN_TOKEN, token_secret=TOKEN_SECRET
    )
    env |= {"ARENA_RACE_COUNTDOWN_S": "2", "ARENA_LOG_LEVEL": "warning", "ARENA_MAX_VIOLATIONS": "10"}
    node = NodeProcess(ROOT, env, None, work / "node.log")
    try:
        node.start()
        await node.wait_ready(30)
        async with aiohttp.ClientSession() as http:
            singles = asyncio.gather(*(race_one(http, node, c, h, s) for c, h, s in jobs))
            careers = asyncio.gather(*(race_career(http, node, c, h, s, profile) for c, h, s in career_jobs))
            outcomes, done = await asyncio.gather(singles, careers)
            return list(outcomes), list(done)
    finally:
        node.stop()
        redis.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-class", type=int, default=6, help="racers per class (default 6)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--careers", type=int, default=0, help="careers per career class (default 0)")
    parser.add_argument("--career-races", type=int, default=5, help="short races per career (default 5)")
    parser.add_argument("--json", type=Path, help="write every racer's outcome here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    outcomes, careers = asyncio.run(run(args))
    print(table(outcomes))
    if careers:
        print(career_table(careers, args.career_races))
    racers = len(outcomes) + len(careers)
    print(f"{racers} racers through one node in {time.monotonic() - started:.0f} s (seed {args.seed})")
    if args.json:
        every = [asdict(o) for o in outcomes] + [asdict(c) for c in careers]
        args.json.write_text(json.dumps(every, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
