"""Letter-pair evidence pooled over a player's races (persistence/pairs.py, pair_store.py)."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.results import MatchRecord
from arena.settings import SettingsError
from gameserver.passages import Corpus
from persistence import synthetic
from persistence.pair_store import PairEvidence
from persistence.pairs import PairHistory, PairLimits, pair_f, race_pairs
from persistence.settings import ReadSideSettings
from persistence.times import to_ms
from simulators.typing import TypingProfile, plan_keystrokes

LIMITS = PairLimits()
TEXTS = [p.text for p in Corpus.load()]


def passage(rng: random.Random, chars: int) -> str:
    text = rng.choice(TEXTS)
    while len(text) < chars:
        text += " " + rng.choice(TEXTS)
    return text[:chars].strip()


def bot_race(rng: random.Random, chars: int) -> tuple[str, list[int]]:
    """Letter-blind log-normal gaps at about 140 WPM (the fair-play benchmark's "log-normal bot")."""
    text, t, times = passage(rng, chars), 300, []
    for _ in text:
        t += max(1, round(85 * rng.lognormvariate(-0.08, 0.4)))
        times.append(t)
    return text, times


def person_race(rng: random.Random, profile: TypingProfile, chars: int) -> tuple[str, list[int]]:
    plan = plan_keystrokes(passage(rng, chars), profile, rng)
    return "".join(k for k, _ in plan), [t for _, t in plan]


def career(races: list[tuple[str, list[int]]], limits: PairLimits = LIMITS) -> list[bool]:
    """Held after each race."""
    history, held = PairHistory(), []
    for n, (text, times) in enumerate(races):
        history = history.plus(f"r{n}", race_pairs(text, times), limits).judged(limits)
        held.append(history.held)
    return held


def test_a_race_is_grouped_by_case_folded_pair_relative_to_its_own_mean() -> None:
    # gaps: ab 100, bA 200, Ab 100, b<bs> and <bs>c left out, cd 3000 (a pause) left out
    pairs = race_pairs("abAb\bcd", [0, 100, 300, 400, 500, 600, 3600])
    assert set(pairs) == {"ab", "ba"}
    assert pairs["ab"][0] == 2 and pairs["ba"][0] == 1
    assert sum(s for _, s, _ in pairs.values()) == pytest.approx(0.0, abs=1e-9)  # centred on the race
    # Twice as slow a race has the same normalised values: a slow day is not noise within a pair.
    slow = race_pairs("abAb\bcd", [0, 200, 600, 800, 1000, 1200, 7200])
    assert slow["ab"] == pytest.approx(pairs["ab"]) and slow["ba"] == pytest.approx(pairs["ba"])


def test_f_needs_enough_repeated_intervals_and_tells_pairs_from_none() -> None:
    rng = random.Random(3)
    speeds = {a + b: rng.lognormvariate(0, 0.3) for a in "abcdefgh" for b in "abcdefgh"}
    with_pairs: dict[str, tuple[int, float, float]] = {}
    blind: dict[str, tuple[int, float, float]] = {}
    for pair, speed in speeds.items():
        xs = [math.log(speed) + rng.gauss(0, 0.35) for _ in range(12)]
        ys = [rng.gauss(0, 0.4) for _ in range(12)]
        with_pairs[pair] = (12, sum(xs), sum(x * x for x in xs))
        blind[pair] = (12, sum(ys), sum(y * y for y in ys))
    f_pairs, n = pair_f(with_pairs)
    f_blind, _ = pair_f(blind)
    assert n == 64 * 12
    assert f_pairs is not None and f_pairs > 3
    assert f_blind is not None and 0.7 < f_blind < 1.25
    assert pair_f({"ab": (599, 0.0, 1.0), "cd": (1, 0.0, 0.0)}) == (None, 599)  # one-off pairs do not count


def test_the_history_counts_a_race_once_and_stays_bounded() -> None:
    limits = PairLimits(races=2, max_pairs=10)
    h = PairHistory()
    race = race_pairs("the quick brown fox jumps over the lazy dog", list(range(0, 4300, 100)))
    h = h.plus("r1", race, limits)
    assert h.plus("r1", race, limits) == h  # re-delivered: counted once
    for n in range(2, 7):
        h = h.plus(f"r{n}", race, limits)
    assert h.current_races == 2 and len(h.race_ids) == 4  # r5, r6 now; r3, r4 the older generation
    assert h.race_ids == ("r3", "r4", "r5", "r6")
    assert len(h.current) <= 10 and len(h.previous) <= 10
    assert sum(c for c, _, _ in h.pooled().values()) <= 4 * 42
    assert PairHistory.from_bytes(h.to_bytes()).race_ids == h.race_ids
    back = PairHistory.from_bytes(h.to_bytes())
    assert back.current.keys() == h.current.keys() and back.current_races == 2 and not back.held
    assert PairHistory.from_bytes(b"\x93garbage") == PairHistory()
    assert PairHistory.from_bytes(None) == PairHistory()


def test_a_letter_blind_bot_is_held_within_a_few_short_races_and_stays_held() -> None:
    rng = random.Random(14)
    held = career([bot_race(rng, 300) for _ in range(8)])
    assert not held[0]  # one short race is never enough evidence
    assert held[-1] and held.index(True) <= 5
    assert all(held[held.index(True) :])  # once held, held until released


def test_honest_careers_are_never_held_even_on_a_flat_keyboard_with_jittery_hands() -> None:
    rng = random.Random(15)
    for n in range(12):
        flat = n % 2 == 0
        profile = TypingProfile(
            wpm=rng.uniform(20, 210),
            error_rate=0.03,
            jitter_cv=0.55 if flat else 0.4,
            notice_delay_chars=1,
            pause_chance=0.05,
            digraph_sd=0.2 if flat else 0.3,
            keyboard=rng.randrange(1 << 30),
        )
        assert not any(career([person_race(rng, profile, rng.randint(100, 500)) for _ in range(6)]))


def test_the_rule_can_be_turned_off() -> None:
    rng = random.Random(16)
    assert not any(career([bot_race(rng, 400) for _ in range(6)], PairLimits(min_f=0.0)))


def bot_record(rng: random.Random, player: str, n: int) -> MatchRecord:
    race = synthetic.match(rng, ended_at=to_ms(datetime.now(UTC)) + n, players=[player], keys=10)
    text, times = bot_race(rng, 300)
    p = dataclasses.replace(race.participants[0], keys=text, key_times=times, valid=True, wpm=140.0)
    return dataclasses.replace(race, race_type="quick", participants=[p])


async def test_a_letter_blind_bots_nth_short_race_is_held_from_evidence_kept_in_redis(
    redis: aioredis.Redis,
) -> None:
    """Steps: one short race per batch, as persistence stores them; the summary lives in Redis
    between batches (with its TTL); a re-delivered race counts once; a release starts over."""
    evidence = PairEvidence(redis, ReadSideSettings())
    rng = random.Random(17)
    held_at = None
    for n in range(8):
        race = bot_record(rng, "bot", n)
        holds = await evidence.judge([race])
        assert await evidence.judge([race]) == holds  # re-delivered: the same verdict, counted once
        if holds and held_at is None:
            held_at = n
        if held_at is not None:
            assert holds == {(race.match_id, "bot")}
    assert held_at is not None and 1 <= held_at <= 5
    assert 0 < await redis.ttl(keys.pair_history("bot")) <= ReadSideSettings().review_pairs_ttl_s
    stored = PairHistory.from_bytes(await redis.get(keys.pair_history("bot")))
    assert stored.held and len(stored.race_ids) == 8
    for n in range(6):  # synthetic typists type pairs at their own speeds: never held
        honest = synthetic.match(rng, ended_at=to_ms(datetime.now(UTC)) + n, players=["ann"], keys=300)
        assert all(p.status == "finished" for p in honest.participants)
        assert await evidence.judge([honest]) == set()
    assert PairHistory.from_bytes(await redis.get(keys.pair_history("ann"))).race_ids  # it was judged
    await evidence.forget(["bot"])
    assert await redis.get(keys.pair_history("bot")) is None
    assert await evidence.judge([bot_record(rng, "bot", 9)]) == set()  # the evidence starts over


@pytest.mark.parametrize(
    ("name", "bad"),
    [("ARENA_REVIEW_PAIRS_F", "11"), ("ARENA_REVIEW_PAIRS_F", "-1"), ("ARENA_REVIEW_PAIRS_RACES", "0"),
     ("ARENA_REVIEW_PAIRS_TTL_S", "5")],
)  # fmt: skip
def test_pair_settings_are_range_checked(name: str, bad: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ReadSideSettings.from_env({name: bad})
    s = ReadSideSettings.from_env({"ARENA_REVIEW_PAIRS_F": "0", "ARENA_REVIEW_PAIRS_RACES": "5"})
    assert (s.review_pairs_f, s.review_pairs_races) == (0.0, 5)
