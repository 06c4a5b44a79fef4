"""Ghost races on a real lobby, a real node, real Redis and real PostgreSQL.

A past race is stored the way persistence stores it (``PostgresStore``); ``POST /v1/ghost-races``
places a solo race against one of its racers, and the player sees the ghost race on the node.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.protocol import Hello, Join, Joined, Leave, Progress, Results, Spectate, Watching, Welcome
from arena.results import MatchRecord
from gameserver.passages import Corpus
from persistence import synthetic
from persistence.settings import PostgresSettings
from persistence.store import PostgresStore
from tests.conftest import NodeFactory
from tests.gameserver.wsclient import RawClient
from tests.lobby.conftest import LobbyFactory, RunningLobby
from tests.persistence.conftest import pg_dsn, pg_template  # noqa: F401  (fixtures)
from tests.persistence.test_queries import NOON

PASSAGE = Corpus.load().by_id("q001").text  # synthetic races type q001
KEY_MS = 40  # the ghost types a key every 40 ms: 300 WPM, so it moves in the first second


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:  # noqa: F811
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    yield p
    await p.close()


@pytest.fixture
async def lobby(lobby_factory: LobbyFactory, pg_dsn: str) -> RunningLobby:  # noqa: F811
    return await lobby_factory(postgres=PostgresSettings(dsn=pg_dsn))


def a_race(ada_id: str = "ada") -> MatchRecord:
    """Ada typed the whole passage cleanly; Bob was flagged by fair play."""
    race = synthetic.match(random.Random(3), ended_at=NOON, players=[ada_id, "bob"], race_type="quick")
    ada, bob = race.participants
    times = [KEY_MS * (i + 1) for i in range(len(PASSAGE))]
    ada = dataclasses.replace(
        ada, name="ada", status="finished", valid=True, flags=[], keys=PASSAGE, key_times=times
    )
    bob = dataclasses.replace(bob, valid=False, flags=["too_fast"], place=None)
    return dataclasses.replace(race, participants=[ada, bob], passage_chars=len(PASSAGE))


async def ghost_race(lobby: RunningLobby, token: str, **body: Any) -> Any:
    return await lobby.api.call("POST", "/v1/ghost-races", token=token, body=body)


async def test_the_ghost_races_with_the_player_and_only_the_player_is_stored(
    lobby: RunningLobby, pool: asyncpg.Pool, node_factory: NodeFactory, redis: aioredis.Redis
) -> None:
    """1. a past race is stored; 2. a player asks to race Ada's ghost; 3. on the node the roster
    marks the ghost and progress frames move it; 4. the player leaves, the race ends: the results
    show the ghost, the outbox record holds the player alone."""
    node = await node_factory(node_id="node-g")
    past = a_race()
    await PostgresStore(pool).write([past])
    me = await lobby.api.guest("me")
    placed = (await ghost_race(lobby, me["token"], race_id=past.match_id, player_id="ada")).ok(201)
    wpm = past.participants[0].wpm
    assert placed["ghost"] == {"race_id": past.match_id, "player_id": "ada", "name": "ada", "wpm": wpm}
    assert (placed["race_type"], placed["passage_id"]) == ("quick", "q001")
    seat = placed["assignment"]
    assert seat["url"] == node.ws_url

    client = await RawClient.connect(seat["url"])
    watcher = await RawClient.connect(seat["url"])  # sees the results after the player left
    try:
        await client.send(Hello(token=seat["player_token"]))
        await client.recv_until(Welcome)
        await client.send(Join(ticket=seat["ticket"]))
        joined = await client.recv_until(Joined)
        assert isinstance(joined, Joined) and joined.passage == PASSAGE
        marks = {p.id: (p.name, p.ghost) for p in joined.players}
        assert marks == {me["player_id"]: ("me", False), "ghost-1": ("ada", True)}
        await watcher.send(Hello(token=(await lobby.api.guest("watcher"))["token"]))
        await watcher.recv_until(Welcome)
        await watcher.send(Spectate(race_id=seat["race_id"]))
        watching = await watcher.recv_until(Watching)
        assert isinstance(watching, Watching)
        assert {p.id: p.ghost for p in watching.players} == {me["player_id"]: False, "ghost-1": True}
        moved = await client.recv_matching(
            Progress, lambda m: any(row[0] == "ghost-1" and int(row[1]) > 0 for row in m.players), timeout=4.0
        )
        assert moved.players
        await client.send(Leave())
        results = await watcher.recv_until(Results, timeout=4.0)
        assert isinstance(results, Results)
    finally:
        for c in (client, watcher):
            await c.close()
            await c.http.close()
    rows = {r.player_id: r for r in results.results}
    assert rows["ghost-1"].ghost and rows["ghost-1"].status == "dnf" and not rows["ghost-1"].flags
    assert not rows[me["player_id"]].ghost
    records = [MatchRecord.from_bytes(f[b"data"]) for _, f in await redis.xrange(keys.OUTBOX_STREAM)]
    (mine,) = [r for r in records if r.match_id == seat["race_id"]]
    assert [p.player_id for p in mine.participants] == [me["player_id"]]


async def test_only_clean_finished_results_can_be_ghosts(
    lobby: RunningLobby, pool: asyncpg.Pool, node_factory: NodeFactory
) -> None:
    await node_factory(node_id="node-h")
    me = await lobby.api.guest("me")
    past = a_race(ada_id=me["player_id"])  # "me" raced it as Ada: my personal best
    await PostgresStore(pool).write([past])

    flagged = await ghost_race(lobby, me["token"], race_id=past.match_id, player_id="bob")
    assert (flagged.status, flagged.body["error"]) == (409, "ghost_flagged")
    unknown = await ghost_race(lobby, me["token"], race_id=past.match_id, player_id="nobody")
    assert (unknown.status, unknown.body["error"]) == (404, "ghost_not_found")
    for body, code in [
        ({}, "bad_race_id"),
        ({"race_id": past.match_id}, "bad_player_id"),
        ({"race_id": "x" * 65, "player_id": "ada"}, "bad_race_id"),
        ({"race_id": past.match_id, "player_id": "a\u0000"}, "bad_player_id"),
        ({"best": "yes"}, "bad_best"),
        ({"best": True, "race_id": past.match_id}, "bad_body"),
        ({"daily": "2026-12-06", "race_id": past.match_id, "player_id": "ada"}, "bad_body"),
        ({"daily": "2026-12-06", "player_id": "a b"}, "bad_player_id"),
        ({"race_id": past.match_id, "player_id": "bob", "region": "mars"}, "unknown_region"),
    ]:
        reply = await ghost_race(lobby, me["token"], **body)
        assert (reply.status, reply.body["error"]) == (400, code), body
    anonymous = await lobby.api.call("POST", "/v1/ghost-races", body={"best": True})
    assert anonymous.status == 401

    best = (await ghost_race(lobby, me["token"], best=True)).ok(201)
    assert (best["ghost"]["race_id"], best["ghost"]["player_id"]) == (past.match_id, me["player_id"])

    # Held for review: no longer a ghost, nor a personal best to race.
    await pool.execute(
        "UPDATE race_participants SET review_state = 'held' WHERE race_id = $1 AND player_id = $2",
        past.match_id,
        me["player_id"],
    )
    held = await ghost_race(lobby, me["token"], race_id=past.match_id, player_id=me["player_id"])
    assert (held.status, held.body["error"]) == (409, "ghost_under_review")
    none = await ghost_race(lobby, me["token"], best=True)
    assert (none.status, none.body["error"]) == (404, "ghost_not_found")


async def test_the_host_adds_ghosts_to_a_private_race(
    lobby: RunningLobby, pool: asyncpg.Pool, node_factory: NodeFactory
) -> None:
    """1. the host adds Ada's ghost (Bob's flagged log is refused); 2. the race starts on Ada's
    passage; 3. the racers find the ghost in the roster."""
    await node_factory(node_id="node-p")
    past = a_race()
    await PostgresStore(pool).write([past])
    host, friend = await lobby.api.guest("host"), await lobby.api.guest("friend")
    api = lobby.api
    quick = {"race_type": "quick"}
    race = (await api.call("POST", "/v1/private-races", token=host["token"], body=quick)).ok(201)
    code = race["code"]
    path = f"/v1/private-races/{code}/ghosts"
    (await api.call("POST", f"/v1/private-races/{code}/join", token=friend["token"])).ok()
    ada = {"race_id": past.match_id, "player_id": "ada"}
    not_host = await api.call("POST", path, token=friend["token"], body=ada)
    assert (not_host.status, not_host.body["error"]) == (403, "not_host")
    flagged = await api.call("POST", path, token=host["token"], body={**ada, "player_id": "bob"})
    assert (flagged.status, flagged.body["error"]) == (409, "ghost_flagged")
    added = (await api.call("POST", path, token=host["token"], body=ada)).ok()
    assert [(g["player_id"], g["passage_id"]) for g in added["ghosts"]] == [("ada", "q001")]
    again = (await api.call("POST", path, token=host["token"], body=ada)).ok()
    assert len(again["ghosts"]) == 1  # the same ghost twice is one ghost
    started = (await api.call("POST", f"/v1/private-races/{code}/start", token=host["token"])).ok()
    seat = started["assignment"]
    client = await RawClient.connect(seat["url"])
    try:
        await client.send(Hello(token=seat["player_token"]))
        await client.recv_until(Welcome)
        await client.send(Join(ticket=seat["ticket"]))
        joined = await client.recv_until(Joined)
    finally:
        await client.close()
        await client.http.close()
    assert isinstance(joined, Joined) and joined.passage == PASSAGE
    assert [(p.name, p.ghost) for p in joined.players if p.ghost] == [("ada", True)]
    late = await api.call("POST", path, token=host["token"], body=ada)
    assert (late.status, late.body["error"]) == (409, "race_started")


async def test_a_private_races_ghosts_share_its_type_and_one_passage(
    lobby: RunningLobby, pool: asyncpg.Pool
) -> None:
    first, other_passage, standard = a_race(), a_race(), a_race()
    other_passage = dataclasses.replace(other_passage, match_id="rotherpassage", passage_id="q002")
    standard = dataclasses.replace(standard, match_id="rstandard", race_type="standard")
    await PostgresStore(pool).write([first, other_passage, standard])
    host = await lobby.api.guest("host")
    api = lobby.api

    async def add(code: str, race_id: str) -> tuple[int, str]:
        body = {"race_id": race_id, "player_id": "ada"}
        reply = await api.call("POST", f"/v1/private-races/{code}/ghosts", token=host["token"], body=body)
        return reply.status, reply.body.get("error", "")

    quick_body = {"race_type": "quick"}
    quick = (await api.call("POST", "/v1/private-races", token=host["token"], body=quick_body)).ok(201)
    assert await add(quick["code"], first.match_id) == (200, "")
    assert await add(quick["code"], other_passage.match_id) == (409, "ghost_passage_mismatch")
    assert await add(quick["code"], standard.match_id) == (409, "ghost_race_type")
    custom_body = {"race_type": "custom", "custom_text": "a quiet river bends past the old mill"}
    custom = (await api.call("POST", "/v1/private-races", token=host["token"], body=custom_body)).ok(201)
    assert await add(custom["code"], first.match_id) == (409, "ghost_custom_race")
    more = [dataclasses.replace(first, match_id=f"rmore{i}") for i in range(3)]
    await PostgresStore(pool).write(more)
    added = [await add(quick["code"], r.match_id) for r in more]
    assert added == [(200, ""), (200, ""), (409, "ghosts_full")]  # at most 3
    assert await add("ZZZZZZ", first.match_id) == (404, "private_race_not_found")
    assert await add("not-a-code", first.match_id) == (404, "private_race_not_found")


async def test_the_host_adds_their_personal_best_as_a_private_races_ghost(
    lobby: RunningLobby, pool: asyncpg.Pool
) -> None:
    """The private race's ghost is named like a ghost race's: here ``{"best": true}``, the host's
    fastest clean finish; a host with none gets 404, a body naming two ghosts 400."""
    host, newcomer = await lobby.api.guest("host"), await lobby.api.guest("newcomer")
    past = a_race(ada_id=host["player_id"])
    await PostgresStore(pool).write([past])
    api = lobby.api

    async def add(who: dict[str, Any], body: dict[str, Any]) -> Any:
        quick = {"race_type": "quick"}
        race = (await api.call("POST", "/v1/private-races", token=who["token"], body=quick)).ok(201)
        path = f"/v1/private-races/{race['code']}/ghosts"
        return await api.call("POST", path, token=who["token"], body=body)

    added = (await add(host, {"best": True})).ok()
    assert [(g["race_id"], g["player_id"]) for g in added["ghosts"]] == [(past.match_id, host["player_id"])]
    none = await add(newcomer, {"best": True})
    assert (none.status, none.body["error"]) == (404, "ghost_not_found")
    both = await add(host, {"best": True, "race_id": past.match_id, "player_id": "ada"})
    assert (both.status, both.body["error"]) == (400, "bad_body")
    no_day = await add(host, {"daily": "not-a-day"})
    assert (no_day.status, no_day.body["error"]) == (404, "daily_not_found")
    text = (await api.call("GET", "/metrics")).body
    for outcome, source, count in [("added", "best", 1), ("refused", "best", 2), ("refused", "daily", 1)]:
        sample = f'arena_lobby_private_ghosts_total{{outcome="{outcome}",source="{source}"}} {count}.0'
        assert sample in text, (sample, text)
