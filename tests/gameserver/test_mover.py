"""Drain with move: a draining node hands its running races to another node (issue 15, item 5).

1. Settings and the admin endpoint refuse what cannot work (a move without checkpoints or
   adoption, a ``move`` that is not a boolean).
2. The proof: two real nodes, bots racing on A; ``POST /admin/drain {"move": true}`` on A; B
   adopts the race, A closes its players with 4012 and is drained within seconds (not at the
   race's end); the bots rejoin through A's redirect, finish on B, and the outbox holds the race
   once, finished, with every key each player typed.
3. The SIGTERM path (``ARENA_NODE_DRAIN_MOVE``): two node processes; SIGTERM of A mid-race; A
   exits within seconds, the race finishes on B, written once.
4. Nobody to adopt: the race is taken back after ``ARENA_NODE_DRAIN_MOVE_WAIT_S``, its players
   rejoin A and finish there; written once, by A. An undrain, or a stop, mid-move takes it back
   too (the stop then aborts it and writes it once).
5. Pure: the tick appends a frozen race's whole journal first and lists its hand-off only in a
   later tick, once nothing is left to append (a pipeline is not a transaction).
"""

import asyncio
import json
import signal
from dataclasses import replace
from random import Random
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.codec import WireFormat
from arena.ids import RaceId
from arena.protocol import Hello, Join, Start, Welcome
from gameserver.metrics import NodeMetrics
from gameserver.node import Checkpoints
from gameserver.room import RaceRoom
from gameserver.settings import NodeSettings, RaceSettings, SettingsError
from simulators.bot import Bot, BotReport
from simulators.typing import TypingProfile
from tests.conftest import ADMIN, NodeFactory, RunningNode, read_outbox, with_race
from tests.gameserver.test_adoption import ghost_race
from tests.gameserver.test_process import ProcessStarter, run_bots, start_process  # noqa: F401
from tests.gameserver.test_reaper import journalled, wait_for
from tests.gameserver.wsclient import RawClient

TEXT = "The quick brown fox jumps over the lazy dog."
RACE = with_race(checkpoint_ms=300)
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def moved_count(node: RunningNode, outcome: str) -> float:
    samples = node.node.metrics.races_moved.collect()[0].samples
    return sum(s.value for s in samples if s.name.endswith("_total") and s.labels["outcome"] == outcome)


# ---- what cannot work is refused ------------------------------------------------------------


def test_a_move_needs_checkpoints_and_adoption() -> None:
    for race in (RaceSettings(checkpoint=False), RaceSettings(adopt=False)):
        with pytest.raises(SettingsError, match="ARENA_NODE_DRAIN_MOVE"):
            NodeSettings(drain_move=True, race=race)
    with pytest.raises(SettingsError, match="ARENA_NODE_DRAIN_MOVE_WAIT_S"):
        NodeSettings(drain_move_wait_s=0.5)
    dev = {"ARENA_ENV": "development"}
    on = NodeSettings.from_env(dev | {"ARENA_NODE_DRAIN_MOVE": "true", "ARENA_NODE_DRAIN_MOVE_WAIT_S": "5"})
    assert (on.drain_move, on.drain_move_wait_s) == (True, 5.0)
    assert NodeSettings.from_env(dev).drain_move is False  # off by default: drains as before


async def test_the_admin_drain_refuses_a_bad_move(node_factory: NodeFactory) -> None:
    node = await node_factory("node-a", race=with_race(adopt=False))
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        resp = await http.post(f"{node.admin_url}/admin/drain", json={"move": "yes"})
        assert (resp.status, (await resp.json())["error"]) == (400, "bad_move")
        resp = await http.post(f"{node.admin_url}/admin/drain", json={"move": True})
        assert (resp.status, (await resp.json())["error"]) == (409, "move_unavailable")
    assert not node.node.draining


# ---- the proof: two real nodes, bots ----------------------------------------------------------


def bots(race: dict[str, Any], fallback: str) -> list[Bot]:
    profile = TypingProfile(wpm=90.0, error_rate=0.0, jitter_cv=0.3, notice_delay_chars=0, pause_chance=0.0)
    return [
        Bot(
            race["url"],
            s["player_token"],
            s["ticket"],
            profile,
            Random(i),
            fmt=WireFormat.MSGPACK,
            name=f"bot{i}",
            reconnect_s=15.0,
            fallback_urls=[fallback],
        )
        for i, s in enumerate(race["seats"])
    ]


def assert_finished(done: list[BotReport]) -> None:
    for r in done:
        assert r.failure is None, (r.name, r.failure, r.errors, r.close_code)
        assert r.results is not None and r.results.state == "finished"
        assert r.my_row is not None and r.my_row.status == "finished"
        assert r.reconnects == 1


async def written_once(redis_url: str, rid: RaceId, node_id: str) -> None:
    await asyncio.sleep(1.0)  # more reaper rounds and mover checks: still written once
    records = await read_outbox(redis_url)
    assert [(r.match_id, r.state, r.node_id) for r in records] == [(rid, "finished", node_id)]
    # Every key each player typed, once (inputs dropped while frozen were resent, idempotent by seq).
    parts = records[0].participants
    assert len(parts) == 2
    assert all(p.status == "finished" and p.keys == TEXT and p.typed_chars == len(TEXT) for p in parts)


async def test_a_drain_with_move_hands_a_running_race_to_another_node(
    node_factory: NodeFactory, redis_url: str
) -> None:
    a = await node_factory("node-a", race=RACE)
    b = await node_factory("node-b", race=RACE)
    race = await a.create_race(["ada", "bob"], race_type="custom", custom_text=TEXT)
    rid = RaceId(race["race_id"])
    reports = run_bots(bots(race, b.ws_url), 30)
    redis = aioredis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()
    try:

        async def typing() -> bool:  # 2 joins, the countdown, then inputs of both
            return await journalled(redis, rid) >= 5

        await wait_for(typing, "inputs in the checkpoint", 10)
        async with aiohttp.ClientSession(headers=HEADERS) as http:
            began = loop.time()
            resp = await http.post(f"{a.admin_url}/admin/drain", json={"move": True})
            assert resp.status == 202

            async def drained() -> bool:
                async with http.get(f"{a.admin_url}/admin/status") as r:
                    return (await r.json())["state"] == "drained"

            await wait_for(drained, "A drained", 10)
            drained_s = loop.time() - began
            async with http.get(f"{a.admin_url}/admin/status") as r:
                status = await r.json()
        assert status["drain"]["moved"] == 1 and status["drain"]["aborted"] == 0
        assert (await redis.get(keys.race_owner(rid))) == b"node-b"
        assert not await redis.hexists(keys.race_handoffs("local"), rid)
        b_room = b.node.room(rid)
        assert a.node.room(rid) is None and b_room is not None and not b_room.race.ended  # still running
        done = await reports
        took_s = loop.time() - began
        print(f"A drained {drained_s:.2f} s after the drain began; the bots had results {took_s:.2f} s after")
        assert drained_s < 5 and drained_s < took_s  # the hand-off, not the race's end
        assert_finished(done)
        assert moved_count(a, "adopted") == 1
        await written_once(redis_url, rid, "node-b")
    finally:
        reports.cancel()
        await asyncio.gather(reports, return_exceptions=True)
        await redis.aclose()


async def test_sigterm_with_drain_move_exits_at_once_and_the_race_finishes_elsewhere(
    start_process: ProcessStarter,  # noqa: F811
    redis_url: str,
) -> None:
    fast = {"ARENA_RACE_CHECKPOINT_MS": "300"}
    a = await start_process("proc-a", ARENA_NODE_DRAIN_MOVE="true", **fast)
    b = await start_process("proc-b", **fast)
    async with aiohttp.ClientSession(headers=HEADERS) as http:
        body = {"race_type": "custom", "custom_text": TEXT, "players": [{"name": "ada"}, {"name": "bob"}]}
        resp = await http.post(f"{a.admin_url}/admin/races", json=body)
        assert resp.status == 201
        race: dict[str, Any] = await resp.json()
    rid = RaceId(race["race_id"])
    reports = run_bots(bots(race, f"ws://127.0.0.1:{b.port}/ws"), 30)
    redis = aioredis.Redis.from_url(redis_url)
    loop = asyncio.get_running_loop()
    try:

        async def typing() -> bool:
            return await journalled(redis, rid) >= 5

        await wait_for(typing, "inputs in the checkpoint", 10)
        began = loop.time()
        a.proc.send_signal(signal.SIGTERM)
        assert await a.exit_code(15) == 0
        exited_s = loop.time() - began
        done = await reports
        took_s = loop.time() - began
        print(f"A exited {exited_s:.2f} s after SIGTERM; the bots had results {took_s:.2f} s after")
        assert exited_s < 8 and exited_s < took_s  # not the race's end (nor the 30 s grace)
        assert_finished(done)
        await written_once(redis_url, rid, "proc-b")
        report = await redis.get(keys.node_drain_report("proc-a"))
        assert report is not None and (json.loads(report)["moved"], json.loads(report)["aborted"]) == (1, 0)
    finally:
        reports.cancel()
        await asyncio.gather(reports, return_exceptions=True)
        await redis.aclose()


async def test_a_race_nobody_adopts_is_taken_back_and_finishes_here(
    node_factory: NodeFactory, redis_url: str
) -> None:
    a = await node_factory("node-a", race=RACE)
    a.node.settings = replace(a.node.settings, drain_move_wait_s=1.0)
    race = await a.create_race(["ada", "bob"], race_type="custom", custom_text=TEXT)
    rid = RaceId(race["race_id"])
    reports = run_bots(bots(race, a.ws_url), 30)
    redis = aioredis.Redis.from_url(redis_url)
    try:

        async def typing() -> bool:
            return await journalled(redis, rid) >= 5

        await wait_for(typing, "inputs in the checkpoint", 10)
        await a.node.drain(move=True)

        async def taken_back() -> bool:
            return moved_count(a, "taken_back") == 1

        await wait_for(taken_back, "the race taken back", 5)
        assert not await redis.hexists(keys.race_handoffs("local"), rid)
        room = a.node.room(rid)
        assert room is not None and room.moving_at is None
        assert_finished(await reports)
        await written_once(redis_url, rid, "node-a")
        assert a.node.drain_report is not None and a.node.drain_report.finished == 1
    finally:
        reports.cancel()
        await asyncio.gather(reports, return_exceptions=True)
        await redis.aclose()


async def seated_racer(node: RunningNode) -> tuple[RaceId, RawClient]:
    race = await node.create_race(["ada"], race_type="custom", custom_text="x" * 30)
    seat = race["seats"][0]
    client = await RawClient.connect(node.ws_url)
    await client.send(Hello(token=seat["player_token"]))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=seat["ticket"]))
    await client.recv_until(Start, timeout=5)
    return RaceId(race["race_id"]), client


async def handed_off(node: RunningNode, rid: RaceId) -> None:
    async def listed() -> bool:
        room = node.node.room(rid)
        return room is not None and room.handed_off

    await wait_for(listed, "the hand-off", 5)


async def test_an_undrain_mid_move_takes_the_race_back(node_factory: NodeFactory) -> None:
    a = await node_factory("node-a", race=RACE)
    rid, client = await seated_racer(a)
    try:
        await a.node.drain(move=True)
        await handed_off(a, rid)  # nobody else to adopt it
        await a.node.undrain()
        room = a.node.room(rid)
        assert room is not None and room.moving_at is None and room.taken_back and not room.race.ended
        assert await client.wait_closed() == 4012  # rejoin here, resend what the freeze dropped
        assert not a.node.mover.running and moved_count(a, "taken_back") == 1
    finally:
        await client.close()


async def test_a_stop_mid_move_takes_the_race_back_and_writes_it_once(
    node_factory: NodeFactory, redis_url: str
) -> None:
    a = await node_factory("node-a", race=RACE)
    rid, client = await seated_racer(a)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await a.node.drain(move=True)
        await handed_off(a, rid)
        await a.node.shutdown(write_s=5)  # settles the move first: taken back, then aborted here
        records = await read_outbox(redis_url)
        assert [(r.match_id, r.state, r.node_id) for r in records] == [(rid, "aborted", "node-a")]
        assert not await redis.hexists(keys.race_handoffs("local"), rid)
        assert moved_count(a, "taken_back") == 1
    finally:
        await redis.aclose()
        await client.close()


# ---- the tick's part, pure -----------------------------------------------------------------


class Recorder:
    """Stands in for a pipeline: records the commands ``Checkpoints.write`` queues."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self.calls.append((name, args[0] if args else kwargs))


def test_the_tick_appends_the_whole_journal_before_it_lists_the_hand_off() -> None:
    race = ghost_race(10_000_000)  # journalled: two joins, the countdown, an input
    room = RaceRoom(race, NodeMetrics())
    room.checkpointed, room.moving_at = True, 10_000_000
    ckpt = Checkpoints(10_000_100, 2000)  # an append would not be due yet: forced
    ckpt.collect(room)
    assert [(a.room, a.entries) for a in ckpt.appends] == [(room, 4)] and not ckpt.handoffs
    pipe = Recorder()
    ckpt.write(pipe, "node-a", "local")  # type: ignore[arg-type]
    assert [name for name, _ in pipe.calls] == ["rpush"]
    ckpt.written()
    assert race.journal is not None and len(race.journal) == 0
    assert room.checkpoint_backlog == [] and not room.handed_off
    ckpt = Checkpoints(10_000_200, 2000)  # the next tick: nothing left to append, so listed now
    ckpt.collect(room)
    assert not ckpt.appends and ckpt.handoffs == [room]
    pipe = Recorder()
    ckpt.write(pipe, "node-a", "local")  # type: ignore[arg-type]
    assert pipe.calls == [("hset", keys.race_handoffs("local"))]
    ckpt.written()
    assert room.handed_off
    ckpt = Checkpoints(10_000_300, 2000)
    ckpt.collect(room)
    assert not ckpt  # listed once; the mover waits for its adopter
