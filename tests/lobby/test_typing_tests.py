"""A typing test from ticket to result: a real lobby places it on a real node, a player types it
over the WebSocket protocol, real persistence stores it in PostgreSQL and Redis, and the lobby
serves the history, the best and the percentile. Bad requests get clear JSON errors."""

import asyncio
import random
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from arena.protocol import Hello, Input, Join, Joined, Results, Start, Welcome
from ops.services import KafkaBroker
from persistence.settings import PostgresSettings
from tests.conftest import NodeFactory
from tests.gameserver.wsclient import RawClient
from tests.lobby.conftest import LobbyFactory, RunningLobby
from tests.persistence.conftest import ServiceFactory, pg_dsn, pg_template, start_service  # noqa: F401
from tests.persistence.helpers import Env, unique


@pytest.fixture
async def lobby(lobby_factory: LobbyFactory, pg_dsn: str) -> RunningLobby:  # noqa: F811
    return await lobby_factory(postgres=PostgresSettings(dsn=pg_dsn), regions=("local",))


async def listed_while_running(redis: aioredis.Redis, test_id: str) -> float | None:
    """The test's score in the live races index once its mirror says it runs (the node writes
    both in one pipeline)."""
    for _ in range(200):
        if await redis.hget(keys.race_state(test_id), "state") == b"running":
            return await redis.zscore(keys.LIVE_RACES, test_id)
        await asyncio.sleep(0.02)
    raise AssertionError("the test never ran")


async def type_test(assignment: dict[str, Any], text: str) -> Results:
    """Join as the assignment says and type the text correctly at about 170 WPM, in batches
    sent when their last key's time has come."""
    client = await RawClient.connect(assignment["url"])
    try:
        await client.send(Hello(token=assignment["player_token"]))
        await client.recv_until(Welcome)
        await client.send(Join(ticket=assignment["ticket"]))
        joined = await client.recv_until(Joined)
        assert isinstance(joined, Joined) and joined.passage == text
        start = await client.recv_until(Start, timeout=10)
        assert isinstance(start, Start)
        rng = random.Random(16)
        times, t = [], 0
        for _ in text:
            t += max(35, int(rng.gauss(70, 25)))
            times.append(t)
        for seq, i in enumerate(range(0, len(text), 6), start=1):
            delay = (start.start_at + times[i : i + 6][-1] - now_ms()) / 1000
            if delay > 0:
                await asyncio.sleep(delay)
            await client.send(Input(seq=seq, keys=text[i : i + 6], times=times[i : i + 6]))
        results = await client.recv_until(Results, timeout=15)
        assert isinstance(results, Results)
        return results
    finally:
        await client.close()


async def test_a_words_test_from_request_to_stored_result(
    node_factory: NodeFactory,
    lobby: RunningLobby,
    start_service: ServiceFactory,  # noqa: F811
    redis_url: str,
    pg_dsn: str,  # noqa: F811
    kafka_broker: KafkaBroker,
) -> None:
    await node_factory()
    env = Env(
        redis_url,
        pg_dsn,
        kafka_broker.bootstrap,
        unique("race-events"),
        unique("tournament-scores"),
        unique("players"),
    )
    await start_service(env.settings())
    api = lobby.api
    ada = await api.guest("ada")
    test = (await api.call("POST", "/v1/tests", token=ada["token"], body={"mode": "words-10"})).ok(201)
    assert test["mode"] == "words-10" and len(test["text"].split()) == 10
    assert test["assignment"]["race_id"] == test["test_id"] and test["assignment"]["region"] == "local"
    content = (await api.call("GET", f"/v1/tests/{test['test_id']}")).ok()
    assert (content["text"], content["result"]) == (test["text"], None)  # from the cache, not yet stored

    redis = aioredis.Redis.from_url(redis_url)
    listed = asyncio.create_task(listed_while_running(redis, test["test_id"]))
    results = await type_test(test["assignment"], test["text"])
    assert await listed is None  # a test is not in the live races to watch
    [row] = results.results
    assert results.state == "finished" and row.status == "finished" and not row.flags

    body: dict[str, Any] = {}
    for _ in range(100):  # persistence stores it within a second or two
        body = (await api.call("GET", f"/v1/tests/{test['test_id']}")).ok()
        if body["result"] is not None:
            break
        await asyncio.sleep(0.1)
    result = body["result"]
    assert result is not None, "the result never reached PostgreSQL"
    assert (result["player_id"], result["mode"], result["status"], result["valid"]) == (
        ada["player_id"], "words-10", "finished", True,
    )  # fmt: skip
    assert result["wpm"] == row.wpm and 60 < result["wpm"] < 250
    assert (result["percentile"], result["window_results"]) == (50.0, 1)  # alone in its window: a tie

    history = (await api.call("GET", f"/v1/players/{ada['player_id']}/tests")).ok()
    assert [t["test_id"] for t in history["tests"]] == [test["test_id"]] and "next" not in history
    bests = (await api.call("GET", f"/v1/players/{ada['player_id']}/tests/bests")).ok()["bests"]
    assert [(b["mode"], b["test_id"], b["wpm"]) for b in bests] == [("words-10", test["test_id"], row.wpm)]

    # Opened from history: its keys and speed chart, the same with the content cache gone.
    replay = await api.call("GET", f"/v1/tests/{test['test_id']}/replay")
    chart = replay.ok()
    assert (chart["test_id"], chart["mode"], chart["wpm"]) == (test["test_id"], "words-10", row.wpm)
    assert chart["passage"] == {"id": test["test_id"], "text": test["text"], "chars": len(test["text"])}
    assert "".join(k["key"] for k in chart["keys"]) == test["text"]
    assert chart["duration_ms"] == chart["keys"][-1]["t_ms"] and chart["started_at"] < chart["ended_at"]
    assert len(chart["speed"]) == -(-chart["duration_ms"] // 1000)
    assert sum(chart["speed"]) == 12 * len(test["text"])  # every key correct, 12 WPM each in its second
    assert "immutable" in replay.headers.get("Cache-Control", "")
    try:
        assert await redis.zcard(keys.recent_results(ada["player_id"])) == 1
        assert 86_000 < await redis.ttl(keys.test_content(test["test_id"])) <= 86_400
        await redis.delete(keys.test_content(test["test_id"]))
        rebuilt = (await api.call("GET", f"/v1/tests/{test['test_id']}/replay")).ok()
        assert rebuilt == chart  # the words rebuilt from the test id
    finally:
        await redis.aclose()
    test_id = test["test_id"]
    conn = await asyncpg.connect(pg_dsn)
    try:
        stored = await conn.fetchrow("SELECT type, mode, keylog FROM test_results WHERE id = $1", test_id)
    finally:
        await conn.close()
    assert stored is not None and stored["keylog"]
    assert (stored["type"], stored["mode"]) == ("words", "words-10")


async def test_bad_requests_get_clear_errors(lobby: RunningLobby) -> None:
    api = lobby.api
    ada = await api.guest("ada")
    for body in ({"mode": "time-16"}, {"mode": 15}, {}, {"mode": "quote", "region": "mars"}):
        reply = await api.call("POST", "/v1/tests", token=ada["token"], body=body)
        assert reply.status == 400 and reply.body["error"] in ("bad_mode", "unknown_region"), reply.body
    assert (await api.call("POST", "/v1/tests", body={"mode": "quote"})).status == 401
    no_node = await api.call("POST", "/v1/tests", token=ada["token"], body={"mode": "quote"})
    assert (no_node.status, no_node.body["error"]) == (503, "no_node")  # no node is running here
    assert (await api.call("GET", "/v1/tests/nope")).ok(404)["error"] == "test_not_found"
    assert (await api.call("GET", "/v1/tests/" + "x" * 65)).status == 404
    for bad in ("nope", "x" * 65, "a%00b", "a%20b"):
        reply = await api.call("GET", f"/v1/tests/{bad}/replay")
        assert (reply.status, reply.body["error"]) == (404, "test_not_found"), bad
    assert (await api.call("GET", "/v1/players/ada/tests?mode=time-7")).ok(400)["error"] == "bad_mode"
    assert (await api.call("GET", "/v1/players/ada/tests?limit=0")).ok(400)["error"] == "bad_limit"
    assert (await api.call("GET", "/v1/players/ada/tests?before_ms=1&before_id=" + "y" * 65)).status == 400
    assert (await api.call("GET", "/v1/players/ada/tests")).ok() == {"tests": []}
    assert (await api.call("GET", "/v1/players/ada/tests/bests")).ok() == {"bests": []}
