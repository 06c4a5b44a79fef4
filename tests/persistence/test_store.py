"""PostgreSQL writes: idempotent on match id, monthly partitions on demand, bad records isolated."""

import asyncio
import dataclasses
import json
import random
from datetime import UTC, datetime

import asyncpg
import pytest

from arena.results import FinalStanding, MatchRecord, ParticipantRecord, TournamentFinalRecord
from ops.services import free_port
from persistence import keylog, synthetic
from persistence.errors import Dependency, DependencyDown
from persistence.store import (
    FINAL_FIELDS,
    PARTICIPANT_COLUMNS,
    PARTICIPANT_FIELDS,
    RACE_FIELDS,
    STANDING_FIELDS,
    PostgresStore,
)
from persistence.times import to_ms
from tests.persistence.helpers import final

JAN = to_ms(datetime(2027, 1, 15, 12, tzinfo=UTC))
FEB = to_ms(datetime(2027, 2, 1, 0, 0, 0, 1000, tzinfo=UTC))


def race(ended_at: int, players: list[str], seed: int = 1, **extra: object) -> MatchRecord:
    return synthetic.match(random.Random(seed), ended_at=ended_at, players=players, keys=20, **extra)  # type: ignore[arg-type]


def test_every_record_field_has_a_place() -> None:
    assert {f.name for f in dataclasses.fields(MatchRecord)} == set(RACE_FIELDS)
    assert {f.name for f in dataclasses.fields(ParticipantRecord)} == set(PARTICIPANT_FIELDS)
    stored_as_columns = set(PARTICIPANT_FIELDS) - {"keys", "key_times"}
    assert stored_as_columns <= set(PARTICIPANT_COLUMNS)
    assert {f.name for f in dataclasses.fields(TournamentFinalRecord)} == set(FINAL_FIELDS)
    assert {f.name for f in dataclasses.fields(FinalStanding)} == set(STANDING_FIELDS)


async def test_a_batch_is_written_once(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    batch = [race(JAN, ["ada", "bob"], seed=1), race(JAN + 1, ["bob", "cy", "dee"], seed=2)]
    first = await store.write(batch)
    assert first.inserted == {r.match_id for r in batch} and first.participant_rows == 5
    again = await store.write([*batch, batch[0]])
    assert again.inserted == set() and again.participant_rows == 0
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM race_participants") == 5
        bob = await conn.fetchrow(
            "SELECT races, first_seen_at, last_seen_at FROM players WHERE player_id = 'bob'"
        )
        assert bob is not None and bob["races"] == 2  # counted once per race, never on a re-delivery
        row = await conn.fetchrow(
            "SELECT * FROM race_participants WHERE race_id = $1 AND player_id = 'ada'", batch[0].match_id
        )
    p = batch[0].participants[0]
    assert row is not None
    assert keylog.decode(row["keylog"]) == (p.keys, p.key_times)
    assert row["wpm"] == p.wpm and row["accuracy"] == p.accuracy
    assert to_ms(row["created_at"]) == JAN and to_ms(row["finished_at"]) == p.finished_at


async def test_results_go_to_monthly_partitions_created_on_demand(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    await store.write([race(JAN, ["ada", "bob"], seed=1), race(FEB, ["ada", "bob"], seed=2)])
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT tableoid::regclass::text AS part, count(*) FROM race_participants GROUP BY 1 ORDER BY 1"
        )
    assert [(r["part"], r["count"]) for r in rows] == [
        ("race_participants_y2027m01", 2),
        ("race_participants_y2027m02", 2),
    ]


async def test_rows_in_the_default_partition_move_when_their_month_is_created(pool: asyncpg.Pool) -> None:
    march = to_ms(datetime(2027, 3, 3, tzinfo=UTC))
    store = PostgresStore(pool)
    await store.write([race(JAN, ["ada"], seed=1)])
    async with pool.acquire() as conn:
        # A row written while no March partition existed (say, by hand) sits in the default partition.
        await conn.execute(
            "INSERT INTO races (race_id, kind, race_type, state, reason, node_id, passage_id, passage_chars,"
            " players, created_at, ended_at, record_version)"
            " VALUES ('manual', 'race', 'quick', 'finished', '', 'n', 'q', 1, 1, $1, $1, 1)",
            datetime(2027, 3, 3, tzinfo=UTC),
        )
        await conn.execute(
            "INSERT INTO race_participants (race_id, player_id, created_at, name, status, valid, flags, wpm,"
            " raw_wpm, accuracy, consistency, correct_chars, typed_chars, errors, elapsed_ms, keylog)"
            " VALUES ('manual', 'ada', $1, 'ada', 'finished', true, '{}', 1, 1, 1, 1, 1, 1, 0, 1, '')",
            datetime(2027, 3, 3, tzinfo=UTC),
        )
    await store.write([race(march, ["ada", "bob"], seed=3)])
    async with pool.acquire() as conn:
        parts = await conn.fetch(
            "SELECT tableoid::regclass::text AS part FROM race_participants WHERE created_at >= $1",
            datetime(2027, 3, 1, tzinfo=UTC),
        )
        assert {r["part"] for r in parts} == {"race_participants_y2027m03"}
        assert len(parts) == 3
        assert await conn.fetchval("SELECT count(*) FROM race_participants_default") == 0


async def test_a_record_postgres_refuses_is_isolated(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    good = [race(JAN, ["ada", "bob"], seed=i) for i in range(3)]
    bad = dataclasses.replace(race(JAN, ["cy"], seed=9), race_type="sprint")
    twice = race(JAN, ["dee"], seed=10)
    twice = dataclasses.replace(twice, participants=twice.participants * 2)  # same player twice
    garbled = race(JAN, ["eve"], seed=11)
    garbled = dataclasses.replace(
        garbled,
        participants=[dataclasses.replace(garbled.participants[0], key_times=[1, "2"])],  # type: ignore[list-item]
    )
    result = await store.write([*good, bad, twice, garbled])
    assert result.inserted == {r.match_id for r in good}
    assert set(result.rejected) == {bad.match_id, twice.match_id, garbled.match_id}
    assert "TypeError" in result.rejected[garbled.match_id]
    assert "races_race_type_check" in result.rejected[bad.match_id]
    assert "UniqueViolation" in result.rejected[twice.match_id]


async def test_heats_fill_tournaments_and_standings_once(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    heats = [
        race(JAN + i, ["ada", "bob"], seed=i, tournament_id="cup", round_no=1 + i // 2, heat_no=1 + i % 2)
        for i in range(4)
    ]
    heats[3] = dataclasses.replace(
        heats[3],
        participants=[dataclasses.replace(heats[3].participants[0], valid=False), heats[3].participants[1]],
    )
    await store.write(heats[:2])
    await store.write(heats)
    async with pool.acquire() as conn:
        cup = await conn.fetchrow("SELECT heats, rounds FROM tournaments WHERE tournament_id = 'cup'")
        assert cup is not None and (cup["heats"], cup["rounds"]) == (4, 2)
        ada = await conn.fetchrow("SELECT * FROM tournament_participants WHERE player_id = 'ada'")
    assert ada is not None and (ada["heats"], ada["finished"], ada["last_round"]) == (4, 3, 2)
    best = max((p.wpm, p.accuracy) for h in heats[:3] for p in h.participants if p.player_id == "ada")
    assert (ada["best_wpm"], ada["best_accuracy"]) == best


async def test_a_final_finishes_its_tournament_and_stores_standings_once(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    heats = [
        race(JAN + i, ["ada", "bob"], seed=i, tournament_id="cup", round_no=1, heat_no=1 + i)
        for i in range(2)
    ]
    result = final("cup", ["bob", "ada", "cy"], ended_at=JAN + 5000, heat_races=heats)
    first = await store.write([*heats, result])  # one batch, one transaction: races and the final
    assert first.inserted == {h.match_id for h in heats} | {"cup:final"}
    again = await store.write([result, heats[0]])
    assert again.inserted == set() and again.rejected == {}
    async with pool.acquire() as conn:
        cup = await conn.fetchrow("SELECT * FROM tournaments WHERE tournament_id = 'cup'")
        rows = await conn.fetch("SELECT * FROM tournament_results WHERE tournament_id = 'cup' ORDER BY rank")
        finals = await conn.fetch("SELECT * FROM tournament_finals")
    assert cup is not None
    assert (cup["status"], cup["name"], cup["rule"], cup["heat_size"], cup["advance"], cup["heats"]) == (
        "finished", "Cup cup", "top_k", 4, 2, 2,
    )  # fmt: skip
    assert to_ms(cup["created_at"]) == result.created_at and to_ms(cup["ended_at"]) == JAN + 5000
    assert to_ms(cup["started_at"]) == result.started_at
    assert [(r["rank"], r["player_id"], r["prize"], r["seed"]) for r in rows] == [
        (1, "bob", "gold", 3), (2, "ada", "silver", 2), (3, "cy", None, 1),
    ]  # fmt: skip
    assert [r["rating"] for r in rows] == [s.rating for s in result.standings]
    assert len(finals) == 1 and finals[0]["match_id"] == "cup:final" and finals[0]["entrants"] == 3
    assert sorted(h["race_id"] for h in json.loads(finals[0]["heat_races"])) == sorted(
        h.match_id for h in heats
    )


async def test_a_final_without_any_raced_heat_creates_its_tournament(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    result = final("walkover", ["ada", "bob"])
    assert (await store.write([result])).inserted == {"walkover:final"}
    async with pool.acquire() as conn:
        t = await conn.fetchrow(
            "SELECT status, heats, race_type FROM tournaments WHERE tournament_id = 'walkover'"
        )
        n = await conn.fetchval("SELECT count(*) FROM tournament_results")
        settled = await conn.fetchval("SELECT settled_heats FROM tournament_finals")
    assert t is not None and (t["status"], t["heats"], t["race_type"]) == ("finished", 0, "quick")
    assert n == 2 and json.loads(settled) == [{"round_no": 1, "heat_no": 1, "reason": "bye"}]


async def test_a_final_postgres_refuses_is_isolated(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    good = final("ok", ["ada"])
    bad = final("bad", ["bob"])
    bad = dataclasses.replace(bad, standings=[dataclasses.replace(bad.standings[0], rank=2**40)])
    result = await store.write([good, bad, race(JAN, ["cy"])])
    assert set(result.rejected) == {"bad:final"} and "bad:final" not in result.inserted
    assert "ok:final" in result.inserted and len(result.inserted) == 2
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM tournaments WHERE tournament_id = 'bad'") == 0


async def test_postgres_down_is_a_dependency_failure() -> None:
    pool = await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/x", min_size=0)
    try:
        with pytest.raises(DependencyDown) as info:
            await PostgresStore(pool).write([race(JAN, ["ada"])])
        assert info.value.dependency is Dependency.POSTGRES
    finally:
        await pool.close()


async def test_concurrent_creators_of_a_partition_do_not_collide(pool: asyncpg.Pool, pg_dsn: str) -> None:
    conns = [await asyncpg.connect(pg_dsn) for _ in range(6)]
    try:
        for month in range(1, 7):
            day = datetime(2031, month, 9, tzinfo=UTC).date()
            made = await asyncio.gather(
                *(c.fetchval("SELECT ensure_results_partition($1)", day) for c in conns)
            )
            assert set(made) == {f"race_participants_y2031m{month:02d}"}
    finally:
        for c in conns:
            await c.close()


async def test_a_daily_attempt_keeps_its_day(pool: asyncpg.Pool) -> None:
    store = PostgresStore(pool)
    attempt = dataclasses.replace(race(JAN, ["ada"], seed=3), daily="2027-01-15")
    plain = race(JAN + 1, ["bob", "cy"], seed=4)
    await store.write([attempt, plain])
    async with pool.acquire() as conn:
        rows = dict(await conn.fetch("SELECT race_id, daily FROM races"))
    assert rows[attempt.match_id] == datetime(2027, 1, 15).date() and rows[plain.match_id] is None
