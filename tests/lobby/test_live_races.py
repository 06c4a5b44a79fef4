"""``GET /v1/live/races``: running races with their node's URL and racers' live figures; ended
or orphaned ones drop out."""

import asyncio
import random
from typing import Any

import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from arena.protocol import Leave
from tests.conftest import NodeFactory
from tests.gameserver.test_race_flow import CUSTOM, human_times, seat, type_text, wait_start
from tests.lobby.conftest import Api


async def _live(api: Api, query: str = "") -> list[dict[str, Any]]:
    races: list[dict[str, Any]] = (await api.call("GET", f"/v1/live/races{query}")).ok()["races"]
    return races


async def _until(api: Api, want: bool, race_id: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        races = await _live(api)
        if any(r["race_id"] == race_id for r in races) == want or loop.time() > deadline:
            return races
        await asyncio.sleep(0.05)


async def test_running_race_is_listed_and_drops_out_when_it_ends(
    api: Api, node_factory: NodeFactory, redis: aioredis.Redis
) -> None:
    node = await node_factory(node_id="node-live")
    assert await _live(api) == []
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    race_id = race["race_id"]
    (a, _), (b, _) = [await seat(node, s) for s in race["seats"]]
    start_at = await wait_start(a)
    races = await _until(api, True, race_id)
    [entry] = [r for r in races if r["race_id"] == race_id]
    assert entry["url"] == node.ws_url and entry["node_id"] == "node-live"
    assert entry["state"] == "running" and entry["race_type"] == "custom"
    assert entry["start_at"] == start_at and entry["passage_length"] == len(CUSTOM)
    assert sorted(p["name"] for p in entry["players"]) == ["ada", "bob"]
    assert all(p["position"] == 0 for p in entry["players"])

    for c in (a, b):
        await c.send(Leave())
    races = await _until(api, False, race_id)
    assert all(r["race_id"] != race_id for r in races)
    assert await redis.zscore(keys.LIVE_RACES, race_id) is None
    for c in (a, b):
        await c.close()


async def _figures(api: Api, race_id: str, name: str, past: int, timeout: float) -> dict[str, Any]:
    """The racer's entry once its position is past ``past`` (or the last one seen at the timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        [entry] = [r for r in await _live(api) if r["race_id"] == race_id]
        [me] = [p for p in entry["players"] if p["name"] == name]
        if me["position"] > past or loop.time() > deadline:
            return {"me": me, "all": entry["players"]}
        await asyncio.sleep(0.05)


async def test_live_figures_follow_the_typing_within_the_cadence(api: Api, node_factory: NodeFactory) -> None:
    node = await node_factory(node_id="node-live")  # ARENA_RACE_LIVE_MIRROR_MS: the default, 1 s
    every_s = node.settings.race.live_mirror_ms / 1000
    race = await node.create_race(["ada", "bob"], race_type="custom", custom_text=CUSTOM)
    race_id = race["race_id"]
    (a, _), (b, _) = [await seat(node, s) for s in race["seats"]]
    start_at = await wait_start(a)
    await _until(api, True, race_id)
    times = human_times(len(CUSTOM), 0, 60.0, random.Random(4))
    loop = asyncio.get_running_loop()
    for seq, (lo, upto) in enumerate(((0, 8), (8, 20)), start=1):
        await type_text(a, CUSTOM[lo:upto], start_at, times[lo:upto], seq=seq, batch=upto - lo)
        typed_at = loop.time()
        seen = await _figures(api, race_id, "ada", lo, timeout=every_s + 2.0)
        waited = loop.time() - typed_at
        # Within the cadence (plus a tick and the poll), not at the next state change.
        assert seen["me"]["position"] == upto and seen["me"]["wpm"] > 0, (seen, waited)
        assert waited <= every_s + 1.0, (seen, waited)
        assert seen["me"]["status"] == "racing" and seen["me"]["place"] is None
        [bob] = [p for p in seen["all"] if p["name"] == "bob"]
        assert bob["position"] == 0 and bob["wpm"] == 0.0  # bob has not typed
    for c in (a, b):
        await c.send(Leave())
        await c.close()


async def test_orphans_are_skipped_or_removed(api: Api, redis: aioredis.Redis, fake_nodes: Any) -> None:
    # No mirror at all: removed from the index by the reader, whether on the page it reads
    # (a recent one) or only old enough for the age sweep.
    await redis.zadd(keys.LIVE_RACES, {"r-gone": 1, "r-gone-new": now_ms()})
    # An old mirror on a node that is not alive: skipped, but kept (the node may come back).
    mirror = {
        "state": "running",
        "node": "node-dead",
        "type": "quick",
        "passage_id": "p",
        "passage": "abc",
        "players": 1,
        "roster": '[["p1", "ada", true, "racing", 1, 30.0, null]]',
        "start_at": 2,
        "ends_at": 3,
        "version": 1,
    }
    await redis.hset(keys.race_state("r-dead"), mapping=mirror)  # type: ignore[arg-type]
    await redis.zadd(keys.LIVE_RACES, {"r-dead": 2})
    # A live (fake) node: listed, newest first.
    await fake_nodes("node-ok")
    await redis.hset(keys.race_state("r-ok"), mapping=mirror | {"node": "node-ok", "start_at": 3})  # type: ignore[arg-type]
    await redis.zadd(keys.LIVE_RACES, {"r-ok": 3})
    races = await _live(api, "?limit=1")  # reads two entries: r-gone-new and r-ok
    assert [r["race_id"] for r in races] == ["r-ok"]
    assert races[0]["url"] == "ws://127.0.0.1:9/node-ok"
    assert races[0]["players"] == [
        {"name": "ada", "position": 1, "wpm": 30.0, "status": "racing", "place": None, "ghost": False}
    ]  # a row of a node from before ghosts has no mark: not a ghost
    assert await redis.zrange(keys.LIVE_RACES, 0, -1) == [b"r-dead", b"r-ok"]


async def test_bad_limit_is_a_json_400(api: Api) -> None:
    for query in ("?limit=0", "?limit=101", "?limit=x"):
        reply = await api.call("GET", f"/v1/live/races{query}")
        assert reply.status == 400 and reply.body["error"] == "bad_limit", reply
