"""A node's memory upkeep: a full garbage collection on a schedule, and the counts to watch it by.

Why a schedule. ``gameserver.__main__`` freezes the start-up heap (``gc.freeze``) and sets the
collector's thresholds to (50,000, 20, 100), so pauses stay rare. The cost: the oldest
generation is collected only after 100 collections of the middle one, each after 20 of the
youngest, each after 50,000 net allocations: 100 million allocations, in practice never. Every
object that is still alive at two young collections (every socket and race that lives through a
race of a minute or more) ends up in the oldest generation, so a reference cycle among such
objects was never freed: issue 21 measured 2.4 MB a minute per node, kept after the load ended
(docs/PERFORMANCE.md, "Memory over time").

Two defences. Nothing the node keeps per socket or per race forms a reference cycle any more
(``Connection.release``, ``session._settle``; tests/gameserver/test_memory.py counts them), so
refcounting frees them the moment they go. And a full collection every
``ARENA_NODE_GC_FULL_S`` (5 minutes by default) bounds whatever cycle still forms; what it frees
is counted (``arena_gameserver_gc_unreachable_objects_total``) and its pause is in
``arena_gameserver_gc_pause_seconds{generation="2"}``. Frozen objects are not walked: a full
collection costs about 1 ms per 10,000 objects created since start-up.

After each scheduled collection the C heap's free pages go back to the system (glibc's
``malloc_trim(0)``, ``ARENA_NODE_MALLOC_TRIM``): what a load left free would otherwise stay in
the node's resident size after the load ended. Measured in the issue 21 soak: the Python heap is
back to its idle size after a load, but the resident size is not; the trim returned 1.8-2.9 MB
of the 5-6 MB left over. The rest is pymalloc arenas (1 MiB each) kept by a few long-lived
objects allocated during the load. jemalloc returned no more; ``PYTHONMALLOC=malloc`` (glibc
for every object, 4 KB pages instead of 1 MiB arenas) ends ≈ 1.3 MB lower but costs ≈ 70 % more
CPU per input, so the node keeps pymalloc (docs/PERFORMANCE.md, "What survives a load" and
"Back to idle, session 4").

Back to idle after a load. Whatever a load allocates and keeps (a Redis connection the pool
opened at the peak, a metric child created at a label's first use) pins the pymalloc arena or
heap page it landed in, so the pages around it stay resident after the load. The node therefore
allocates what it can before it serves (``Node._warm_up``: the pool opened to
``ARENA_NODE_WARM_REDIS_CONNECTIONS``, the codec's converters, the module loggers bound;
``NodeMetrics.warm_labels``), collects and trims once at start-up (``gameserver.__main__``: the
size it serves at is what a load is compared with), and once more when it has held no race and
no socket for ``ARENA_NODE_IDLE_COLLECT_S`` after a load (``MemoryKeeper``: not only every
``gc_full_s``). Each is counted in ``arena_gameserver_gc_full_collections_total{why}`` (startup,
idle, scheduled). Measured: the idle collection gives the heap's free pages back within a minute
of the load's end; the load's pymalloc arenas stay (objects re-allocated all the time land in
them too), ≈ 15 % above idle after a load (docs/PERFORMANCE.md, "Back to idle"); 11-12 %
since a racer's keystroke and arrival logs keep no small object per input batch
(``gameserver.scoring``, ``gameserver.arrivals``: they filled the load's arenas); 6-7 % since
aiohttp keeps nothing per open socket (``gameserver.listener.let_go``: ≈ 10 KB of small objects
a socket, 38 % of a loaded node's). What a node keeps after a load is set by the arenas its peak
needed, so what is worth cutting is what each socket and race holds while it lives.

The counts: ``arena_gameserver_node_items{structure}`` (rooms, sockets, ...: every heartbeat,
cheap) and, when ``ARENA_NODE_HEAP_STATS_S`` is set, ``arena_gameserver_python_objects{type}``
(one walk of the collector's objects per sample).
"""

from __future__ import annotations

import ctypes
import gc
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping

import redis.asyncio as aioredis
import structlog

from arena.redisutil import is_cluster
from gameserver.metrics import NodeMetrics
from gameserver.settings import MemorySettings

__all__ = [
    "WATCHED_TYPES",
    "MemoryKeeper",
    "bind_module_loggers",
    "count_objects",
    "glibc_malloc_trim",
    "resident_bytes",
    "warm_redis_pool",
]

log = structlog.get_logger(__name__)

# Type (module.qualname) -> label of arena_gameserver_python_objects: per-socket and per-race
# objects, and the kinds a reference cycle leaves behind (frames and tracebacks of a kept error).
WATCHED_TYPES: Mapping[str, str] = {
    "gameserver.connection.Connection": "connection",
    "gameserver.session.SocketSession": "socket_session",
    "gameserver.room.RaceRoom": "race_room",
    "gameserver.race.Race": "race",
    "gameserver.race.Racer": "racer",
    "_asyncio.Task": "task",
    "_asyncio.Future": "future",
    "uvloop.loop.TCPTransport": "transport",
    "aiohttp.web_request.Request": "http_request",
    "aiohttp.web_ws.WebSocketResponse": "ws_response",
    "builtins.frame": "frame",
    "builtins.traceback": "traceback",
    "builtins.dict": "dict",
}
ALL = "all"


def count_objects(objects: Iterable[object], watched: Mapping[str, str] = WATCHED_TYPES) -> dict[str, int]:
    """Objects of each watched type (by label) and of every type (``all``), in one pass."""
    counts = dict.fromkeys(watched.values(), 0)
    labels: dict[type, str | None] = {}
    total = 0
    for obj in objects:
        total += 1
        kind = type(obj)
        label = labels.get(kind, "")
        if label == "":
            label = labels[kind] = watched.get(f"{kind.__module__}.{kind.__qualname__}")
        if label is not None:
            counts[label] += 1
    counts[ALL] = total
    return counts


Trim = Callable[[], bool]  # hands free heap pages back to the system; True if it released any


def glibc_malloc_trim() -> Trim | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: bool(trim(0))


_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident size (``/proc/self/statm``); 0 where there is none."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class MemoryKeeper:
    """Runs from the node's heartbeat: publishes the structure sizes, collects when due, and
    counts the heap when asked to. ``now`` is a monotonic clock in seconds."""

    def __init__(
        self,
        settings: MemorySettings,
        metrics: NodeMetrics,
        now: float,
        trim: Trim | None = None,
        resident: Callable[[], int] = resident_bytes,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.collections = 0
        self._trim = (trim or glibc_malloc_trim()) if settings.malloc_trim else None
        self._resident = resident
        self._next_full = now + settings.gc_full_s if settings.gc_full_s else None
        self._next_stats = now if settings.heap_stats_s else None
        self._loaded = False  # held a race or a socket since the last collection
        self._idle_since: float | None = None  # held none since (after a load)

    def step(self, now: float, structures: Mapping[str, int]) -> None:
        for name, size in structures.items():
            self.metrics.node_items.labels(name).set(size)
        busy = bool(structures.get("rooms", 0) or structures.get("sockets", 0))
        if self._next_full is not None and now >= self._next_full:
            self._next_full = now + self.settings.gc_full_s
            self.collect()
            self._loaded = busy  # idle now: this idle spell's collection is done
        elif self._idle_due(now, busy):
            self.collect("idle")
        if self._next_stats is not None and now >= self._next_stats:
            self._next_stats = now + self.settings.heap_stats_s
            self.sample()

    def _idle_due(self, now: float, busy: bool) -> bool:
        """Whether the node has held no race and no socket for ``idle_collect_s`` since a load:
        once per idle spell, so what the load left free goes back soon after it ends, not up to
        ``gc_full_s`` later. Not before the first load (``gameserver.__main__`` collects at
        start-up), and a node that stays idle collects nothing more."""
        if not self.settings.idle_collect_s:
            return False
        if busy:
            self._loaded, self._idle_since = True, None
            return False
        if not self._loaded:
            return False
        if self._idle_since is None:
            self._idle_since = now
        if now - self._idle_since < self.settings.idle_collect_s:
            return False
        self._loaded, self._idle_since = False, None
        return True

    def collect(self, why: str = "scheduled") -> int:
        """One full collection, then the trim; returns how many unreachable objects it found."""
        started = time.perf_counter()
        unreachable = gc.collect()
        self.collections += 1
        self.metrics.gc_unreachable.inc(unreachable)
        pause_ms = round((time.perf_counter() - started) * 1e3, 1)
        released = self.trim()
        self.metrics.gc_full_collections.labels(why).inc()
        log.debug(
            "gc_full_collection", why=why, unreachable=unreachable, pause_ms=pause_ms, released=released
        )
        return unreachable

    def trim(self) -> int:
        """Hand the C heap's free pages back (after a collection freed what it could). Returns
        the bytes the resident size fell by (``arena_gameserver_malloc_trim_released_bytes_total``)."""
        if self._trim is None:
            return 0
        before = self._resident()
        self._trim()
        released = max(0, before - self._resident())
        self.metrics.malloc_trim_released.inc(released)
        return released

    def sample(self) -> dict[str, int]:
        counts = count_objects(gc.get_objects())
        for label, n in counts.items():
            self.metrics.python_objects.labels(label).set(n)
        return counts


async def warm_redis_pool(redis: aioredis.Redis, connections: int) -> int:
    """Open ``connections`` of the pool's connections now (at most its size) and hand them back,
    so that the pool has its working size before the first race: a connection opened at a load's
    peak stays in the pool for good, and its parser and buffers keep the memory pages they were
    allocated in from going back after the load. Returns how many the pool then holds open.
    Redis Cluster's client opens its connections per master as commands need them: nothing here."""
    if connections <= 0 or is_cluster(redis):
        return 0
    pool = redis.connection_pool
    held = []
    try:
        for _ in range(min(connections, pool.max_connections)):
            held.append(await pool.get_connection())  # type: ignore[no-untyped-call]  # redis-py: untyped
    finally:
        for conn in held:
            await pool.release(conn)
    return len(held)


def bind_module_loggers(packages: tuple[str, ...] = ("arena", "gameserver")) -> int:
    """Bind every module-level ``log`` of these packages now. structlog binds a module's logger
    at its first use and keeps it (``cache_logger_on_first_use``): the first warning of a load
    would otherwise allocate, for good, a logger in the middle of that load's memory. Returns how
    many were bound."""
    bound = 0
    for name, module in list(sys.modules.items()):
        if name.partition(".")[0] not in packages:
            continue
        bind = getattr(getattr(module, "log", None), "bind", None)
        if callable(bind):
            bind()
            bound += 1
    return bound
