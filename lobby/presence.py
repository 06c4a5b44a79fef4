"""Presence: who is online, per region, from heartbeats batched in memory.

The seeds' lesson: never a database write per heartbeat. ``POST /v1/presence`` only records
the beat in a dict (one entry per player, the latest wins); every ``flush_s`` the batcher
writes the whole batch, ``SLICE_PLAYERS`` players per pipelined round trip (the event loop
serves requests between slices):

- ``ZADD presence:{region}:online`` (player -> last seen, ms), one command per region and slice;
- ``SET user:{playerId}:presence {"region", "seen_at"} EX ttl`` per player (the seeds' key),
  all of a slice in one script call on a single Redis (``_SET_EACH``);
- then trim each touched region's members last seen before ``now - ttl``.

A player beating 100 times a second costs one entry per flush. The buffer is bounded: when
``max_buffer`` players are waiting, beats of players not already in it are dropped (counted
in ``arena_lobby_presence_dropped_total``); they will beat again. ``GET /v1/presence/online``
counts each region's members seen within the TTL; the answer is cached for ``flush_s``.
Both endpoints are served by ``lobby.presence_routes``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import redis.asyncio as aioredis
import structlog
from redis.exceptions import NoScriptError

from arena import keys
from arena.clock import now_ms
from arena.redisbatch import Command, run_batch
from arena.redisutil import is_cluster
from arena.waits import wait_event, within
from lobby.metrics import LobbyMetrics

log = structlog.get_logger(__name__)

# SET each KEYS[i] to ARGV[i + 1] for ARGV[1] seconds: a slice's presences in one command, whose
# one reply replaces a reply per SET read one by one (4.1-4.3 -> 2.5 us of CPU per player, issue 19).
_SET_EACH = """
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i + 1], 'EX', ARGV[1])
end
return #KEYS
"""

# Players written per round trip: their commands fit one run_batch chunk (arena.redisbatch.CHUNK),
# about 1-1.5 ms of the loop each (benchmarks/lobby_throughput.py --flush-micro).
SLICE_PLAYERS = 200


# A buffered beat: (region, when in ms). A tuple, not a dataclass: built on every heartbeat, and
# a frozen dataclass costs ~0.45 us to build against ~0.03 (issue 19).
_Beat = tuple[str, int]


class PresenceBatcher:
    """Buffers heartbeats and flushes them to Redis on a timer; ``start()`` / ``stop()``."""

    def __init__(
        self,
        redis: aioredis.Redis,
        metrics: LobbyMetrics,
        *,
        regions: tuple[str, ...],
        ttl_s: int,
        flush_s: float,
        max_buffer: int,
        slice_players: int = SLICE_PLAYERS,
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        self.regions = regions
        self.ttl_s = ttl_s
        self.flush_s = flush_s
        self.max_buffer = max_buffer
        self.slice_players = slice_players
        self._one_redis = not is_cluster(redis)
        self._set_each_sha = hashlib.sha1(_SET_EACH.encode()).hexdigest()  # what EVALSHA names it by
        self._script_loaded = False
        self._buffer: dict[str, _Beat] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._online: tuple[float, dict[str, int]] = (-float("inf"), {})
        # Read at each scrape rather than set at each beat (a beat is on the hot path).
        metrics.presence_buffered.set_function(lambda: len(self._buffer))

    def beat(self, player_id: str, region: str) -> bool:
        """Record a heartbeat; False if it was dropped because the buffer is full."""
        if player_id not in self._buffer and len(self._buffer) >= self.max_buffer:
            self._metrics.presence_dropped.inc()
            return False
        self._buffer[player_id] = (region, now_ms())
        self._metrics.presence_heartbeats.inc()
        return True

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._loop(), name="presence-flush")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, deadline_s: float = 2.0) -> None:
        """Stop the timer, then write what is still buffered (bounded by ``deadline_s``)."""
        self._stopping.set()
        if self._task is not None:
            try:
                await within(self._task, deadline_s)
            except TimeoutError:
                pass  # wait_for cancelled it
            self._task = None
        try:
            await within(self.flush(), deadline_s)
        except Exception as exc:  # includes the timeout
            log.warning("presence_final_flush_failed", error=repr(exc), players=len(self._buffer))

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            await wait_event(self._stopping, self.flush_s)
            if self._stopping.is_set():
                return  # stop() does the last flush
            try:
                await self.flush()
            except Exception as exc:  # Redis trouble: the beats went back in the buffer
                log.warning("presence_flush_failed", error=str(exc))

    # ---- Redis -------------------------------------------------------------------

    async def flush(self) -> int:
        """Write the buffered beats, ``slice_players`` players per round trip; returns how many
        players were written. A failure puts the whole batch back (rewriting is harmless)."""
        batch, self._buffer = self._buffer, {}
        if not batch:
            return 0
        beats = list(batch.items())
        regions: dict[str, str] = {}  # region touched -> its JSON text
        try:
            # Slice by slice, each built just before it is sent: the loop serves requests while
            # Redis works on one. Built and sent whole, 10,000 players held the loop 15-30 ms
            # once a second, the lobby's p99 (loop-lag probe, issue 19).
            if self._one_redis and not self._script_loaded:
                await self._redis.script_load(_SET_EACH)  # once; a restart's NOSCRIPT below
                self._script_loaded = True
            for first in range(0, len(beats), self.slice_players):
                commands = self._slice(beats[first : first + self.slice_players], regions)
                try:
                    await run_batch(self._redis, commands)
                except NoScriptError:  # Redis restarted or flushed its scripts: load, write again
                    await self._redis.script_load(_SET_EACH)
                    await run_batch(self._redis, commands)
            cutoff = now_ms() - self.ttl_s * 1000
            trims: list[Command] = []
            for region in regions:
                key = keys.presence_online(region)
                trims.append(("ZREMRANGEBYSCORE", key, "-inf", f"({cutoff}"))
                trims.append(("EXPIRE", key, self.ttl_s * 2))  # a region nobody visits any more goes away
            await run_batch(self._redis, trims)
        except Exception:
            self._metrics.presence_flush_failures.inc()
            self._requeue(batch)
            raise
        self._metrics.presence_flushes.inc()
        self._metrics.presence_players_flushed.inc(len(batch))
        return len(batch)

    def _slice(self, beats: list[tuple[str, _Beat]], regions: dict[str, str]) -> list[Command]:
        """One ``ZADD`` per region of a slice of the batch, and its players' ``SET``s: one script
        call on a single Redis, one ``SET`` each on a cluster (their keys are in many slots)."""
        scored: dict[str, list[str | int]] = {}
        presence_keys: list[str] = []
        values: list[str] = []
        for player_id, (name, at) in beats:
            region = regions.get(name)
            if region is None:
                region = regions[name] = json.dumps(name)
            scored.setdefault(name, []).extend((at, player_id))  # score member, ...
            presence_keys.append(keys.user_presence(player_id))
            # The value formatted, not json.dumps'd: the same JSON at a tenth of the CPU (py-spy,
            # issue 19).
            values.append(f'{{"region": {region}, "seen_at": {at}}}')
        commands: list[Command]
        if self._one_redis:
            commands = [
                ("EVALSHA", self._set_each_sha, len(presence_keys), *presence_keys, self.ttl_s, *values)
            ]
        else:
            commands = [("SET", k, v, "EX", self.ttl_s) for k, v in zip(presence_keys, values, strict=True)]
        commands += [("ZADD", keys.presence_online(name), *parts) for name, parts in scored.items()]
        return commands

    def _requeue(self, batch: dict[str, _Beat]) -> None:
        """Put a failed batch back, under newer beats and within the buffer bound."""
        for player_id, beat in batch.items():
            if player_id not in self._buffer and len(self._buffer) < self.max_buffer:
                self._buffer[player_id] = beat

    async def online(self) -> dict[str, int]:
        """Players seen within the TTL, per region (stale members trimmed as a side effect)."""
        read_at, cached = self._online
        if time.monotonic() - read_at < self.flush_s:
            return cached
        cutoff = now_ms() - self.ttl_s * 1000
        async with self._redis.pipeline(transaction=False) as pipe:
            for region in self.regions:
                pipe.zremrangebyscore(keys.presence_online(region), "-inf", f"({cutoff}")
                pipe.zcard(keys.presence_online(region))
            results = await pipe.execute()
        counts = {region: int(results[2 * i + 1]) for i, region in enumerate(self.regions)}
        self._online = (time.monotonic(), counts)
        return counts
