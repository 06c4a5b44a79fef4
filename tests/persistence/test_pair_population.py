"""Agreement with other people's letter-pair speeds (persistence/pair_population.py, pair_store.py)."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

import asyncpg
import msgpack
import numpy as np
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.results import MatchRecord
from arena.settings import SettingsError
from benchmarks.fairplay import Texts, pair_table_gaps, warm_population
from benchmarks.fairplay import person as typist
from benchmarks.rhythm_sweep import careers
from persistence import synthetic
from persistence.pair_population import (
    HELD_POPULATION,
    PopulationLimits,
    PopulationProfile,
    agreement,
    judged,
    pair_means,
)
from persistence.pairs import HELD_F, PAIRS, PairHistory, PairLimits, Sums, race_pairs
from persistence.review import HoldReason
from persistence.settings import ReadSideSettings
from persistence.times import to_ms
from simulators.typing import SHARED_PAIRS, TypingProfile, digraph_factor, draw_profile, plan_keystrokes
from tests.persistence.conftest import ServiceFactory
from tests.persistence.helpers import Env, drained, push, wait_until

P = len(PAIRS)
PAIR_LIMITS = PairLimits()
LIMITS = PopulationLimits(min_r=0.2, min_players=3, min_weight=2.0)


def evidence(means: np.ndarray, count: int = 10, noise: float = 0.0, seed: int = 0) -> Sums:
    """Pooled sums with ``count`` intervals per pair around ``means`` (``noise``: their spread)."""
    rng = np.random.default_rng(seed)
    xs = means[:, None] + noise * rng.standard_normal((P, count))
    v = np.empty(3 * P, dtype=np.float32)
    v[:P] = count
    v[P : 2 * P] = xs.sum(axis=1)
    v[2 * P :] = (xs * xs).sum(axis=1)
    return Sums(v)


def history_of(pooled: Sums, **kw: int) -> PairHistory:
    return PairHistory(current=pooled, current_races=3, **kw)  # type: ignore[arg-type]


PEOPLE = np.random.default_rng(1).normal(0, 0.3, P)  # what people share


def person(seed: int) -> Sums:
    own = np.random.default_rng(100 + seed).normal(0, 0.15, P)
    return evidence(PEOPLE + own, noise=0.3, seed=seed)


def established(players: int = 5) -> PopulationProfile:
    profile = PopulationProfile()
    for n in range(players):
        profile = profile.plus(person(n), LIMITS)
    return profile


def test_means_count_only_pairs_seen_often_enough() -> None:
    pooled = evidence(np.full(P, 0.5), count=4)
    means, seen = pair_means(pooled, 5)
    assert not seen.any() and (means == 0).all()
    means, seen = pair_means(evidence(np.full(P, 0.5), count=5), 5)
    assert seen.all() and means == pytest.approx(np.full(P, 0.5))


def test_the_profile_decays_and_stays_bounded() -> None:
    limits = PopulationLimits(horizon=10, min_weight=1.0)
    profile = PopulationProfile()
    for _ in range(200):
        profile = profile.plus(evidence(np.full(P, 0.4)), limits)
    assert profile.weights.max() < 10  # weight below the horizon, however many contributions
    means, known = profile.means(limits)
    assert known.all() and means == pytest.approx(np.full(P, 0.4))
    # The past fades: 50 contributions of another profile leave almost nothing of the old one.
    for _ in range(50):
        profile = profile.plus(evidence(np.full(P, -0.2)), limits)
    assert profile.means(limits)[0] == pytest.approx(np.full(P, -0.2), abs=0.01)
    assert profile.players == 250
    back = PopulationProfile.from_bytes(profile.to_bytes())
    assert back == profile and len(profile.to_bytes()) < 2_700


def test_a_stored_profile_this_code_does_not_understand_is_empty() -> None:
    assert PopulationProfile.from_bytes(None) == PopulationProfile()
    assert PopulationProfile.from_bytes(b"\x93garbage") == PopulationProfile()
    bad = np.full(P, np.nan).astype("<f8").tobytes()
    raw = msgpack.packb([1, bad, np.ones(P).astype("<f8").tobytes(), 9], use_bin_type=True)
    assert PopulationProfile.from_bytes(raw) == PopulationProfile()


def test_r_tells_people_from_a_made_up_table() -> None:
    profile = established()
    r, n = agreement(person(99), profile, LIMITS)
    assert n == P and r is not None and r > 0.6
    table = np.random.default_rng(7).normal(0, 0.35, P)  # a pair-table bot's own speeds
    r_bot, _ = agreement(evidence(table, noise=0.3, seed=7), profile, LIMITS)
    assert r_bot is not None and abs(r_bot) < 0.3
    # Too few pairs in common: no verdict.
    few = evidence(np.zeros(P))
    few.values[LIMITS.min_common - 1 : P] = 0
    assert agreement(few, profile, LIMITS) == (None, LIMITS.min_common - 1)
    # A flat player: no verdict either.
    assert agreement(evidence(np.zeros(P)), profile, LIMITS)[0] is None


def test_a_fresh_deployment_judges_nobody_and_people_build_the_profile() -> None:
    table = evidence(np.random.default_rng(7).normal(0, 0.35, P), noise=0.3, seed=7)
    profile = PopulationProfile()
    for n in range(LIMITS.min_players - 1):
        profile = profile.plus(person(n), LIMITS)
    after, same = judged(history_of(table), profile, PAIR_LIMITS, LIMITS)
    assert not after.held and after.contributed == 0 and same.players == LIMITS.min_players  # it counts
    profile = profile.plus(person(50), LIMITS)
    after, same = judged(history_of(table), profile, PAIR_LIMITS, LIMITS)
    assert after.held and after.why == HELD_POPULATION and same == profile  # held: no contribution
    # Off (min_r <= 0): nobody is held, contributions still build the profile.
    off = dataclasses.replace(LIMITS, min_r=0.0)
    after, more = judged(history_of(table), profile, PAIR_LIMITS, off)
    assert not after.held and more.players == profile.players + 1


def test_one_contribution_per_player_per_generation_and_only_with_enough_clear_evidence() -> None:
    profile = established()
    h, p1 = judged(history_of(person(9)), profile, PAIR_LIMITS, LIMITS)
    assert not h.held and h.contributed == 0 and p1.players == profile.players + 1
    again, p2 = judged(h, p1, PAIR_LIMITS, LIMITS)
    assert again == h and p2 is p1  # same generation: no second contribution
    nxt, p3 = judged(dataclasses.replace(h, generation=1), p1, PAIR_LIMITS, LIMITS)
    assert nxt.contributed == 1 and p3.players == p1.players + 1
    # Too little evidence: neither judged nor a contribution.
    short = evidence(PEOPLE, count=5)
    h, p4 = judged(history_of(short), profile, PAIR_LIMITS, LIMITS)
    assert h == history_of(short) and p4 is profile
    # Held by the F rule already: stays held as it was, adds nothing.
    held = history_of(person(9)).holding(HELD_F)
    assert judged(held, profile, PAIR_LIMITS, LIMITS) == (held, profile)
    # Evidence with no letter-pair structure (F below the pooled rule's): no contribution.
    flat = evidence(np.zeros(P), noise=0.4, seed=3)
    h, p5 = judged(history_of(flat), PopulationProfile(), PAIR_LIMITS, LIMITS)
    assert not h.held and p5.players == 0


def test_an_old_history_reads_as_held_by_the_f_rule() -> None:
    h = history_of(person(1))
    cur, prev = h.current.values.tobytes(), h.previous.values.tobytes()
    old = msgpack.packb([2, cur, 3, prev, ["a"], True], use_bin_type=True)  # before this change
    back = PairHistory.from_bytes(old)
    assert back.held and back.why == HELD_F and back.generation == 0 and back.contributed == -1
    new = dataclasses.replace(h.holding(HELD_POPULATION), generation=4, contributed=3)
    assert PairHistory.from_bytes(new.to_bytes()) == new


def test_simulated_people_share_the_table_and_pair_table_bots_do_not() -> None:
    rng = random.Random(14)
    pairs = sorted(SHARED_PAIRS)
    table = np.array([SHARED_PAIRS[p] for p in pairs])
    assert table.std() == pytest.approx(1.0, abs=0.05)  # standardised
    for _ in range(20):
        honest = draw_profile(rng)
        assert 0.8 <= honest.population <= 1.0
        logs = np.log([digraph_factor(honest, p[0], p[1], {}) for p in pairs])
        assert np.corrcoef(logs, table)[0, 1] > 0.6
    bot = TypingProfile(150, 0.0, 0.0, 0, 0.0, 0.3, rng.randrange(1 << 30), population=0.0)
    logs = np.log([digraph_factor(bot, p[0], p[1], {}) for p in pairs])
    assert abs(np.corrcoef(logs, table)[0, 1]) < 0.3


# ---- through the service: PostgreSQL's review state and reason, the profile in Redis --------


def scripted_times(gaps: list[float]) -> list[int]:
    t, out = 300, []
    for g in gaps:
        t += max(1, round(g))
        out.append(t)
    return out


def keyed_record(player: str, n: int, text: str, times: list[int], wpm: float) -> MatchRecord:
    rng = random.Random(f"{player}:{n}")
    race = synthetic.match(rng, ended_at=to_ms(datetime.now(UTC)) + n, players=[player], keys=10)
    p = dataclasses.replace(race.participants[0], keys=text, key_times=times, valid=True, wpm=wpm)
    return dataclasses.replace(race, race_type="quick", participants=[p])


def typed(player: str, n: int, plan: list[tuple[str, int]]) -> MatchRecord:
    text, times = "".join(k for k, _ in plan), [t for _, t in plan]
    return keyed_record(player, n, text, times, round(len(text) * 12_000 / max(1, times[-1]), 1))


async def test_persistence_holds_a_pair_table_bots_results_pairs_population(
    env: Env, redis: aioredis.Redis, start_service: ServiceFactory
) -> None:
    """Steps: a profile pooled from five simulated people is in Redis (established: the minimum
    is set to 5); a pair-table bot (its own speed per letter pair, kept across races: the pooled
    F rule passes it) races six 300-character races, a person four; placement is on, so their
    first results are provisional. The bot's evidence completes: all its results are held,
    reason pairs_population; the person's are released and added to the profile; the bot's not."""
    texts = Texts()
    rng = random.Random(41)
    limits = PopulationLimits(min_players=5)
    profile = PopulationProfile()
    for _ in range(5):
        plan = plan_keystrokes(texts.cut(rng, 1500), typist(rng, rng.uniform(50, 90)), rng)
        profile = profile.plus(race_pairs("".join(k for k, _ in plan), [t for _, t in plan]), limits)
    await redis.set(keys.pair_population(), profile.to_bytes())
    gaps = pair_table_gaps(rng, 140)
    bot = [keyed_record("bot", n, t, scripted_times(gaps(t)), 140.0) for n, t in enumerate(
        texts.cut(rng, 300) for _ in range(6))]  # fmt: skip
    honest = typist(rng, 70)
    people = [typed("ann", n, plan_keystrokes(texts.cut(rng, 400), honest, rng)) for n in range(4)]
    settings = env.settings(placement=True)
    readside = dataclasses.replace(settings.readside, review_pairs_population_min=5)
    service = await start_service(dataclasses.replace(settings, readside=readside))
    await push(redis, [*bot, *people])
    await wait_until(lambda: drained(redis), 20, "the races acknowledged")
    async with asyncpg.create_pool(env.dsn, min_size=1, max_size=1) as pool:
        rows = await pool.fetch("SELECT player_id, review_state, review_reason FROM race_participants")
    states = {(r["player_id"], r["review_state"], r["review_reason"]) for r in rows}
    # The person: provisional results released by the one that completed the evidence (clear).
    assert states == {("bot", "held", "pairs_population"), ("ann", "released", None), ("ann", "clear", None)}
    held = service.metrics.registry.get_sample_value(
        "arena_persistence_results_held_by_reason_total", {"reason": "pairs_population"}
    )
    assert held is not None and held >= 1  # the result that completed the evidence (the rest settled)
    stored = PopulationProfile.from_bytes(await redis.get(keys.pair_population()))
    assert stored.players == 6  # the person's evidence joined the profile, the bot's did not
    gauge = service.metrics.registry.get_sample_value("arena_persistence_pair_population_contributions")
    assert gauge == 6
    assert PairHistory.from_bytes(await redis.get(keys.pair_history("bot"))).why == HELD_POPULATION
    assert 0 < await redis.ttl(keys.pair_population()) <= ReadSideSettings().review_pairs_ttl_s


@pytest.mark.parametrize(
    ("name", "bad"),
    [("ARENA_REVIEW_PAIRS_AGREEMENT_R", "1"), ("ARENA_REVIEW_PAIRS_AGREEMENT_R", "-1.5"),
     ("ARENA_REVIEW_PAIRS_POPULATION_MIN", "0")],
)  # fmt: skip
def test_population_settings_are_range_checked(name: str, bad: str) -> None:
    with pytest.raises(SettingsError, match=name):
        ReadSideSettings.from_env({name: bad})
    s = ReadSideSettings.from_env(
        {"ARENA_REVIEW_PAIRS_AGREEMENT_R": "0", "ARENA_REVIEW_PAIRS_POPULATION_MIN": "7"}
    )
    assert (s.review_pairs_agreement_r, s.review_pairs_population_min) == (0.0, 7)


def test_the_histories_reasons_are_the_stored_hold_reasons() -> None:
    assert HoldReason.PAIRS_HISTORY.value == HELD_F
    assert HoldReason.PAIRS_POPULATION.value == HELD_POPULATION


def test_simulated_careers_honest_never_held_pair_table_bots_held() -> None:
    """The calibration in small (benchmarks/rhythm_sweep.py --careers; docs/FAIRPLAY.md): a profile
    pooled by 60 simulated regulars, then honest careers (the hard corner too) and bots judged."""
    population = PopulationLimits()  # the defaults: r < 0.2 once 50 players contributed
    profile = warm_population(60, 14, Texts(), PAIR_LIMITS, population)
    assert profile.established(population)
    rows = careers(16, 8, 14, PAIR_LIMITS, population, profile)
    for honest in ("honest", "honest flat+jittery"):
        assert rows[honest].held_by[-1] == 0 and min(rows[honest].rs) > 0.3
    table = rows["pair-table bot"]
    assert table.held_by[-1] >= 3 and set(table.by_reason) == {HELD_POPULATION}
