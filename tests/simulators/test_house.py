"""House bots keep the queues warm: they never race each other, and a person gets a race at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.backoff import BackoffSettings
from arena.placement import NodePlacer
from arena.registry import NodeRegistry
from arena.settings import SecretSettings
from arena.tickets import QueueRef, TicketStore
from matchmaker.service import Matchmaker
from ops.services import free_port
from simulators.house import HouseSettings, HouseStats, parse_args, run_house
from tests.conftest import ADMIN, NodeFactory, RunningNode
from tests.lobby.conftest import LobbyFactory, RunningLobby, lobby_factory
from tests.matchmaker.conftest import FAST_MM

__all__ = ["lobby_factory"]  # the fixture, re-exported


@pytest.fixture
async def matchmaker(redis_url: str) -> AsyncIterator[Matchmaker]:
    client = aioredis.Redis.from_url(redis_url)
    store = TicketStore(client)
    http = aiohttp.ClientSession()
    settings = replace(
        FAST_MM,
        regions=("local",),
        neighbours={},
        fallback_wait_s=1.0,
        secrets=SecretSettings(admin_token=ADMIN),
    )
    placer = NodePlacer(NodeRegistry(client), http, ADMIN, timeout_s=2.0, attempts=2)
    mm = Matchmaker(settings, client, store, placer)
    await mm.start()
    yield mm
    await mm.stop(deadline_s=1.0)
    await store.aclose()
    await http.close()
    await client.aclose()


async def queue_a_person(lobby: RunningLobby) -> tuple[dict[str, object], float]:
    base = f"http://127.0.0.1:{lobby.settings.port}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/guests", json={"name": "person"}) as resp:
            token = (await resp.json())["token"]
        auth = {"Authorization": f"Bearer {token}"}
        started = time.monotonic()
        async with http.post(
            f"{base}/v1/tickets", json={"race_type": "quick", "region": "local"}, headers=auth
        ) as resp:
            ticket = (await resp.json())["ticket_id"]
        async with http.get(f"{base}/v1/tickets/{ticket}?wait=10", headers=auth) as resp:
            view = await resp.json()
        return view, time.monotonic() - started


async def test_a_person_alone_gets_a_race_with_house_bots_at_once(
    node_factory: NodeFactory, lobby_factory: LobbyFactory, matchmaker: Matchmaker
) -> None:
    node: RunningNode = await node_factory()
    lobby = await lobby_factory(regions=("local",), rate_per_ip=0)
    settings = HouseSettings(
        lobby_url=f"http://127.0.0.1:{lobby.settings.port}",
        per_queue=2,
        hold_s=0.6,
        race_types=("quick",),
        seed=3,
    )
    stop, stats = asyncio.Event(), HouseStats()
    house = asyncio.create_task(run_house(settings, stop, stats))
    try:
        await asyncio.sleep(2.5)  # several hold-and-withdraw turns: bots alone never make a race
        assert stats.withdrawn >= 2 and stats.races == 0 and not node.node.rooms, stats
        view, waited = await queue_a_person(lobby)
        assert view["state"] == "matched", view
        assert waited < 2.0  # the fallback wait (1 s) plus a pass, not the solo wait (6 s)
        (room,) = node.node.rooms.values()
        assert len(room.race.seats) >= 2  # the person and at least one house bot
        assert not stats.errors, stats
    finally:
        stop.set()
        await asyncio.wait_for(house, 10)
    assert house.done() and not house.cancelled()


async def test_stopping_withdraws_the_tickets_still_queued(
    lobby_factory: LobbyFactory, redis_url: str
) -> None:
    """No matchmaker: tickets stay queued. A stop must not leave them for a matchmaker to place."""
    lobby = await lobby_factory(regions=("local",), rate_per_ip=0)
    settings = HouseSettings(
        lobby_url=f"http://127.0.0.1:{lobby.settings.port}", per_queue=3, hold_s=30.0, race_types=("quick",)
    )
    stop, stats = asyncio.Event(), HouseStats()
    house = asyncio.create_task(run_house(settings, stop, stats))
    client = aioredis.Redis.from_url(redis_url)
    store = TicketStore(client)
    queue = QueueRef("quick", "local")
    try:
        for _ in range(100):  # every bot queued and long-polling (hold 30 s)
            if (await store.peek(queue, limit=10)).depth == 3:
                break
            await asyncio.sleep(0.05)
        assert (await store.peek(queue, limit=10)).depth == 3
        stop.set()
        began = time.monotonic()
        await asyncio.wait_for(house, 5)
        assert time.monotonic() - began < 2.0  # not the 30 s hold
        assert (await store.peek(queue, limit=10)).depth == 0
        assert not stats.errors, stats
    finally:
        stop.set()
        await store.aclose()
        await client.aclose()


def test_settings_are_checked() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--lobby", "http://10.0.0.1:8300"])  # loopback only
    with pytest.raises(SystemExit):
        parse_args(["--lobby", "http://127.0.0.1:8300", "--per-queue", "0"])
    settings = parse_args(["--lobby", "http://127.0.0.1:8300", "--race-types", "quick", "--hold", "1.5"])
    assert settings.race_types == ("quick",) and settings.hold_s == 1.5


class FlakyLobby:
    """A stand-in lobby on 127.0.0.1: ``/v1/regions`` fails its first ``region_failures`` times
    and ``/v1/guests`` its first ``guest_failures`` times (503, not JSON, like a proxy in front
    of a restarting lobby); then tickets are queued and withdrawn. Records when guests came."""

    def __init__(self, region_failures: int, guest_failures: int) -> None:
        self.region_failures = region_failures
        self.guest_failures = guest_failures
        self.regions_asked = 0
        self.guest_calls: list[float] = []
        self.port = free_port()
        app = web.Application()
        app.router.add_get("/v1/regions", self._regions)
        app.router.add_post("/v1/guests", self._guest)
        app.router.add_post("/v1/tickets", self._ticket)
        app.router.add_get("/v1/tickets/{id}", self._poll)
        app.router.add_delete("/v1/tickets/{id}", self._cancel)
        self.runner = web.AppRunner(app, handle_signals=False)

    async def _regions(self, request: web.Request) -> web.Response:
        self.regions_asked += 1
        if self.regions_asked <= self.region_failures:
            return web.Response(status=503, text="starting")
        return web.json_response({"regions": [{"id": "local", "accepting": True}]})

    async def _guest(self, request: web.Request) -> web.Response:
        self.guest_calls.append(time.monotonic())
        if len(self.guest_calls) <= self.guest_failures:
            return web.Response(status=503, text="<html>bad gateway</html>", content_type="text/html")
        return web.json_response({"token": "t", "player_id": "p"}, status=201)

    async def _ticket(self, request: web.Request) -> web.Response:
        return web.json_response({"ticket_id": "k1", "state": "queued"}, status=201)

    async def _poll(self, request: web.Request) -> web.Response:
        await asyncio.sleep(0.05)
        return web.json_response({"ticket_id": "k1", "state": "queued"})

    async def _cancel(self, request: web.Request) -> web.Response:
        return web.json_response({"ticket_id": "k1", "state": "cancelled"})


async def test_house_bots_back_off_from_a_failing_lobby_and_carry_on_when_it_is_back() -> None:
    lobby = FlakyLobby(region_failures=2, guest_failures=4)
    await lobby.runner.setup()
    await web.TCPSite(lobby.runner, "127.0.0.1", lobby.port).start()
    settings = HouseSettings(
        lobby_url=f"http://127.0.0.1:{lobby.port}",
        per_queue=1,
        hold_s=0.1,
        race_types=("quick",),
        seed=5,
        backoff=BackoffSettings(base_s=0.1, cap_s=0.3, jitter=0.0),
    )
    stop, stats = asyncio.Event(), HouseStats()
    house = asyncio.create_task(run_house(settings, stop, stats))
    try:
        for _ in range(60):
            await asyncio.sleep(0.05)
            if stats.withdrawn >= 2:
                break
        assert stats.withdrawn >= 2, stats  # the bot carried on once the lobby answered
        assert not house.done()  # and nothing ended the process's main task
    finally:
        stop.set()
        await asyncio.wait_for(house, 5)
        await lobby.runner.cleanup()
    assert stats.errors == {"lobby_http_503": 2 + 4}
    assert lobby.regions_asked == 3
    gaps = [b - a for a, b in zip(lobby.guest_calls, lobby.guest_calls[1:5], strict=False)]
    for gap, delay in zip(gaps, [0.1, 0.2, 0.3, 0.3], strict=True):
        assert delay <= gap < delay + 0.2, gaps  # doubling, capped at 0.3 s
