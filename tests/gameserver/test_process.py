"""A node as a real process: SIGTERM drains with a deadline, SIGKILL drops it from placement."""

import asyncio
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
import redis.asyncio as aioredis

from arena import keys
from arena.protocol import Hello, Join, Results, Start, Welcome
from arena.registry import NodeRegistry
from ops.admin import drain
from ops.services import free_port
from simulators.bot import Bot, BotReport
from simulators.typing import TypingProfile
from tests.conftest import ADMIN, read_outbox
from tests.gameserver.wsclient import RawClient

TEXT = "Storm clouds gathered over the harbour while the fishing boats hurried home."


@dataclass
class NodeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int

    @property
    def http_url(self) -> str:
        """The players' listener (/ws, /healthz, /readyz)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def create_race(self, names: list[str], race_type: str = "custom") -> dict[str, object]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            body = {"race_type": race_type, "custom_text": TEXT, "players": [{"name": n} for n in names]}
            resp = await http.post(f"{self.admin_url}/admin/races", json=body)
            assert resp.status == 201
            return await resp.json()  # type: ignore[no-any-return]

    async def exit_code(self, timeout_s: float) -> int:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(None, self.proc.wait), timeout_s)


ProcessStarter = Callable[..., Awaitable[NodeProcess]]


@pytest.fixture
async def start_process(redis_url: str) -> AsyncIterator[ProcessStarter]:
    procs: list[subprocess.Popen[bytes]] = []

    async def start(node_id: str = "proc-a", grace_s: float = 30.0, **env_extra: str) -> NodeProcess:
        port, admin_port = free_port(), free_port()
        env = dict(os.environ) | {
            "ARENA_REDIS_URL": redis_url,
            "ARENA_NODE_ID": node_id,
            "ARENA_NODE_PORT": str(port),
            "ARENA_NODE_ADMIN_PORT": str(admin_port),
            "ARENA_ADMIN_TOKEN": ADMIN,
            "ARENA_TOKEN_SECRET": "process-test-secret-0123",
            "ARENA_NODE_SHUTDOWN_GRACE_S": str(grace_s),
            "ARENA_RACE_COUNTDOWN_S": "1",
            "ARENA_NODE_HEARTBEAT_S": "0.5",
            **env_extra,
        }
        proc = subprocess.Popen([sys.executable, "-m", "gameserver"], env=env)
        procs.append(proc)
        node = NodeProcess(proc, port, admin_port)
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"{node.http_url}/healthz")).status == 200:
                        return node
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("node process did not come up")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def bots_for(race: dict[str, object], wpm: float) -> list[Bot]:
    seats = race["seats"]
    assert isinstance(seats, list)
    profile = TypingProfile(wpm=wpm, error_rate=0.0, jitter_cv=0.4, notice_delay_chars=0, pause_chance=0.0)
    url = race["url"]
    assert isinstance(url, str)
    return [Bot(url, s["player_token"], s["ticket"], profile, random.Random(i)) for i, s in enumerate(seats)]


def run_bots(bots: list[Bot], timeout_s: float) -> "asyncio.Future[list[BotReport]]":
    """Start the bots in the background; await the future for their reports."""
    return asyncio.ensure_future(asyncio.gather(*(b.run(timeout_s) for b in bots)))


async def test_sigterm_lets_running_races_finish(start_process: ProcessStarter, redis_url: str) -> None:
    node = await start_process()
    race = await node.create_race(["ada", "bob"])
    reports = run_bots(bots_for(race, 140.0), 30)
    await asyncio.sleep(2.0)  # the race is running
    node.proc.send_signal(signal.SIGTERM)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        await asyncio.sleep(0.3)
        resp = await http.post(f"{node.admin_url}/admin/races", json={"players": [{"name": "late"}]})
        assert resp.status == 503  # draining: no new race
    done = await reports
    assert all(r.finished and r.results is not None and r.results.state == "finished" for r in done), [
        (r.finished, r.failure, r.errors, r.close_code, r.results and r.results.state) for r in done
    ]
    assert await node.exit_code(15) == 0
    records = await read_outbox(redis_url)
    assert [(r.match_id, r.state) for r in records] == [(race["race_id"], "finished")]


async def test_races_still_running_at_the_deadline_are_aborted(
    start_process: ProcessStarter, redis_url: str
) -> None:
    node = await start_process(grace_s=1.0)
    race = await node.create_race(["slow", "slower"])
    reports = run_bots(bots_for(race, 20.0), 30)
    await asyncio.sleep(2.0)
    node.proc.send_signal(signal.SIGTERM)
    done = await reports
    for report in done:
        assert report.results is not None and report.results.state == "aborted"
        assert report.results.reason == "the server is shutting down"
    assert await node.exit_code(15) == 0
    records = await read_outbox(redis_url)
    assert [(r.match_id, r.state) for r in records] == [(race["race_id"], "aborted")]
    assert all(0 < p.correct_chars < len(TEXT) for p in records[0].participants)
    redis = aioredis.Redis.from_url(redis_url)
    raw = await redis.get(keys.node_drain_report("proc-a"))  # what ops.admin reads once the node is gone
    await redis.aclose()
    assert raw is not None
    report = json.loads(raw)
    assert (report["aborted"], report["finished"], report["running"]) == (1, 0, 0)


async def test_a_killed_node_leaves_placement_within_seconds(
    start_process: ProcessStarter, redis_url: str
) -> None:
    node = await start_process("proc-doomed")
    redis = aioredis.Redis.from_url(redis_url)
    registry = NodeRegistry(redis, stale_after_ms=1500)
    assert [n.node_id for n in await registry.live_nodes()] == ["proc-doomed"]
    node.proc.send_signal(signal.SIGKILL)
    node.proc.wait()
    loop = asyncio.get_running_loop()
    killed_at = loop.time()
    while await registry.live_nodes():
        await asyncio.sleep(0.1)
        assert loop.time() - killed_at < 5, "a dead node stayed in placement"
    await redis.aclose()


async def test_drain_exit_outlasts_the_signal_grace_and_exits_after_the_races(
    start_process: ProcessStarter, redis_url: str
) -> None:
    # The grace (1 s) is shorter than the race (3 s): an admin drain must not apply it.
    node = await start_process(grace_s=1.0, ARENA_RACE_QUICK_LIMIT_S="3")
    race = await node.create_race(["ada"], race_type="quick")
    seats = race["seats"]
    assert isinstance(seats, list)
    client = await RawClient.connect(str(race["url"]))
    await client.send(Hello(token=seats[0]["player_token"]))
    await client.recv_until(Welcome)
    await client.send(Join(ticket=seats[0]["ticket"]))
    await client.recv_until(Start)
    out = io.StringIO()
    assert await drain(redis_url, ADMIN, "proc-a", exit_after=True, timeout_s=20, out=out, poll_s=0.1) == 0
    assert await node.exit_code(5) == 0  # the command returned once the node had stopped
    results = await client.recv_until(Results)
    assert isinstance(results, Results)
    assert (results.state, results.reason) == ("finished", "time limit reached")
    await client.close()
    assert "proc-a drained and exited: 0 running, 1 finished, 0 aborted" in out.getvalue()
    records = await read_outbox(redis_url)
    assert [(r.match_id, r.state) for r in records] == [(race["race_id"], "finished")]


async def test_admin_drain_with_exit(start_process: ProcessStarter) -> None:
    node = await start_process()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        resp = await http.post(f"{node.admin_url}/admin/drain", json={"exit": True})
        assert resp.status == 202
    assert await node.exit_code(10) == 0


async def test_the_node_collects_once_before_it_serves(start_process: ProcessStarter) -> None:
    """``__main__``: one full collection and trim at start-up (the size it serves at is what a load
    returns to), none scheduled yet; every known label value is there from the start."""
    node = await start_process()
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"{node.admin_url}/metrics")).text()
    assert 'arena_gameserver_gc_full_collections_total{why="startup"} 1.0' in text
    assert 'arena_gameserver_gc_full_collections_total{why="idle"} 0.0' in text
    assert 'arena_gameserver_errors_total{code="race_full"} 0.0' in text
    node.proc.send_signal(signal.SIGTERM)
    assert await node.exit_code(15) == 0
