"""A node's memory over time (issue 21): what a socket or a race leaves behind must be freed at once,
without the cyclic collector, and the collector's scheduled full collection and counts work."""

import asyncio
import gc
import random
import sys
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import structlog
from prometheus_client import CollectorRegistry

from arena.protocol import CloseCode, ErrorCode, RaceState
from arena.redisutil import connect
from arena.settings import RedisSettings, environ
from gameserver.fairplay import Flag
from gameserver.listener import GATE_KEY
from gameserver.memory import (
    ALL,
    WATCHED_TYPES,
    MemoryKeeper,
    bind_module_loggers,
    count_objects,
    glibc_malloc_trim,
    resident_bytes,
    warm_redis_pool,
)
from gameserver.metrics import NodeMetrics
from gameserver.settings import MemorySettings, NodeSettings
from simulators.bot import Bot
from simulators.typing import TypingProfile
from tests.conftest import NodeFactory, with_race

TEXT = "Rain moved across the valley in slow grey sheets, and the farmers watched it come."
PER_SOCKET = ("connection", "socket_session", "ws_response", "http_request")


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


AIOHTTP_PER_CONNECTION = (
    "aiohttp.web_request.Request",
    "aiohttp.web_protocol.RequestHandler",
    "aiohttp._http_parser.HttpRequestParser",
    "aiohttp.web_ws.WebSocketResponse",
)


def _aiohttp_objects() -> dict[str, int]:
    return count_objects(gc.get_objects(), {name: name for name in AIOHTTP_PER_CONNECTION})


async def test_aiohttp_keeps_nothing_of_an_open_socket_and_the_listener_still_counts_it(
    node_factory: NodeFactory,
) -> None:
    """aiohttp lets go of each upgraded socket (``listener.let_go``): its request, protocol and
    parser (≈ 9 KB a socket, issue 21) are gone while the socket serves; the listener's gate
    counts the socket until it closes, and the node's stop still waits for its session."""
    running = await node_factory()
    node, gate = running.node, running.runner.app[GATE_KEY]
    before = _aiohttp_objects()
    async with aiohttp.ClientSession() as http:
        sockets = [await http.ws_connect(running.ws_url) for _ in range(5)]
        await _until(lambda: len(node.sockets) == 5, 5.0)
        await asyncio.sleep(0.2)  # aiohttp ends the upgrade requests
        held = _aiohttp_objects()
        kept = {k: held[k] - before[k] for k in AIOHTTP_PER_CONNECTION}
        assert kept == dict.fromkeys(AIOHTTP_PER_CONNECTION, 0)
        assert gate.open == 5
        # Each socket is served: a message that is not one gets its error frame.
        await sockets[0].send_bytes(b"\x00not msgpack")
        reply = await sockets[0].receive(timeout=5)
        assert reply.type == aiohttp.WSMsgType.BINARY
        await sockets[1].close()
        await _until(lambda: len(node.sockets) == 4 and gate.open == 4, 5.0)
        # The stop closes the rest (going away) and waits for their sessions to end.
        await node.shutdown(write_s=1.0)
        assert not node.sockets and gate.open == 0
        for ws in sockets[2:]:
            msg = await ws.receive(timeout=5)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, CloseCode.GOING_AWAY)
        # One upgraded after the stop closed the sockets (a keep-alive connection) goes at once.
        late = await http.ws_connect(running.ws_url)
        msg = await late.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, CloseCode.GOING_AWAY)
        await _until(lambda: not node.sockets and gate.open == 0, 5.0)
        for ws in (*sockets, late):
            await ws.close()


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
    assert NodeSettings().memory.idle_collect_s == 10.0
    assert NodeSettings().memory.warm_redis_connections == 8
    env2 = {**environ(), "ARENA_NODE_IDLE_COLLECT_S": "0", "ARENA_NODE_WARM_REDIS_CONNECTIONS": "8"}
    assert NodeSettings.from_env(env2).memory == MemorySettings(idle_collect_s=0.0, warm_redis_connections=8)
    bad_ones = (
        {"gc_full_s": 5.0},
        {"heap_stats_s": 1.0},
        {"gc_full_s": -1.0},
        {"idle_collect_s": 0.5},
        {"warm_redis_connections": -1},
    )
    for bad in bad_ones:
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


def test_an_idle_spell_after_a_load_gets_one_collection_and_trim() -> None:
    """ARENA_NODE_IDLE_COLLECT_S: no race and no socket for that long after a load: one full
    collection and trim (not before the first load, not again while the node stays idle)."""
    metrics = NodeMetrics(CollectorRegistry())
    trims: list[float] = []
    keeper = MemoryKeeper(
        MemorySettings(gc_full_s=0.0, idle_collect_s=10.0), metrics, 0.0, lambda: trims.append(1) is None
    )
    idle = {"rooms": 0, "sockets": 0, "batcher": 0}
    keeper.step(0.0, idle)
    keeper.step(50.0, idle)
    assert keeper.collections == 0  # idle since start-up: __main__ collected then
    keeper.step(60.0, {"rooms": 2, "sockets": 7})
    keeper.step(61.0, {"rooms": 0, "sockets": 1})  # the last socket is still there
    keeper.step(70.5, idle)  # the spell starts here
    keeper.step(80.0, idle)
    assert keeper.collections == 0
    keeper.step(80.5, idle)
    assert keeper.collections == 1 and len(trims) == 1
    for t in (90.0, 200.0, 5_000.0):
        keeper.step(t, idle)
    assert keeper.collections == 1  # once per spell
    keeper.step(5_001.0, {"rooms": 1, "sockets": 0})  # a race alone counts as a load
    keeper.step(5_002.0, idle)
    keeper.step(5_012.0, idle)
    assert keeper.collections == 2
    assert _value(metrics, "arena_gameserver_gc_full_collections_total", {"why": "idle"}) == 2.0
    assert _value(metrics, "arena_gameserver_gc_full_collections_total", {"why": "scheduled"}) == 0.0
    # Off: nothing, however long the node stays idle.
    off = MemoryKeeper(MemorySettings(gc_full_s=0.0, idle_collect_s=0.0), metrics, 0.0)
    off.step(1.0, {"rooms": 1})
    off.step(2.0, idle)
    off.step(10_000.0, idle)
    assert off.collections == 0


def test_a_scheduled_collection_in_an_idle_spell_is_that_spells_collection() -> None:
    keeper = MemoryKeeper(
        MemorySettings(gc_full_s=60.0, idle_collect_s=10.0), NodeMetrics(CollectorRegistry()), 0.0
    )
    keeper.step(55.0, {"rooms": 1})
    keeper.step(56.0, {})
    keeper.step(60.0, {})  # scheduled, 4 s into the spell
    keeper.step(70.0, {})
    assert keeper.collections == 1
    keeper.step(119.0, {"sockets": 1})
    keeper.step(120.0, {"sockets": 1})  # scheduled while busy: the spell after it still collects
    keeper.step(121.0, {})
    keeper.step(131.0, {})
    assert keeper.collections == 3


def test_every_known_label_value_exists_from_the_start() -> None:
    """Created at start-up, not at a label's first use mid-load (their memory would stay pinned)."""
    metrics = NodeMetrics(CollectorRegistry())
    for code in ErrorCode:
        assert _value(metrics, "arena_gameserver_errors_total", {"code": code.value}) == 0.0
    for close in CloseCode:
        assert _value(metrics, "arena_gameserver_closes_total", {"code": str(int(close))}) == 0.0
    for state in RaceState:
        assert _value(metrics, "arena_gameserver_results_total", {"state": state.value}) == 0.0
        assert _value(metrics, "arena_gameserver_races", {"state": state.value}) == 0.0
    for flag in Flag:
        assert _value(metrics, "arena_gameserver_flagged_results_total", {"flag": flag.value}) == 0.0
    for why in ("scheduled", "idle", "startup"):
        assert _value(metrics, "arena_gameserver_gc_full_collections_total", {"why": why}) == 0.0
    assert _value(metrics, "arena_gameserver_gc_pause_seconds_count", {"generation": "2"}) == 0.0


async def test_a_node_warms_its_redis_pool_and_collects_once_idle_after_its_races(
    node_factory: NodeFactory,
) -> None:
    running = await node_factory(race=with_race(finished_linger_s=0.0))
    node = running.node
    pool = node.redis.connection_pool
    opened = len(pool._available_connections) + len(pool._in_use_connections)  # type: ignore[attr-defined]
    assert opened >= node.settings.memory.warm_redis_connections == 8
    # Idle collections after 1 s (the keeper the node built has the 10 s default).
    node.memory = MemoryKeeper(MemorySettings(idle_collect_s=1.0), node.metrics, time.monotonic())
    await _race(running.create_race, running.ws_url, 1)
    idle = node.metrics.registry
    await _until(
        lambda: idle.get_sample_value("arena_gameserver_gc_full_collections_total", {"why": "idle"}) == 1.0,
        15.0,
    )
    assert not node.rooms and not node.sockets
    # The pool did not grow past its warmed size for one race.
    assert len(pool._available_connections) + len(pool._in_use_connections) == opened  # type: ignore[attr-defined]


async def test_warm_redis_pool_opens_connections_up_to_the_pools_size(redis_url: str) -> None:
    redis = connect(RedisSettings(url=redis_url, max_connections=3))
    try:
        assert await warm_redis_pool(redis, 0) == 0
        assert await warm_redis_pool(redis, 5) == 3  # the pool's cap
        clients = await redis.client_list()
        assert len(clients) >= 3
        assert await redis.ping()
    finally:
        await redis.aclose()


def test_module_loggers_are_bound_at_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("gameserver._warm_probe")
    module.log = structlog.wrap_logger(None, cache_logger_on_first_use=True)  # type: ignore[attr-defined]
    other = types.ModuleType("elsewhere")
    other.log = structlog.wrap_logger(None, cache_logger_on_first_use=True)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(sys.modules, other.__name__, other)
    assert "bind" not in vars(module.log)
    assert bind_module_loggers() >= 1
    assert "bind" in vars(module.log)  # structlog keeps the bound logger: built now, not mid-load
    assert "bind" not in vars(other.log)  # only the project's packages


def _blocks_kept(run: Callable[[], object]) -> int:
    """How many memory blocks allocated while ``run`` ran are still live after it (what it keeps)."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = run()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    del kept
    return sum(max(0, s.count_diff) for s in after.compare_to(before, "filename"))


def test_a_racers_logs_keep_no_small_object_per_input_batch() -> None:
    """Per-race logs of int objects and one str per batch filled pymalloc's arenas at a load's peak
    and kept them resident after it: the keystroke and arrival logs keep machine ints and joined
    strings, so 400 batches leave a few blocks, not one or more per batch (415 and 175 before)."""
    from gameserver.arrivals import ArrivalLog
    from gameserver.fairplay import FairPlayLimits
    from gameserver.scoring import KEY_CHUNKS_JOINED, TypingState

    passage = "the quick brown fox jumps over the lazy dog " * 40
    batches = 400

    def type_it() -> TypingState:
        typing = TypingState(passage)
        for i in range(batches):
            keys = passage[3 * i : 3 * i + 3]  # a new str each batch, as a decoded message's
            typing.apply(keys, [100_000 + 30 * (3 * i + k) for k in range(3)])
        return typing

    typing = type_it()
    assert typing.log_keys() == passage[: 3 * batches]
    assert typing.log_times() == [100_000 + 30 * k for k in range(3 * batches)]
    assert len(typing._key_chunks) < KEY_CHUNKS_JOINED
    assert _blocks_kept(type_it) < 40

    def record() -> ArrivalLog:
        log = ArrivalLog(FairPlayLimits())
        for i in range(batches):  # 250 ms apart: ~100 batches inside the longest window
            arrival = 300_000 + 250 * i  # a new int each batch, as the node's clock gives
            log.record([arrival - 100], arrival, 900, 3 * i)
        return log

    assert record().peak_wpm() > 0
    assert _blocks_kept(record) < 40


def test_a_races_journal_keeps_a_few_blocks_not_a_few_per_input() -> None:
    """The checkpoint journal packs each entry as it is journalled (gameserver/journal.py): 400
    input batches waiting for their append leave a few blocks more than the same race without
    a journal (5: the journal, its buffer and two counts), not the entry's tuple, its ``keys``
    str, ``times`` list and ints per batch (3,262 more with the tuples before: 8 a batch)."""
    from arena.ids import NodeId, PlayerId, RaceId
    from arena.protocol import RaceType
    from gameserver.fairplay import FairPlayLimits
    from gameserver.journal import Journal
    from gameserver.passages import Passage, PassageKind
    from gameserver.race import Race
    from gameserver.scoring import ScoringLimits
    from gameserver.settings import RaceSettings

    text = "the quick brown fox jumps over " * 50
    passage = Passage(id="t1", kind=PassageKind.QUICK, text=text, source="t")
    batches = 400

    def race_of(journal: bool) -> Race:
        race = Race(
            race_id=RaceId("r1"),
            node_id=NodeId("n1"),
            race_type=RaceType.QUICK,
            passage=passage,
            seats={PlayerId("p1")},
            now=1_000_000,
            settings=RaceSettings(countdown_s=0, quick_limit_s=600),
            scoring=ScoringLimits(),
            fairplay=FairPlayLimits(),
        )
        race.journal = Journal() if journal else None
        racer, _ = race.join(PlayerId("p1"), "ada", 1_000_000)
        assert race.start_at is not None
        race.advance(race.start_at)
        for i in range(batches):  # a new str, list and ints each batch, as a decoded message's
            keys = passage.text[3 * i : 3 * i + 3]
            times = [1_000 + 80 * (3 * i + k) for k in range(3)]
            race.apply_input(racer, i + 1, keys, times, 1_002_000 + 250 * i)
        assert racer.typing.position == 3 * batches and not race.ended
        return race

    journalled = race_of(True)
    assert journalled.journal is not None and len(journalled.journal) == 2 + batches  # join, countdown
    assert _blocks_kept(lambda: race_of(True)) - _blocks_kept(lambda: race_of(False)) <= 8
