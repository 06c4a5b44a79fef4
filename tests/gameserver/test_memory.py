"""A node's memory over time (issue 21): what a socket or a race leaves behind must be freed at once,
without the cyclic collector, and the collector's scheduled full collection and counts work."""

import asyncio
import gc
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from arena.settings import environ
from gameserver.memory import (
    ALL,
    WATCHED_TYPES,
    MemoryKeeper,
    count_objects,
    glibc_malloc_trim,
    resident_bytes,
)
from gameserver.metrics import NodeMetrics
from gameserver.settings import MemorySettings, NodeSettings
from simulators.bot import Bot
from simulators.typing import TypingProfile
from tests.conftest import NodeFactory, with_race

TEXT = "Rain moved across the valley in slow grey sheets, and the farmers watched it come."
PER_SOCKET = ("connection", "socket_session", "ws_response")


async def _race(create_race: Callable[..., Awaitable[dict[str, Any]]], ws_url: str, seed: int) -> None:
    race = await create_race(["a", "b", "c"], race_type="custom", custom_text=TEXT)
    bots = [
        Bot(
            ws_url,
            seat["player_token"],
            seat["ticket"],
            TypingProfile(wpm=220.0, error_rate=0.0, jitter_cv=0.2, notice_delay_chars=1, pause_chance=0.0),
            random.Random(seed * 10 + i),
            name=seat["name"],
        )
        for i, seat in enumerate(race["seats"])
    ]
    reports = await asyncio.gather(*(b.run(timeout_s=30) for b in bots))
    assert all(r.finished and r.failure is None for r in reports), [(r.failure, r.errors) for r in reports]


async def _until(check: Callable[[], bool], timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_races_and_sockets_that_come_and_go_are_freed_without_the_cyclic_collector(
    node_factory: NodeFactory,
) -> None:
    running = await node_factory(race=with_race(finished_linger_s=0.0))
    node = running.node
    gc.collect()
    gc.disable()  # only refcounting frees from here: anything left waits for the cyclic collector
    try:
        before = count_objects(gc.get_objects())
        await asyncio.gather(*(_race(running.create_race, running.ws_url, seed) for seed in range(4)))
        # Sockets that end otherwise: one that never says hello properly, one that just goes.
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(running.ws_url) as ws:
                await ws.send_bytes(b"\x00not msgpack")
                await ws.receive(timeout=5)
            async with http.ws_connect(running.ws_url):
                pass
        await _until(lambda: not node.rooms and not node.sockets and not node.results_writer.backlog, 10.0)
        await asyncio.sleep(0.3)  # the handlers return and aiohttp finishes their responses
        after = count_objects(gc.get_objects())
        # Counted as what this test added: nodes of earlier tests stay reachable through aiohttp's
        # bounded middleware cache (keyed by app; one app per process outside tests).
        added = {k: after[k] - before[k] for k in (*PER_SOCKET, "race", "race_room", "racer", "traceback")}
        assert added == dict.fromkeys(added, 0), (before, after)  # no kept error holds frames either
        assert node.structure_sizes() == {
            "rooms": 0,
            "sockets": 0,
            "results_backlog": 0,
            "batcher": 0,
            "remote_watched": 0,
            "relay_watched_races": 0,
        }
    finally:
        gc.enable()


class Cycle:
    def __init__(self) -> None:
        self.me = self


def _value(metrics: NodeMetrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_the_keeper_collects_on_its_schedule_and_counts_what_it_freed() -> None:
    metrics = NodeMetrics(CollectorRegistry())
    keeper = MemoryKeeper(MemorySettings(gc_full_s=60.0), metrics, now=1000.0)
    Cycle()  # garbage that only the cyclic collector frees
    keeper.step(1059.0, {"rooms": 3})
    assert keeper.collections == 0
    assert _value(metrics, "arena_gameserver_node_items", {"structure": "rooms"}) == 3.0
    keeper.step(1060.0, {"rooms": 0})
    assert keeper.collections == 1
    freed = _value(metrics, "arena_gameserver_gc_unreachable_objects_total")
    assert freed is not None and freed >= 2  # the Cycle and its __dict__
    assert _value(metrics, "arena_gameserver_node_items", {"structure": "rooms"}) == 0.0
    keeper.step(1100.0, {})
    assert keeper.collections == 1
    keeper.step(1120.0, {})
    assert keeper.collections == 2
    # Heap counts are off by default: no series at all.
    assert _value(metrics, "arena_gameserver_python_objects", {"type": ALL}) is None


def test_heap_counts_when_asked_and_no_collection_when_off() -> None:
    metrics = NodeMetrics(CollectorRegistry())
    keeper = MemoryKeeper(MemorySettings(gc_full_s=0.0, heap_stats_s=30.0), metrics, now=0.0)
    keeper.step(0.0, {})
    total = _value(metrics, "arena_gameserver_python_objects", {"type": ALL})
    assert total is not None and total > 100
    races = count_objects(gc.get_objects())["race"]  # earlier tests' nodes may still hold some
    assert _value(metrics, "arena_gameserver_python_objects", {"type": "race"}) == float(races)
    keeper.step(10_000.0, {})
    assert keeper.collections == 0


def test_count_objects_by_qualified_type_name() -> None:
    watched = {f"{__name__}.Cycle": "cycle", "builtins.int": "int"}
    counts = count_objects([Cycle(), Cycle(), "text", 7, Cycle], watched)
    assert counts == {"cycle": 2, "int": 1, ALL: 5}
    assert set(count_objects([]).keys()) == {*WATCHED_TYPES.values(), ALL}


def test_memory_settings() -> None:
    assert NodeSettings().memory == MemorySettings(gc_full_s=300.0, heap_stats_s=0.0, malloc_trim=True)
    env = {
        **environ(),
        "ARENA_NODE_GC_FULL_S": "0",
        "ARENA_NODE_HEAP_STATS_S": "15",
        "ARENA_NODE_MALLOC_TRIM": "0",
    }
    assert NodeSettings.from_env(env).memory == MemorySettings(
        gc_full_s=0.0, heap_stats_s=15.0, malloc_trim=False
    )
    for bad in ({"gc_full_s": 5.0}, {"heap_stats_s": 1.0}, {"gc_full_s": -1.0}):
        with pytest.raises(ValueError):
            MemorySettings(**bad)


def test_each_scheduled_collection_is_followed_by_a_trim_that_counts_what_it_released() -> None:
    metrics = NodeMetrics(CollectorRegistry())
    resident = [50_000_000]
    trims: list[int] = []

    def trim() -> bool:
        trims.append(resident[0])
        resident[0] -= 3_000_000  # the pages a load left free go back
        return True

    keeper = MemoryKeeper(MemorySettings(gc_full_s=60.0), metrics, 0.0, trim, lambda: resident[0])
    keeper.step(30.0, {})
    assert trims == []
    keeper.step(60.0, {})
    assert trims == [50_000_000] and keeper.collections == 1
    assert _value(metrics, "arena_gameserver_malloc_trim_released_bytes_total") == 3_000_000
    keeper.step(120.0, {})
    assert len(trims) == 2
    assert _value(metrics, "arena_gameserver_malloc_trim_released_bytes_total") == 6_000_000
    # Turned off: the collection still runs, the trim does not.
    off = MemoryKeeper(MemorySettings(gc_full_s=60.0, malloc_trim=False), metrics, 0.0, trim)
    off.step(60.0, {})
    assert off.collections == 1 and len(trims) == 2 and off.trim() == 0


def test_glibc_malloc_trim_and_the_resident_size_are_real_here() -> None:
    """The machine's C library is glibc (Debian): the trim runs, and the size is this process's."""
    trim = glibc_malloc_trim()
    assert trim is not None
    assert trim() in (True, False)
    assert 10_000_000 < resident_bytes() < 10_000_000_000
    keeper = MemoryKeeper(MemorySettings(), NodeMetrics(CollectorRegistry()), 0.0)
    assert keeper.trim() >= 0
