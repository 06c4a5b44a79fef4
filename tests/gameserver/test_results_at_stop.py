"""A stopping node writes the result of every race it holds, however many, through a small
Redis pool; results it cannot write are named and fail the process (issue 20)."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from arena import keys
from arena.clock import now_ms
from arena.ids import NodeId, PlayerId
from arena.outbox import OutboxEntry, OutboxSettings
from arena.protocol import CloseCode, Error, Hello, Input, Join, RaceState, RaceType, Results, Start, Welcome
from arena.settings import RedisSettings, SecretSettings
from gameserver.app import NODE_KEY, build_app
from gameserver.checkpoint import encode_entries
from gameserver.drain import SHUTDOWN_REASON
from gameserver.listener import NodeSite
from gameserver.node import CHECKPOINT_BYTES_PER_TICK, Node, SeatRequest
from gameserver.settings import NodeSettings
from ops.services import RedisServer, free_port
from tests.conftest import ADMIN, read_outbox, with_race
from tests.gameserver.wsclient import RawClient

RACES = 2000  # races the node holds when it stops
POOL = 8  # the node's Redis connections at most: far fewer than its races
# Seats fill at once, a short countdown, a time limit no test reaches.
RACING = with_race(countdown_s=0.3, quick_limit_s=120.0, tick_hz=20.0)

Started = Callable[..., Awaitable[tuple[web.AppRunner, Node]]]


@pytest.fixture
async def start_node(redis_url: str) -> AsyncIterator[Started]:
    runners: list[web.AppRunner] = []

    async def start(max_connections: int = POOL, results_write_s: float = 10.0) -> tuple[web.AppRunner, Node]:
        settings = NodeSettings(
            node_id=NodeId("node-stop"),
            port=free_port(),
            admin_port=0,  # any free port
            redis=RedisSettings(url=redis_url, max_connections=max_connections),
            secrets=SecretSettings(token_secret=b"test-secret-0123456789", admin_token=ADMIN),
            race=RACING,
            results_write_s=results_write_s,
            outbox=OutboxSettings(retry_cap_s=0.2),
        )
        runner = web.AppRunner(build_app(settings), handle_signals=False)
        await runner.setup()
        await NodeSite(runner, "127.0.0.1", settings.port).start()
        runners.append(runner)
        return runner, runner.app[NODE_KEY]

    yield start
    for runner in runners:
        await runner.cleanup()  # a no-op for those a test already stopped


def hold_running_races(node: Node, count: int) -> list[str]:
    """``count`` races of two players, both seated (no sockets: the node's own API), so each
    counts down and runs; returns their ids."""
    now = now_ms()
    ids = []
    for i in range(count):
        players = [SeatRequest(PlayerId(f"p{i}-{j}"), f"p{i}-{j}") for j in range(2)]
        race, _ = node.create_race(RaceType.QUICK, players)
        for p in players:
            race.join(p.player_id, p.name, now)
        ids.append(race.id)
    return ids


async def until_all_running(node: Node) -> None:
    for _ in range(200):  # 10 s
        if all(room.race.state is RaceState.RUNNING for room in node.rooms.values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the races did not start")


def spawn_node(env: dict[str, str], log_path: Path) -> "subprocess.Popen[bytes]":
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "gameserver"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


async def connected_clients(redis: aioredis.Redis) -> int:
    info = await redis.info("clients")
    return int(info["connected_clients"])


async def test_a_stop_writes_every_result_through_a_small_pool(start_node: Started, redis_url: str) -> None:
    runner, node = await start_node()
    assert node.redis.connection_pool.max_connections == POOL
    race_ids = hold_running_races(node, RACES)
    await until_all_running(node)
    # Some typing, so the records carry partial results: the first racer of each race typed 3 keys.
    await asyncio.sleep(0.35)
    now = now_ms()
    for room in node.rooms.values():
        race = room.race
        racer = next(iter(race.racers.values()))
        race.apply_input(racer, 1, race.passage.text[:3], [100, 200, 300], now)

    watcher = aioredis.Redis.from_url(redis_url)
    baseline = await connected_clients(watcher)  # ours and whatever earlier tests left open
    most = baseline
    stopped = asyncio.Event()

    async def watch_connections() -> None:
        nonlocal most
        while not stopped.is_set():
            most = max(most, await connected_clients(watcher))
            await asyncio.sleep(0.01)

    watching = asyncio.create_task(watch_connections())
    loop = asyncio.get_running_loop()
    began = loop.time()
    await runner.cleanup()  # on_shutdown aborts and writes, then the node stops
    took = loop.time() - began
    stopped.set()
    await watching
    await watcher.aclose()

    records = {r.match_id: r for r in await read_outbox(redis_url)}
    assert sorted(records) == sorted(race_ids)  # every race, once
    assert {(r.state, r.reason) for r in records.values()} == {("aborted", SHUTDOWN_REASON)}
    assert all(len(r.participants) == 2 for r in records.values())
    assert all(sorted(p.correct_chars for p in r.participants) == [0, 3] for r in records.values())
    assert node.failure is None
    report = node.drain_report
    assert report is not None and (report.aborted, node.live_races()) == (RACES, 0)
    assert node.tasks_alive() == []
    # One connection for the results, whatever the number of races: never past the pool.
    assert most - baseline <= POOL, (baseline, most)
    metric = node.metrics.registry.get_sample_value
    assert metric("arena_gameserver_outbox_batch_size_sum") == RACES
    # Batches, not one round trip per race (the abort yields every 100 races or 20 ms, so a
    # batch may leave before it is full: more of them on a busy machine).
    round_trips = metric("arena_gameserver_outbox_batch_size_count")
    assert round_trips is not None
    assert RACES / OutboxSettings().batch_max <= round_trips <= RACES / 10
    assert metric("arena_gameserver_outbox_retries_total") == 0
    assert metric("arena_gameserver_outbox_appends_total") == RACES
    assert metric("arena_gameserver_outbox_backlog") == 0
    assert took < node.settings.results_write_s, took


async def test_a_retried_batch_writes_each_result_once(start_node: Started, redis_url: str) -> None:
    """A round trip that fails after Redis took it (a lost reply) is tried again: still once each."""
    runner, node = await start_node()
    race_ids = hold_running_races(node, 40)
    await until_all_running(node)
    real = node.outbox.append_many
    calls = 0

    async def reply_lost(entries: list[OutboxEntry]) -> list[bool | Exception]:
        nonlocal calls
        calls += 1
        result = await real(entries)
        if calls == 1:
            raise RedisConnectionError("connection lost before the reply")
        return result

    node.outbox.append_many = reply_lost  # type: ignore[method-assign]
    await runner.cleanup()
    records = await read_outbox(redis_url)
    assert sorted(r.match_id for r in records) == sorted(race_ids)
    assert calls == 2 and node.failure is None
    metric = node.metrics.registry.get_sample_value
    assert metric("arena_gameserver_outbox_retries_total") == 1
    assert metric("arena_gameserver_outbox_appends_total") == 0  # the retry found them all written


async def test_results_it_cannot_write_are_named_and_fail_the_node(
    start_node: Started, redis_url: str
) -> None:
    runner, node = await start_node(results_write_s=0.5)
    race_ids = hold_running_races(node, 30)
    await until_all_running(node)

    async def unreachable(entries: list[OutboxEntry]) -> list[bool | Exception]:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    node.outbox.append_many = unreachable  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:
        began = loop.time()
        await runner.cleanup()
        took = loop.time() - began
    assert await read_outbox(redis_url) == []
    unwritten = [e for e in logs if e["event"] == "results_unwritten_at_stop"]
    assert len(unwritten) == 1  # one line, naming every race
    assert unwritten[0]["log_level"] == "error"
    assert unwritten[0]["races"] == 30 and unwritten[0]["race_ids"] == sorted(race_ids)
    assert node.failure == "30 race results not written to the outbox at stop"
    # Retried as one batch with backoff: a few lines in the half second, not one per race.
    retries = [e for e in logs if e["event"] == "outbox_batch_retry"]
    assert 1 <= len(retries) <= 8 and all(e["matches"] == 30 for e in retries)
    assert not [e for e in logs if e["event"] == "race_finalized"]  # nobody was told a result
    assert node.live_races() == 30 and node.tasks_alive() == []
    assert took < 0.5 + 2.0, took


async def test_a_node_process_that_cannot_write_its_results_exits_1_naming_them(tmp_path: Path) -> None:
    """SIGTERM with Redis gone: the grace, the write phase, then exit 1 with the races' ids."""
    with RedisServer() as redis_server:
        port, admin_port = free_port(), free_port()
        env = dict(os.environ) | {
            "ARENA_REDIS_URL": redis_server.url,
            "ARENA_NODE_ID": "proc-unwritten",
            "ARENA_NODE_PORT": str(port),
            "ARENA_NODE_ADMIN_PORT": str(admin_port),
            "ARENA_ADMIN_TOKEN": ADMIN,
            "ARENA_TOKEN_SECRET": "process-test-secret-0123",
            "ARENA_NODE_SHUTDOWN_GRACE_S": "0.5",
            "ARENA_NODE_RESULTS_WRITE_S": "1",
            "ARENA_LOG_JSON": "1",
        }
        log_path = tmp_path / "node.log"
        proc = spawn_node(env, log_path)
        try:
            race_ids = []
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
                for _ in range(100):
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/healthz")).status == 200:
                            break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                for name in ("ada", "bob", "cy"):
                    body = {"race_type": "quick", "players": [{"name": name}]}
                    async with http.post(f"http://127.0.0.1:{admin_port}/admin/races", json=body) as resp:
                        assert resp.status == 201
                        race_ids.append((await resp.json())["race_id"])
            redis_server.stop()
            loop = asyncio.get_running_loop()
            signalled = loop.time()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(loop.run_in_executor(None, proc.wait), 15)
            took = loop.time() - signalled
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        lines = [json.loads(line) for line in log_path.read_bytes().splitlines() if line.startswith(b"{")]
    assert code == 1
    unwritten = [e for e in lines if e["event"] == "results_unwritten_at_stop"]
    assert len(unwritten) == 1 and unwritten[0]["race_ids"] == sorted(race_ids)
    failed = [e for e in lines if e["event"] == "gameserver_failed"]
    assert failed and "3 race results not written" in failed[0]["failure"]
    assert took < 0.5 + 1 + 4, took  # the grace, the write phase, a few seconds for the rest


async def test_a_stop_closes_every_socket_not_only_those_of_its_races(start_node: Started) -> None:
    """A socket in no race (said hello, never joined; or its race already forgotten by the
    tick) is closed too: one left open would hold the stop up until its client hangs up."""
    runner, node = await start_node()
    client = await RawClient.connect(node.settings.ws_url)
    await client.send(Hello(token=node.signer.sign_player(PlayerId("idle"), "idle", ttl_s=60, guest=True)))
    await client.recv_until(Welcome)
    assert len(node.sockets) == 1 and not node.rooms
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(runner.cleanup(), 10)
    assert loop.time() - began < 5  # the close timeout (2 s), not aiohttp's 60 s handler timeout
    assert await client.wait_closed() == CloseCode.GOING_AWAY
    await client.close()


async def test_what_players_send_during_the_write_phase_is_not_read(start_node: Started) -> None:
    """Once every race is aborted, the node stops reading its sockets until it closes them: a
    loaded node's loop must not spend the write phase refusing inputs to races that are over."""
    runner, node = await start_node()
    race, seats = node.create_race(RaceType.QUICK, [SeatRequest(PlayerId("ada"), "ada")])
    client = await RawClient.connect(node.settings.ws_url)
    await client.send(Hello(token=seats[0].player_token))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=seats[0].ticket))
    start = await client.recv_until(Start)
    assert isinstance(start, Start)
    real = node.outbox.append_many
    writing = asyncio.Event()

    async def slow_write(entries: list[OutboxEntry]) -> list[bool | Exception]:
        writing.set()
        await asyncio.sleep(0.5)  # the write phase: the player types on meanwhile
        return await real(entries)

    node.outbox.append_many = slow_write  # type: ignore[method-assign]
    stopping = asyncio.create_task(runner.cleanup())
    await writing.wait()
    for seq in range(1, 6):
        await client.send(Input(seq=seq, keys=race.passage.text[seq - 1], times=[now_ms() - start.start_at]))
    await stopping
    results = await client.recv_until(Results)
    assert isinstance(results, Results) and results.state == "aborted"
    assert await client.wait_closed() == CloseCode.GOING_AWAY
    assert not [m for m in client.received if isinstance(m, Error)]  # no input was answered
    assert (
        node.metrics.registry.get_sample_value("arena_gameserver_messages_in_total", {"type": "input"}) == 0
    )
    await client.close()


async def test_a_saturated_node_drops_its_checkpoint_backlog_and_writes_every_result_first(
    start_node: Started, redis_url: str
) -> None:
    """A node far behind on its checkpoints (every race holding unappended journal) and with a
    loop that never has time to spare stops within its write phase with every result in the
    outbox: it drops the backlogs of the races it aborts (their results are the record) and its
    tick waits until the results are written; the checkpoints are deleted after."""
    runner, node = await start_node()
    races = 1500
    race_ids = hold_running_races(node, races)
    await until_all_running(node)
    # The journal of minutes of typing nobody could append (16 KB a race, 24 MB in all).
    backlog = encode_entries([("l", "p0-0", T) for T in range(1600)])
    for room in node.rooms.values():
        room.checkpoint_backlog = [(backlog, 1600)] * 2
    metric = node.metrics.registry.get_sample_value
    stopped = asyncio.Event()

    async def hog() -> None:
        """Saturation: every turn of the loop costs 5 ms more (the players' inputs)."""
        while not stopped.is_set():
            time.sleep(0.005)  # noqa: ASYNC251 (blocking the loop is the point)
            await asyncio.sleep(0)

    hogging = asyncio.create_task(hog())
    await asyncio.sleep(0.3)  # a few slow ticks: each appends a few MB of backlog
    appended_before = metric("arena_gameserver_checkpoint_entries_total")
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        await asyncio.wait_for(runner.cleanup(), node.settings.results_write_s + 10)
    finally:
        stopped.set()
        await hogging
    took = loop.time() - began

    records = await read_outbox(redis_url)
    assert sorted(r.match_id for r in records) == sorted(race_ids)  # every race, once
    assert node.failure is None and node.tasks_alive() == []
    assert took < node.settings.results_write_s, took
    # No backlog appended from the stop on (dropped, results first), but for ticks already on
    # their way: one whose appends were in flight when ``appended_before`` was read (counted when
    # they complete) and one that may start before the stop's task first runs: two ticks' bound
    # at most (the code before the fix appended about eleven: 4.16 M entries).
    one_tick = (CHECKPOINT_BYTES_PER_TICK // len(backlog) + 1) * 1600
    appended = metric("arena_gameserver_checkpoint_entries_total")
    assert appended is not None and appended_before is not None
    assert appended - appended_before <= 2 * one_tick, (appended - appended_before, one_tick)
    assert metric("arena_gameserver_checkpoints_frozen_total", {"why": "stop"}) == races
    # The checkpoints went with the results (no reaper finds a race to finalise twice).
    watcher = aioredis.Redis.from_url(redis_url)
    try:
        left = [k async for k in watcher.scan_iter(match="race:*:checkpoint", count=1000)]
        assert left == [] and await watcher.scard(keys.node_checkpoints(node.settings.node_id)) == 0
    finally:
        await watcher.aclose()
