"""Placing races on real nodes: by load, never on a draining or dead node, regions in order."""

import aiohttp
import redis.asyncio as aioredis

from arena.clock import now_ms
from arena.ids import PlayerId, RaceId
from arena.placement import SeatRequest
from arena.protocol import RaceType
from arena.registry import NodeInfo, NodeRegistry
from gameserver.node import SeatRequest as NodeSeat
from matchmaker.metrics import MatchmakerMetrics
from ops.services import free_port
from tests.matchmaker.conftest import NodeStarter, node_placer

PLAYERS = [SeatRequest("p1", "ada"), SeatRequest("p2", "bob")]


def failures(metrics: MatchmakerMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value("arena_matchmaker_placement_failures_total", {"reason": reason})
    return value or 0.0


async def test_places_on_the_least_loaded_node_and_reserves_seats(
    start_node: NodeStarter, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    busy = await start_node("eu-busy", "eu", capacity=100)
    idle = await start_node("eu-idle", "eu", capacity=100)
    for i in range(10):  # 40 seats reserved on the busy node
        busy.node.create_race(RaceType.QUICK, [NodeSeat(PlayerId(f"x{i}{j}"), "x") for j in range(4)])
    await busy.node.registry.heartbeat(busy.node.info())
    placer = node_placer(redis, http, MatchmakerMetrics())
    placed = await placer.place("quick", ["eu"], PLAYERS)
    assert placed is not None and placed.node_id == "eu-idle" and placed.region == "eu"
    assert set(placed.seats) == {"p1", "p2"} and placed.url == idle.settings.ws_url
    room = idle.node.room(RaceId(placed.race_id))
    assert room is not None and room.race.seats == {"p1", "p2"}
    # Between registry reads the placer counts its own reservations: load still spreads.
    for i in range(20):
        await placer.place("quick", ["eu"], [SeatRequest(f"y{i}", "y"), SeatRequest(f"z{i}", "z")])
    assert idle.node.seats_reserved() <= 60 and busy.node.seats_reserved() >= 40


async def test_skips_draining_and_dead_nodes(
    start_node: NodeStarter, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    draining = await start_node("eu-draining", "eu")
    await start_node("eu-live", "eu", capacity=10)
    await draining.node.drain()
    registry = NodeRegistry(redis)
    # A node that heartbeats but does not answer, with the most free seats: tried first.
    dead_port = free_port()
    await registry.heartbeat(
        NodeInfo(
            "eu-dead",
            "ws://127.0.0.1:1/ws",
            f"http://127.0.0.1:{dead_port}",
            f"http://127.0.0.1:{dead_port}",  # admin
            "eu",
            10_000,
            0,
            0,
            "ready",
            now_ms(),
        )
    )
    metrics = MatchmakerMetrics()
    placer = node_placer(redis, http, metrics)
    placed = await placer.place("quick", ["eu"], PLAYERS)
    assert placed is not None and placed.node_id == "eu-live"
    assert failures(metrics, "unreachable") == 1
    # The dead node is avoided now: the next race goes straight to the live one.
    placed = await placer.place("quick", ["eu"], PLAYERS)
    assert placed is not None and placed.node_id == "eu-live" and failures(metrics, "unreachable") == 1


async def test_next_region_when_home_has_no_node(
    start_node: NodeStarter, redis: aioredis.Redis, http: aiohttp.ClientSession
) -> None:
    await start_node("us-1", "us")
    metrics = MatchmakerMetrics()
    placer = node_placer(redis, http, metrics)
    assert await placer.place("quick", ["eu"], PLAYERS) is None
    assert failures(metrics, "no_node") == 1
    placed = await placer.place("quick", ["eu", "us"], PLAYERS)
    assert placed is not None and placed.region == "us"
