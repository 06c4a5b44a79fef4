"""Race checkpoints in Redis, and a killed node's races finalised from them by a live node.

1. A node writes each race's checkpoint with its ticks, and it replays to the race's state.
2. The checkpoint goes once the race's result is in the outbox.
3. ``kill -9`` of a node process mid-race, adoption off (``ARENA_RACE_ADOPT=0``; adoption is
   tests/gameserver/test_adoption.py): another node of its region writes the race, aborted with its
   racers' partial results, to the outbox once, and removes its mirror and checkpoint.
"""

import asyncio
import random
import signal
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from arena import keys
from arena.clock import now_ms
from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import RaceState, RaceType
from gameserver.checkpoint import decode_item, rebuild
from gameserver.node import SeatRequest
from tests.conftest import NodeFactory, RunningNode, read_outbox, with_race
from tests.gameserver.test_checkpoint import T0, checkpoint_of, journalled_race, scoring_state, type_some
from tests.gameserver.test_process import ProcessStarter, bots_for, run_bots, start_process  # noqa: F401

TEXT = "Storm clouds gathered over the harbour while the fishing boats hurried home."


async def journalled(redis: aioredis.Redis, race_id: RaceId) -> int:
    """Journal entries in a race's checkpoint (after its definition; appends carry several)."""
    items = await redis.lrange(keys.race_checkpoint(race_id), 1, -1)
    return sum(len(decode_item(i)) for i in items)


async def wait_for(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_the_checkpoint_follows_the_race_and_goes_with_its_result(
    node: RunningNode, redis_url: str
) -> None:
    inner = node.node
    race, _ = inner.create_race(
        RaceType.CUSTOM,
        [SeatRequest(PlayerId("p1"), "ada"), SeatRequest(PlayerId("p2"), "bob")],
        custom_text=TEXT,
    )
    key = keys.race_checkpoint(race.id)
    redis = aioredis.Redis.from_url(redis_url)
    try:
        race.join(PlayerId("p1"), "ada", now_ms())
        race.join(PlayerId("p2"), "bob", now_ms())
        assert race.start_at is not None
        async def running() -> bool:
            return race.state is RaceState.RUNNING

        await wait_for(running, "the start", 5)
        ada, bob = race.racers[PlayerId("p1")], race.racers[PlayerId("p2")]
        race.apply_input(ada, 1, TEXT[:20], [100 * i for i in range(1, 21)], now_ms())
        race.apply_input(bob, 1, TEXT[:7], [150 * i for i in range(1, 8)], now_ms())
        race.apply_input(ada, 2, TEXT[20:30], [2000 + 100 * i for i in range(1, 11)], now_ms())

        async def caught_up() -> bool:
            return await journalled(redis, race.id) == 2 + 1 + 3  # joins, countdown, inputs

        await wait_for(caught_up, "the checkpoint to catch up", 5)
        assert await redis.sismember(keys.node_checkpoints("node-a"), race.id)
        assert await redis.hget(keys.CHECKPOINT_NODES, "node-a") == b"local"
        assert 0 < await redis.ttl(key) <= 3600 + 60 + 10 + 10 + len(TEXT)
        s = inner.settings
        rebuilt = rebuild(await redis.lrange(key, 0, -1), s.race, s.scoring, s.fairplay)
        assert scoring_state(rebuilt) == scoring_state(race)

        race.apply_input(ada, 3, TEXT[30:], [3000 + 100 * i for i in range(1, len(TEXT) - 29)], now_ms())
        race.leave(bob, now_ms())  # everyone done: the race ends, its result goes to the outbox

        async def gone() -> bool:
            listed = await redis.sismember(keys.node_checkpoints("node-a"), race.id)
            return not listed and not await redis.exists(key)

        await wait_for(gone, "the checkpoint to go")
        assert [(r.match_id, r.state) for r in await read_outbox(redis_url)] == [(race.id, "finished")]
    finally:
        await redis.aclose()


async def test_a_killed_nodes_race_is_written_aborted_by_a_live_node(
    start_process: ProcessStarter,  # noqa: F811
    redis_url: str,
) -> None:
    doomed = await start_process("proc-doomed", ARENA_RACE_ADOPT="0")
    await start_process("proc-live", ARENA_RACE_ADOPT="0")
    race = await doomed.create_race(["ada", "bob"])
    race_id = RaceId(str(race["race_id"]))
    reports = run_bots(bots_for(race, 25.0), 20)  # slow typists: still typing when the node dies
    redis = aioredis.Redis.from_url(redis_url)
    try:

        async def typed() -> bool:  # 2 joins, countdown, then inputs of both
            return await journalled(redis, race_id) >= 7

        await wait_for(typed, "inputs in the checkpoint", 10)
        assert await redis.exists(keys.race_state(race_id))
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait()
        killed_at = asyncio.get_running_loop().time()

        async def written() -> bool:
            return bool(await read_outbox(redis_url))

        await wait_for(written, "the race in the outbox", 15)
        took_s = asyncio.get_running_loop().time() - killed_at
        records = await read_outbox(redis_url)
        assert [(r.match_id, r.state, r.reason, r.node_id) for r in records] == [
            (race_id, "aborted", "node lost", "proc-doomed")
        ]
        assert took_s < 10  # stale after 3 heartbeats of 0.5 s, then a reaper round
        parts = records[0].participants
        assert sorted(p.name for p in parts) == ["ada", "bob"]
        assert all(p.status == "dnf" and 0 < p.correct_chars < len(TEXT) for p in parts)
        assert all(len(p.keys) == p.typed_chars > 0 for p in parts)  # the keys the server had taken

        async def cleaned() -> bool:
            left = await redis.exists(
                keys.race_state(race_id), keys.race_checkpoint(race_id), keys.node_checkpoints("proc-doomed")
            )
            return bool(left == 0 and not await redis.zscore(keys.LIVE_RACES, race_id))

        await wait_for(cleaned, "the mirror and the checkpoint to go", 5)
        await asyncio.sleep(1.5)  # more reaper rounds: still written once
        assert len(await read_outbox(redis_url)) == 1
    finally:
        reports.cancel()
        await asyncio.gather(reports, return_exceptions=True)
        await redis.aclose()


async def test_a_stopped_node_leaves_no_checkpoint(node: RunningNode, redis_url: str) -> None:
    inner = node.node
    race, _ = inner.create_race(RaceType.CUSTOM, [SeatRequest(PlayerId("p1"), "ada")], custom_text=TEXT)
    race.join(PlayerId("p1"), "ada", now_ms())
    redis = aioredis.Redis.from_url(redis_url)
    try:

        async def written() -> bool:
            return await journalled(redis, race.id) == 2  # join, countdown

        await wait_for(written, "the checkpoint", 5)
        await node.runner.cleanup()  # aborts the race, writes its result, stops
        assert [(r.match_id, r.state) for r in await read_outbox(redis_url)] == [(race.id, "aborted")]
        left = await redis.exists(keys.race_checkpoint(race.id), keys.node_checkpoints("node-a"))
        assert left == 0
    finally:
        await redis.aclose()


async def test_two_live_nodes_finalise_a_dead_nodes_races_once(
    node_factory: NodeFactory, redis_url: str
) -> None:
    """A ghost's checkpoints, one readable and one not: the live nodes' reapers race for them;
    the readable race is written once, the unreadable one is only cleaned up."""
    race = journalled_race(2)
    race.node_id = NodeId("ghost")
    race.join(PlayerId("p1"), "ada", T0)
    race.join(PlayerId("p2"), "bob", T0 + 5)
    race.advance(race.start_at or 0)
    type_some(race, "p1", 12, random.Random(2))
    good, bad = race.id, RaceId("rbroken000000000")
    redis = aioredis.Redis.from_url(redis_url)
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.rpush(keys.race_checkpoint(good), *checkpoint_of(race))
            pipe.rpush(keys.race_checkpoint(bad), b"not a definition")
            pipe.hset(keys.race_state(bad), "state", "running")
            pipe.sadd(keys.node_checkpoints("ghost"), good, bad)
            pipe.hset(keys.CHECKPOINT_NODES, "ghost", "local")
            await pipe.execute()
        no_adoption = with_race(adopt=False)  # the aborted path (adoption: test_adoption.py)
        nodes = [await node_factory(n, race=no_adoption) for n in ("node-a", "node-b")]

        async def done() -> bool:
            return not await redis.exists(keys.node_checkpoints("ghost"))

        await wait_for(done, "the ghost's races to be finalised", 10)
        records = await read_outbox(redis_url)
        assert [(r.match_id, r.state, r.reason, r.node_id) for r in records] == [
            (good, "aborted", "node lost", "ghost")
        ]
        assert records[0].participants[0].correct_chars == 12
        left = (keys.race_checkpoint(good), keys.race_checkpoint(bad), keys.race_state(bad))
        assert await redis.exists(*left) == 0
        counts: dict[str, float] = {}
        for n in nodes:
            for sample in n.node.metrics.races_reaped.collect()[0].samples:
                if sample.name.endswith("_total") and sample.value:  # every outcome exists from start-up
                    counts[sample.labels["outcome"]] = counts.get(sample.labels["outcome"], 0) + sample.value
        assert counts == {"aborted": 1, "unreadable": 1}

        async def forgotten() -> bool:  # a dead node with nothing left is dropped from the index
            return not await redis.hexists(keys.CHECKPOINT_NODES, "ghost")

        await wait_for(forgotten, "the ghost to be forgotten", 5)
    finally:
        await redis.aclose()
