"""Admission control: a node whose loop lags says it is full, and takes races again once it has
caught up, without flapping near the threshold (the logic alone, then a real node)."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from structlog.testing import capture_logs

from arena.ids import NodeId
from arena.registry import NodeRegistry, NodeState
from arena.settings import RedisSettings, SecretSettings
from gameserver.admission import CLEAR_AFTER, FULL_AFTER, Admission
from gameserver.app import build_app
from gameserver.listener import NodeSite
from gameserver.settings import NodeSettings
from ops.services import free_port
from tests.conftest import ADMIN, FAST_RACE, RunningNode


def beats(admission: Admission, lags_ms: list[float]) -> list[bool]:
    """One heartbeat per lag (the worst of its window); ``full`` after each."""
    out = []
    for ms in lags_ms:
        admission.observe(ms / 1000)
        admission.observe(0.001)  # the worst counts, not the last
        admission.step()
        out.append(admission.full)
    return out


def test_full_after_lagging_heartbeats_in_a_row_and_back_after_calm_ones() -> None:
    a = Admission(full_lag_ms=500)
    assert beats(a, [600, 10, 600, 10]) == [False] * 4  # one bad heartbeat is a hiccup
    assert beats(a, [700] * FULL_AFTER) == [False] * (FULL_AFTER - 1) + [True]
    assert a.last_worst_ms == 700
    # Between half the threshold and the threshold: still full (no flapping around 500 ms).
    assert beats(a, [300, 400, 260, 499]) == [True] * 4
    assert beats(a, [100] * CLEAR_AFTER) == [True] * (CLEAR_AFTER - 1) + [False]
    assert beats(a, [100, 520, 100]) == [False] * 3


def test_a_step_says_when_the_state_changed_and_the_window_starts_anew() -> None:
    a = Admission(full_lag_ms=100)
    a.observe(0.2)
    assert a.step() is False and a.worst_ms == 0.0
    a.observe(0.2)
    assert a.step() is True and a.full
    assert a.step() is False  # an empty window is calm, but one is not enough
    assert [a.step() for _ in range(CLEAR_AFTER - 1)] == [False] * (CLEAR_AFTER - 2) + [True]


def test_off_never_full() -> None:
    a = Admission(full_lag_ms=0)
    assert beats(a, [60_000] * 5) == [False] * 5


# ---- a node that cannot keep up -------------------------------------------------


@pytest.fixture
async def lagging_node(redis_url: str) -> AsyncIterator[tuple[RunningNode, aioredis.Redis]]:
    """A node judged every 0.2 s, full at 100 ms of lag; and a client of its Redis."""
    port = free_port()
    settings = NodeSettings(
        node_id=NodeId("node-full"),
        port=port,
        admin_port=0,
        redis=RedisSettings(url=redis_url),
        secrets=SecretSettings(token_secret=b"test-secret-0123456789", admin_token=ADMIN),
        race=FAST_RACE,
        heartbeat_s=0.2,
        full_lag_ms=100,
    )
    runner = web.AppRunner(build_app(settings), handle_signals=False)
    await runner.setup()
    await NodeSite(runner, "127.0.0.1", port).start()
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield RunningNode(settings, runner), client
    finally:
        await client.aclose()
        await runner.cleanup()


async def create(running: RunningNode) -> tuple[int, dict[str, Any]]:
    body = {"race_type": "quick", "players": [{"name": "ada"}]}
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http,
        http.post(f"{running.admin_url}/admin/races", json=body) as resp,
    ):
        return resp.status, await resp.json()


async def until(check: Callable[[], Awaitable[bool]], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, "not within the deadline"
        await asyncio.sleep(0.05)


async def test_a_lagging_node_says_it_is_full_refuses_races_and_recovers(
    lagging_node: tuple[RunningNode, aioredis.Redis],
) -> None:
    running, redis = lagging_node
    node = running.node
    registry = NodeRegistry(redis)

    async def state() -> str | None:
        info = await registry.get(node.settings.node_id)
        return info.state if info is not None else None

    assert await state() == NodeState.READY.value and (await create(running))[0] == 201
    stop_lagging = asyncio.Event()

    async def lag() -> None:
        """A loop that cannot keep up: 150 ms busy in every 200."""
        while not stop_lagging.is_set():
            time.sleep(0.15)  # noqa: ASYNC251 (blocking the loop is the point)
            await asyncio.sleep(0.05)

    lagging = asyncio.create_task(lag())
    with capture_logs() as logs:
        try:
            await until(lambda: _is(state, NodeState.FULL.value), 10)
            info = await registry.get(node.settings.node_id)
            assert info is not None and not info.accepting  # placement skips it
            status, body = await create(running)
            assert (status, body["error"]) == (503, "node_full")
            metric = node.metrics.registry.get_sample_value
            assert metric("arena_gameserver_full") == 1
        finally:
            stop_lagging.set()
            await lagging
        await until(lambda: _is(state, NodeState.READY.value), 10)  # caught up: takes races again
    assert (await create(running))[0] == 201
    assert metric("arena_gameserver_full") == 0
    assert metric("arena_gameserver_full_changes_total", {"to": "full"}) == 1
    assert metric("arena_gameserver_full_changes_total", {"to": "ready"}) == 1
    full = [e for e in logs if e["event"] == "node_full"]
    assert len(full) == 1 and full[0]["log_level"] == "warning" and full[0]["worst_lag_ms"] >= 100


async def _is(state: Callable[[], Awaitable[str | None]], wanted: str) -> bool:
    return await state() == wanted
