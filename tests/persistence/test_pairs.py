"""Letter-pair evidence pooled over a player's races (persistence/pairs.py, pair_store.py)."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime

import asyncpg
import msgpack
import numpy as np
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.keys import leaderboard
from arena.results import MatchRecord
from arena.settings import SettingsError
from benchmarks.pairs_cost import main as pairs_cost_main
from benchmarks.pairs_cost import reference_pair_f, reference_plus, reference_race_pairs
from gameserver.passages import Corpus
from persistence import synthetic
from persistence.consumer import ReadSide
from persistence.leaderboards import LeaderboardWriter
from persistence.pair_store import PairEvidence
from persistence.pairs import PAIRS, PairHistory, PairLimits, Sums, pair_f, race_pairs
from persistence.ratings import RatingCatchUp
from persistence.recent import RecentCache
from persistence.review import DecidedResult
from persistence.settings import ReadSideSettings
from persistence.times import to_ms
from simulators.typing import TypingProfile, draw_profile, plan_keystrokes
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, drained, push, wait_until

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
    """Held after each race; the evidence must have been enough by the last one."""
    history, held = PairHistory(), []
    for n, (text, times) in enumerate(races):
        history = history.plus(f"r{n}", race_pairs(text, times), limits).judged(limits)
        held.append(history.held)
    assert pair_f(history.pooled(), limits)[0] is not None  # judged, not just short of evidence
    return held


def test_a_race_is_grouped_by_case_folded_pair_relative_to_its_own_mean() -> None:
    # gaps: th 100, hE 200, Eq 100 (not a kept pair), q<bs> and <bs>h left out, he 3000 (a pause)
    pairs = race_pairs("thEq\bhe", [0, 100, 300, 400, 500, 600, 3600])
    assert (pairs.count("th"), pairs.count("he"), pairs.total()) == (1, 1, 2)
    v = pairs.values
    assert sum(v[len(PAIRS) : 2 * len(PAIRS)]) == pytest.approx(0.0, abs=1e-6)  # centred on the race
    # Twice as slow a race has the same normalised values: a slow day is not noise within a pair.
    slow = race_pairs("thEq\bhe", [0, 200, 600, 800, 1000, 1200, 7200])
    assert list(slow.values) == pytest.approx(list(pairs.values), abs=1e-6)
    # A hesitation is clipped: it cannot swamp its pair's spread.
    hesitant = race_pairs("the the", [0, 100, 200, 300, 400, 1400, 1500])
    low = math.log(10) / 6  # five gaps of 100 ms and one of 1,000: each 100 is this below the mean
    th = PAIRS.index("th")
    assert hesitant.values[2 * len(PAIRS) + th] == pytest.approx(low**2 + 1.0, abs=1e-5)  # not + 1.92**2


def sums(per_pair: dict[str, list[float]]) -> Sums:
    out = Sums()
    for pair, xs in per_pair.items():
        i = PAIRS.index(pair)
        out.values[i] = len(xs)
        out.values[len(PAIRS) + i] = sum(xs)
        out.values[2 * len(PAIRS) + i] = sum(x * x for x in xs)
    return out


def test_f_needs_enough_repeated_intervals_and_tells_pairs_from_none() -> None:
    rng = random.Random(3)
    speeds = {pair: math.log(rng.lognormvariate(0, 0.3)) for pair in PAIRS[:64]}
    with_pairs = sums({p: [m + rng.gauss(0, 0.35) for _ in range(20)] for p, m in speeds.items()})
    blind = sums({p: [rng.gauss(0, 0.4) for _ in range(20)] for p in speeds})
    f_pairs, n = pair_f(with_pairs)
    f_blind, _ = pair_f(blind)
    assert n == 64 * 20
    assert f_pairs is not None and f_pairs > 3
    assert f_blind is not None and 0.7 < f_blind < LIMITS.min_f
    # Too little evidence: no verdict (a pair seen once does not count).
    few = sums({"th": [0.1] * (LIMITS.min_intervals - 1), "he": [0.2]})
    assert pair_f(few) == (None, LIMITS.min_intervals - 1)


def test_the_history_counts_a_race_once_and_stays_bounded() -> None:
    limits = PairLimits(races=2)
    h = PairHistory()
    race = race_pairs("the quick brown fox jumps over the lazy dog", list(range(0, 4300, 100)))
    h = h.plus("r1", race, limits)
    assert h.plus("r1", race, limits) == h  # re-delivered: counted once
    for n in range(2, 7):
        h = h.plus(f"r{n}", race, limits)
    assert h.current_races == 2 and h.race_ids == ("r3", "r4", "r5", "r6")  # r5, r6 and r3, r4 before
    assert h.pooled().total() == 4 * race.total()
    raw = h.to_bytes()
    assert len(raw) < 4_200  # fixed size: two generations of 3 x 160 float32, and the ids
    back = PairHistory.from_bytes(raw)
    assert back == h
    assert PairHistory.from_bytes(b"\x93garbage") == PairHistory()
    assert PairHistory.from_bytes(None) == PairHistory()


def random_keylog(rng: random.Random) -> tuple[str, list[int]]:
    """Keys of every kind (cases, spaces, backspaces, non-ASCII, "İ" that lowers to two
    characters) and gaps of every kind (0, negative, pauses), times sometimes longer or shorter."""
    alphabet = "etaoinshrdlu THE\b\b.,;éİ\x7f\x80ß" + "".join(sorted({c for p in PAIRS for c in p}))
    n = rng.randint(0, 400)
    keys = "".join(rng.choice(alphabet) for _ in range(n))
    t, times = 0, []
    for _ in range(n + rng.randint(-3, 3)):
        t += rng.choice([0, -5, 2000, rng.randint(1, 400), round(120 * rng.lognormvariate(0, 0.5))])
        times.append(t)
    return keys, times


def test_the_numpy_grouping_gives_the_statistic_of_the_reference_loop() -> None:
    # benchmarks/pairs_cost.py keeps the per-key Python loop numpy replaced: same sums, same F,
    # same holds, and the stored bytes of one read by the other.
    rng = random.Random(2014)
    limits = PairLimits(min_f=1.3, min_intervals=200, races=3)
    judged, held = 0, 0
    for career_n in range(30):
        history, profile = PairHistory(), draw_profile(rng)
        empty = reference_race_pairs("", [])
        ref_cur, ref_prev, ref_races, ref_held = empty, empty, 0, False
        for k in range(8):
            chars = rng.randint(50, 400)
            kind = career_n % 3  # honest typists, letter-blind bots, random keylogs
            keys_, times = [person_race(rng, profile, chars), bot_race(rng, chars), random_keylog(rng)][kind]
            pairs, ref = race_pairs(keys_, times, 1500, 1.0), reference_race_pairs(keys_, times, 1500, 1.0)
            assert pairs.values.dtype == np.float32 and len(pairs.values) == len(ref)
            assert np.allclose(pairs.values, np.array(ref, dtype=np.float32), rtol=1e-5, atol=1e-5)
            history = history.plus(f"{career_n}:{k}", pairs, limits).judged(limits)
            if ref_races >= limits.races:
                ref_cur, ref_prev, ref_races = reference_race_pairs("", []), ref_cur, 0
            ref_cur, ref_races = reference_plus(ref_cur, ref), ref_races + 1
            ref_f, ref_n = reference_pair_f(reference_plus(ref_prev, ref_cur), limits)
            f, n = pair_f(history.pooled(), limits)
            assert n == ref_n and (f is None) == (ref_f is None)
            if f is not None and ref_f is not None:
                assert f == pytest.approx(ref_f, rel=1e-4)
                judged += 1
                ref_held = ref_held or (ref_f < limits.min_f)
            assert history.held == ref_held
        old_bytes = [ref_cur.tobytes(), ref_races, ref_prev.tobytes(), list(history.race_ids), history.held]
        back = PairHistory.from_bytes(msgpack.packb([2, *old_bytes], use_bin_type=True))
        assert np.allclose(back.current.values, np.array(ref_cur, dtype=np.float32), rtol=1e-5, atol=1e-4)
        held += history.held
    # Enough verdicts, careers held and not held, for the comparison to mean something.
    assert judged > 100 and 5 <= held <= 25


def test_a_letter_blind_bot_is_held_within_a_few_short_races_and_stays_held() -> None:
    rng = random.Random(14)
    held = career([bot_race(rng, 300) for _ in range(10)])
    assert not any(held[:2])  # one or two short races are never enough evidence
    assert held[-1] and held.index(True) <= 7
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
        assert not any(career([person_race(rng, profile, rng.randint(300, 500)) for _ in range(8)]))


def test_the_rule_can_be_turned_off() -> None:
    rng = random.Random(16)
    assert not any(career([bot_race(rng, 400) for _ in range(6)], PairLimits(min_f=0.0)))


def bot_record(rng: random.Random, player: str, n: int) -> MatchRecord:
    race = synthetic.match(rng, ended_at=to_ms(datetime.now(UTC)) + n, players=[player], keys=10)
    text, times = bot_race(rng, 300)
    p = dataclasses.replace(race.participants[0], keys=text, key_times=times, valid=True, wpm=140.0)
    return dataclasses.replace(race, race_type="quick", participants=[p])


@pytest.mark.redis_cluster
async def test_a_letter_blind_bots_nth_short_race_is_held_from_evidence_kept_in_redis(
    redis: aioredis.Redis,
) -> None:
    """Steps: one short race per batch, as persistence stores them; the summary lives in Redis
    between batches (with its TTL); a re-delivered race counts once; a release starts over.
    On one Redis and on a Redis Cluster (the players' summaries are read with one MGET)."""
    evidence = PairEvidence(redis, ReadSideSettings())
    rng = random.Random(17)
    held_at = None
    for n in range(10):
        race = bot_record(rng, "bot", n)
        holds = await evidence.judge([race])
        assert await evidence.judge([race]) == holds  # re-delivered: the same verdict, counted once
        if holds and held_at is None:
            held_at = n
        if held_at is not None:
            assert holds == {(race.match_id, "bot")}
    assert held_at is not None and 2 <= held_at <= 7
    assert 0 < await redis.ttl(keys.pair_history("bot")) <= ReadSideSettings().review_pairs_ttl_s
    stored = PairHistory.from_bytes(await redis.get(keys.pair_history("bot")))
    assert stored.held and len(stored.race_ids) == 10
    typists = ["ann", "bea", "cy", "di", "ed"]  # keys in several cluster slots, read in one batch
    for n in range(8):  # synthetic typists type pairs at their own speeds: never held
        honest = synthetic.match(rng, ended_at=to_ms(datetime.now(UTC)) + n, players=typists, keys=300)
        assert all(p.status == "finished" for p in honest.participants)
        bot = bot_record(rng, "bot", 20 + n)  # held already: stays held, in the same batch
        assert await evidence.judge([honest, bot]) == {(bot.match_id, "bot")}
    for player in typists:  # each was judged, every race counted
        assert len(PairHistory.from_bytes(await redis.get(keys.pair_history(player))).race_ids) == 8
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


async def test_persistence_stores_a_letter_blind_bots_later_races_held(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    """Through the service: the outbox in, PostgreSQL's review_state and the board out."""
    rng = random.Random(18)
    races = [bot_record(rng, "bot", n) for n in range(8)]
    service = await start_service(env.settings())
    await push(redis, races)
    await wait_until(lambda: drained(redis), 20, "the races acknowledged")
    async with asyncpg.create_pool(env.dsn, min_size=1, max_size=1) as pool:
        rows = await pool.fetch(
            "SELECT race_id, review_state, review_reason FROM race_participants WHERE player_id = 'bot'"
        )
    states = {r["race_id"]: r["review_state"] for r in rows}
    order = [states[r.match_id] for r in races]
    # The reason is stored with each held result (ops.review list shows it), none with a clear one.
    reasons = {r["review_state"]: set() for r in rows}
    for r in rows:
        reasons[r["review_state"]].add(r["review_reason"])
    assert reasons == {"clear": {None}, "held": {"pairs_history"}}
    by_reason = service.metrics.registry.get_sample_value(
        "arena_persistence_results_held_by_reason_total", {"reason": "pairs_history"}
    )
    assert by_reason == order.count("held")
    assert order[:2] == ["clear", "clear"] and order[-1] == "held"
    first = order.index("held")
    assert all(s == "held" for s in order[first:])  # held from then on
    board = await redis.zrange(leaderboard("quick", "alltime", ""), 0, -1, withscores=True)
    assert board and board[0][0] == b"bot"  # its clear races are ranked: the board keeps its best of those


async def test_an_operators_release_starts_the_players_evidence_over(redis: aioredis.Redis) -> None:
    settings = ReadSideSettings()
    evidence = PairEvidence(redis, settings)
    readside = ReadSide(
        LeaderboardWriter(redis, settings),
        RecentCache(redis, settings),
        RatingCatchUp(redis),
        redis,
        pairs=evidence,
    )
    rng = random.Random(19)
    for n in range(2):
        await readside.pair_holds([bot_record(rng, "bot", n), bot_record(rng, "cy", n)])
    race = bot_record(rng, "bot", 5)
    p = race.participants[0]
    released = DecidedResult(
        race.match_id, "bot", p.name, race.kind, race.race_type, datetime.now(UTC), 1, 1, "finished", True,
        p.wpm, p.accuracy, "released",
    )  # fmt: skip
    rejected = dataclasses.replace(released, player_id="cy", review="rejected")
    await readside.apply_decisions([released, rejected], [])
    assert await redis.get(keys.pair_history("bot")) is None  # released: starts over
    assert await redis.get(keys.pair_history("cy")) is not None  # rejected: kept


def test_the_cost_benchmark_runs_bounded_and_prints_each_length(capsys: pytest.CaptureFixture[str]) -> None:
    assert pairs_cost_main(["--results", "10", "--repeat", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[0] for r in rows] == ["100", "300", "1000"] and all(float(r[2]) > 0 for r in rows)
    with pytest.raises(SystemExit):
        pairs_cost_main(["--results", "0"])
