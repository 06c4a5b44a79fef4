"""A gameserver node: the races it owns, the tick that drives them, and their results.

The node owns four long-lived tasks. The ticker (``tick_hz``) applies each race's deadlines,
sends what the race has to say, mirrors races to Redis, and queues ended races for the results
writer (``arena.outbox.OutboxBatcher``): one task that appends their records to the outbox in
batches and only then rates them and tells the players their results. The flusher sends each
race's progress frame once its batching window has passed (``batcher``) and publishes frames
of remotely watched races. The heartbeat keeps the registry entry and the sockets alive.
With checkpoints on (``ARENA_RACE_CHECKPOINT``), the tick also appends each race's journal to its
checkpoint, and a fifth task, the reaper (``gameserver/reaper.py``), adopts dead nodes' races
(``gameserver/adoption.py``), and races draining nodes hand off, or finalises them. A drain with
move starts a sixth, the mover (``gameserver/mover.py``), which hands this node's races off.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog

from arena import codec, keys, watched
from arena.clock import now_ms
from arena.ids import PlayerId, RaceId, new_race_id
from arena.outbox import OutboxBatcher, OutboxWriter, Written
from arena.protocol import CloseCode, PlayerInfo, RaceState, RaceType, Watching
from arena.rating import RatingStore, ranking_from_record
from arena.redisutil import as_text, text_map
from arena.registry import NodeInfo, NodeRegistry, NodeState
from arena.results import MatchRecord
from arena.tasks import stop_tasks
from arena.tokens import TokenSigner
from arena.typing_tests import TypingMode, TypingTestRecord
from arena.waits import wait_event
from gameserver.admission import Admission
from gameserver.adoption import extend_by_outage, take_over
from gameserver.batcher import ProgressBatcher
from gameserver.checkpoint import definition_of, encode_definition
from gameserver.checkpoint import ttl_s as checkpoint_ttl_s
from gameserver.connection import Connection
from gameserver.drain import FAULT_REASON, SHUTDOWN_REASON, DrainReport, latest_end, outcome_of
from gameserver.ghost import parse_ghosts
from gameserver.journal import Journal
from gameserver.memory import MemoryKeeper, bind_module_loggers, warm_redis_pool
from gameserver.metrics import FlushReason, NodeMetrics
from gameserver.mirror import live_write_due, mirror_fields, mirror_ttl_s, roster_json
from gameserver.mover import Mover, handoff_entry
from gameserver.passages import Corpus, Passage, custom_passage
from gameserver.race import HeatTag, Race
from gameserver.reaper import Reaper
from gameserver.relay import SpectatorRelay
from gameserver.room import RaceRoom
from gameserver.settings import NodeSettings
from gameserver.typing_test import TestContent

log = structlog.get_logger(__name__)

DRAIN_REPORT_TTL_S = 86400  # how long a stopped node's last drain report stays for ops.admin
RATINGS_AT_ONCE = 8  # rating updates of one written batch in flight at once (each a few round trips)
STOP_REDIS_S = 2.0  # the drain report and the registry removal at stop each wait at most this
SOCKETS_GONE_SLACK_S = 1.0  # the stop waits for the sockets this long beyond the close timeout
# A stop aborts its races this many at a time, yielding in between: a DNF is scored over the
# racer's whole keystroke log (≈ 2 ms a race after minutes of typing), so 2,800 races in one go
# held the loop for 6 s while the results writer waited.
ABORT_CHUNK = 100
# ... and at least this often (s): after a long ramp the racers' logs hold thousands of keys,
# 100 races took 5 s of a shared core to score (busy-machine run, docs/PERFORMANCE.md), and the
# writer had written nothing when the benchmark's 15 s ran out.
ABORT_YIELD_S = 0.02
CHECKPOINT_LAG_LOG_MS = 10_000  # "checkpoints_behind" at most this often
WATCH_CHECK_MS = 1000  # how often the owner asks whether other nodes watch its races


# A tick's checkpoint work is bounded, so a node that falls behind (a slow Redis, a saturated
# loop) catches up over several ticks instead of sending everything in one ever larger round
# trip: 10,000 players' races are due ≈ 100 a tick (each every ARENA_RACE_CHECKPOINT_MS), so
# these bounds only bite when appends are late; what a tick leaves waits for the next.
# Checkpoint commands per tick at most (an append is one RPUSH, a new race's first one three):
# the tick's pipeline stays under the 1,000 commands from which redis-py 8 packs it in a worker
# thread (GIL contention in a CPU-bound node). 6,000 appends/s at 10 Hz; 1,000/s are due at
# 10,000 players, so a node whose ticks slow to 2 Hz still keeps up.
CHECKPOINT_COMMANDS_PER_TICK = 600
CHECKPOINT_BYTES_PER_TICK = 4 << 20  # encoded bytes per tick: a race due beyond this waits a tick
CHECKPOINT_BYTES_PER_APPEND = 256 << 10  # one race's append at most (at least one item): the rest next tick
# A race's journal (held encoded, gameserver/journal.py) moves into its backlog once it holds this
# many entries, due or not, so a node whose appends lag counts what is unwritten against the
# backlog bound, in items of at most this many (≈ 10 s of 5 typists at 4 inputs/s; a 2 s append
# of theirs is 40).
CHECKPOINT_ENTRIES_PER_ITEM = 200


@dataclass(slots=True)
class CheckpointAppend:
    """One race's append in a tick: the first ``len(items)`` items of its backlog."""

    room: RaceRoom
    items: list[bytes | str]
    entries: int  # journal entries they carry
    more: bool  # its backlog holds more than one append carries: due again at the next tick


class Checkpoints:
    """One tick's checkpoint work (``gameserver/checkpoint.py``): what the races due for an append
    journalled since their last one, appended in the tick's round trip, and the checkpoints of
    races whose result is in the outbox, deleted in it (after any append of theirs: ticks are
    sequential). Bounded per tick (``CHECKPOINT_*``); races left over are ``deferred``.

    A due race's journal (encoded as it was journalled, ``gameserver/journal.py``) moves into its
    room's backlog and the append takes the backlog's oldest items; only a written append removes
    them, so a failed one leaves them for later."""

    def __init__(self, now: int = 0, every_ms: int = 0, backlog_limit: int = 0) -> None:
        self.now = now
        self.every_ms = every_ms  # a race's appends at most this often (ARENA_RACE_CHECKPOINT_MS)
        # A race's backlog past this many encoded bytes is dropped and its checkpoint frozen
        # (ARENA_RACE_CHECKPOINT_BACKLOG_KB; 0: no bound): see ``freeze``.
        self.backlog_limit = backlog_limit
        self.frozen: list[RaceRoom] = []  # frozen in this tick
        self.appends: list[CheckpointAppend] = []
        self.done: list[RaceRoom] = []
        self.handoffs: list[RaceRoom] = []  # frozen by a drain with move: whole journal, then listed
        self.bytes = 0  # encoded this tick
        self.commands = 0  # queued this tick (appends; a new race's definition: RPUSH, EXPIRE, SADD)
        self.deferred = 0  # races due that wait for a later tick (the per-tick bounds)
        self.split = 0  # races whose backlog needs more than one append
        self.compacted = 0  # long journals moved to the backlog before their race was due (appends lag)
        self.unwritten = 0  # journal entries of this node's races not in Redis (before this tick's appends)

    def __bool__(self) -> bool:
        return bool(self.appends or self.done or self.handoffs)

    def collect(self, room: RaceRoom) -> None:
        race = room.race
        if room.checkpoint_pending:  # its definition is on its way (Node.write_definition)
            return
        if room.moving_at is not None and not room.finalized:
            # The tick's append, forced now; the hand-off in a later tick, once nothing is left to
            # append (a pipeline is not a transaction: never list a race whose append failed).
            if room.checkpoint_def is not None or race.journal or room.checkpoint_backlog:
                if race.journal:
                    self._stash(room)
                self._append(room)
            elif not room.handed_off:
                self.handoffs.append(room)
            return
        if room.finalized:
            self.done.append(room)
            return
        backlog = room.checkpoint_backlog
        size = 0
        for item, n in backlog:
            self.unwritten += n
            size += len(item)
        if self.backlog_limit and size > self.backlog_limit:
            freeze(room)  # the node is far behind: this race's backlog goes (``freeze``)
            self.frozen.append(room)
        journal = race.journal
        if journal:
            self.unwritten += len(journal)
            if len(journal) >= CHECKPOINT_ENTRIES_PER_ITEM:  # due or not, deferred or not
                self._stash(room)
                self.compacted += 1
        if not self._due(room):
            return
        if self.commands >= CHECKPOINT_COMMANDS_PER_TICK or self.bytes >= CHECKPOINT_BYTES_PER_TICK:
            self.deferred += 1
            return
        if race.journal:
            self._stash(room)
        self._append(room)

    def _append(self, room: RaceRoom) -> None:
        """An append of the room's backlog, oldest items first, up to the per-append bound."""
        backlog = room.checkpoint_backlog
        items: list[bytes | str] = []
        size = entries = 0
        for item, n in backlog:
            if items and size + len(item) > CHECKPOINT_BYTES_PER_APPEND:
                break
            items.append(item)
            size += len(item)
            entries += n
        more = len(items) < len(backlog)
        self.split += more
        self.bytes += size + len(room.checkpoint_def or "")
        self.commands += 1 if room.checkpoint_def is None else 3
        self.appends.append(CheckpointAppend(room, items, entries, more))

    def _due(self, room: RaceRoom) -> bool:
        if room.checkpoint_def is not None:
            return True
        news = room.race.journal or room.checkpoint_backlog
        return bool(news) and self.now - room.checkpoint_at >= self.every_ms

    @staticmethod
    def _stash(room: RaceRoom) -> None:
        """The race's journal, as checkpoint items, at the end of its backlog; the journal empties."""
        if room.race.journal is not None:
            room.checkpoint_backlog.extend(room.race.journal.take())

    def write(self, pipe: aioredis.client.Pipeline, node_id: str, region: str) -> None:
        new = False
        for a in self.appends:
            race = a.room.race
            key = keys.race_checkpoint(race.id)
            if a.room.checkpoint_def is not None:
                new = True
                pipe.rpush(key, a.room.checkpoint_def, *a.items)
                pipe.expire(key, checkpoint_ttl_s(race))
                pipe.sadd(keys.node_checkpoints(node_id), race.id)
            elif a.items:
                pipe.rpush(key, *a.items)
        if new:  # reapers find this node's races by it once it is dead
            pipe.hset(keys.CHECKPOINT_NODES, node_id, region)
        if self.handoffs:  # after the appends: an adopter replays the whole journal
            offers = {r.race.id: handoff_entry(node_id, r.moving_at or self.now) for r in self.handoffs}
            pipe.hset(keys.race_handoffs(region), mapping=offers)  # type: ignore[arg-type]
        if self.done:
            # UNLINK: Redis frees the lists in the background; a DEL of thousands of them at a
            # stop held Redis (and so the stop's last writes) up for seconds. One key a command:
            # a cluster pipeline routes each to its slot's master (its unlink() method takes one
            # key and is a coroutine, so it is not used here).
            for r in self.done:
                pipe.execute_command("UNLINK", keys.race_checkpoint(r.race.id))
            pipe.srem(keys.node_checkpoints(node_id), *(r.race.id for r in self.done))

    def written(self) -> int:
        """The appends went through: their items leave the backlogs; returns how many entries."""
        total = 0
        for room in self.handoffs:
            room.handed_off = True
        for a in self.appends:
            a.room.checkpoint_def = None
            del a.room.checkpoint_backlog[: len(a.items)]
            if not a.more:
                a.room.checkpoint_at = self.now
            total += a.entries
        for room in self.done:
            room.checkpointed = False
            room.race.journal = None
            room.checkpoint_backlog = []
        return total

    def failed(self) -> None:
        """The round trip failed: the items stay in the backlogs (any of them may have gone
        through: an entry written twice replays the same), and each race waits its interval
        before it tries again (a retry of every race in the next tick is how a slow Redis
        turned into ever larger, ever later round trips)."""
        for a in self.appends:
            a.room.checkpoint_at = self.now


def freeze(room: RaceRoom) -> None:
    """Stop checkpointing the race at what Redis holds: its unwritten backlog and journal go,
    and it journals nothing more. Its checkpoint stays a consistent prefix of the race (every
    entry in order, none missing), only older: an adopter replays it and the players resend the
    rest, as after any node death (a gap followed by newer entries would not replay). A
    definition not written yet is kept: the race stays findable by the reapers. Used when a
    race's backlog outgrows ARENA_RACE_CHECKPOINT_BACKLOG_KB (a saturated node's appends fall
    ever further behind: memory without bound otherwise), and at a stop for every race it aborts
    (their results are the record, and the stop writes those first)."""
    room.race.journal = None
    room.checkpoint_backlog = []
    room.checkpoint_frozen = True


class NodeDraining(Exception):
    """The node takes no new races."""


class NodeFull(Exception):
    """The node cannot keep up with the players it has (``gameserver/admission.py``): no new race."""


class MoveUnavailable(Exception):
    """A drain with move on a node without checkpoints or adoption."""


class NodeExiting(Exception):
    """The node is on its way out (drain with exit, or a signal): it cannot be undrained."""


@dataclass(frozen=True, slots=True)
class SeatRequest:
    player_id: PlayerId
    name: str


@dataclass(frozen=True, slots=True)
class Seat:
    player_id: PlayerId
    name: str
    player_token: str
    ticket: str


class Node:
    def __init__(
        self,
        settings: NodeSettings,
        redis: aioredis.Redis,
        corpus: Corpus,
        signer: TokenSigner,
        metrics: NodeMetrics,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.corpus = corpus
        self.signer = signer
        self.metrics = metrics
        self.outbox = OutboxWriter(redis)
        self.ratings = RatingStore(redis)
        self.log = log.bind(node_id=settings.node_id)
        # Finished races' results: outbox (batched), then ratings, then the players (one task).
        self.test_content = TestContent(corpus, settings.fairplay.max_wpm)  # typing tests' texts
        self.results_writer: OutboxBatcher[RaceRoom, MatchRecord | TypingTestRecord] = OutboxBatcher(
            self.outbox,
            record_of=lambda room: room.race.outbox_record(),
            on_written=self._results_written,
            on_unbuildable=self._record_failed,
            settings=settings.outbox,
            metrics=metrics.outbox,
            name="node-results",
            logger=self.log,
            rng=rng,
        )
        self.rooms: dict[RaceId, RaceRoom] = {}
        self.exiting = False  # draining to exit: no undrain
        self.exit_requested = asyncio.Event()  # set by a drain that asks the node to exit
        self.drain_report: DrainReport | None = None  # outcomes since the drain began
        self._idle = asyncio.Event()  # set by the last result written during a drain (wait_drained)
        self.sockets: set[Connection] = set()
        self._socket_endings: set[asyncio.Task[None]] = set()  # sessions ending (``end_socket``)
        self._no_sockets = asyncio.Event()  # set while ``sockets`` is empty
        self._sockets_closing = False  # the stop has closed the sockets: a late upgrade goes at once
        self._no_sockets.set()
        self.batcher: ProgressBatcher[RaceRoom] = ProgressBatcher(settings.race.progress_window_ms)
        self._remote_watched: list[RaceRoom] = []  # rooms whose frames go to pub/sub too
        self._rng = rng or random.Random()
        self.registry = NodeRegistry(redis, stale_after_ms=int(settings.heartbeat_s * 3000))
        self._ticker: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._last_keepalive = 0.0
        self._stopping = asyncio.Event()  # loops check it: a cancel can be swallowed (arena.tasks)
        self.failed = asyncio.Event()  # a loop died: /readyz fails and __main__ exits non-zero
        self.failure: str | None = None
        self._tick_no = 0
        self._ping_every = max(1, round(settings.race.ping_interval_s * settings.race.tick_hz))
        # How long a ping waits for a progress frame to ride on (same write) before going alone.
        self._ping_ride_ms = int(min(1000, settings.race.ping_interval_s * 500))
        self._last_watch_check_ms = 0
        self._checkpoint_lag_logged_ms = 0
        self._checkpoint_deferring_since: int | None = None  # ticks have deferred appends since (ms)
        self._frozen_said = False  # checkpoints_frozen is logged once
        # A stop's write phase: the tick does nothing until the results are written (Node.shutdown)
        self._results_first = False
        self._ticked = asyncio.Event()  # set after each tick (the stop waits for one after its writes)
        self.relay = SpectatorRelay(redis, settings.node_id)
        self.memory = MemoryKeeper(settings.memory, metrics, time.monotonic())
        # Finalises dead nodes' checkpointed races (gameserver/reaper.py); with checkpoints only.
        self.reaper = (
            Reaper(
                redis,
                self.registry,
                self.outbox,
                settings,
                metrics,
                self.log,
                adopt=self.adopt if settings.race.adopt else None,
                adopts_moves=lambda: not self.draining,  # a draining node adopts no hand-off
            )
            if settings.race.checkpoint
            else None
        )
        self.mover = Mover(self)  # a drain with move hands the races to other nodes
        self.admission = Admission(settings.full_lag_ms)  # full: placement gives it no new race

    # ---- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        await self._warm_up()
        if self.reaper is not None:  # what this node id left behind (a crash, then a restart)
            try:
                await self.reaper.reap_node(self.settings.node_id)
            except Exception as exc:  # Redis hiccup: another node reaps them if this one dies
                self.log.warning("reap_failed", error=repr(exc))
        await self.registry.heartbeat(self.info())
        await self.relay.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="node-ticker")
        self._flusher = asyncio.create_task(self._flush_loop(), name="node-flusher")
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="node-heartbeat")
        writer = self.results_writer.start()
        reaper = [self.reaper.start()] if self.reaper is not None else []
        for task in (self._ticker, self._flusher, self._heartbeat, writer, *reaper, *self.relay.tasks):
            task.add_done_callback(self._loop_ended)
        self.log.info("node_started", url=self.settings.ws_url)

    async def _warm_up(self) -> None:
        """What a load would otherwise allocate for good mid-way, allocated before the node
        registers (its metrics' label values are created with them: ``NodeMetrics``)."""
        codec.warm()
        bind_module_loggers()
        try:
            opened = await warm_redis_pool(self.redis, self.settings.memory.warm_redis_connections)
        except Exception as exc:  # Redis not there yet: the registry's heartbeat will say so
            self.log.warning("redis_warm_up_failed", error=repr(exc))
            return
        self.log.debug("node_warmed_up", redis_connections=opened)

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A loop that ends before ``stop`` leaves a node that cannot go on: say so and fail."""
        if self._stopping.is_set():
            return
        error = None if task.cancelled() else task.exception()
        self.failure = f"{task.get_name()} ended: {error!r}"
        self.log.error("node_loop_died", loop=task.get_name(), error=repr(error))
        self.failed.set()

    async def shutdown(self, write_s: float | None = None) -> None:
        """Abort every live race, write every result still owed to the outbox (the write phase:
        at most ``write_s``, by default ``ARENA_NODE_RESULTS_WRITE_S``), then close the sockets.
        Results still unwritten after it are reported (and fail the process) by ``stop``."""
        write_s = self.settings.results_write_s if write_s is None else write_s
        loop = asyncio.get_running_loop()
        began = loop.time()
        if self.mover.running or self.mover.moving():
            await self.mover.stop()
            await self.mover.settle()  # adopted races are forgotten, the others taken back (aborted below)
        now = now_ms()
        self._begin_drain(now, exit_after=True)
        # Every race ends now: what clients send from here on changes nothing, and a loaded
        # node's loop would spend the write phase answering it (20,000 inputs/s at 10,000
        # players, each refused with an error frame) while the results wait. Reads resume for
        # the close handshake.
        self._pause_reading(True)
        # Results first: the tick (mirrors, pings, checkpoint appends of races that are over)
        # waits until they are written; a saturated node's ticks took the loop from the writer.
        self._results_first = True
        aborted = frozen = 0
        owed = self.results_writer.backlog  # results owed: those queued before, and each queued now
        yielded = loop.time()
        for n, room in enumerate(list(self.rooms.values()), 1):
            if n % ABORT_CHUNK == 0 or loop.time() - yielded >= ABORT_YIELD_S:
                await asyncio.sleep(0)  # let the writer append what is queued meanwhile
                yielded = loop.time()
            if not room.race.ended:
                try:
                    room.race.abort(now, SHUTDOWN_REASON, judge_logs=False)  # race.abort says why
                    room.flush_outgoing()
                except Exception:  # this race alone: aborted as faulted, or dropped
                    self._race_faulted(room, "shutdown")
                aborted += 1
            if room.removable_at is None and not room.finalized:
                room.removable_at = now
                self._queue_results(room)
                owed += 1
            if room.checkpointed and not room.finalized and not room.checkpoint_frozen:
                # Its result is the record now: the journal it has not appended is not worth a
                # round trip before the results (a saturated node held hundreds of MB of it).
                freeze(room)
                frozen += 1
        self.metrics.checkpoints_frozen.labels("stop").inc(frozen)
        writing = loop.time()  # the writer started with the first aborted races: it overlaps
        all_written = await self.results_writer.wait_empty(write_s)
        seconds = loop.time() - began
        left = self.results_writer.backlog
        # The tick's work resumes (mirrors of the ended races, their checkpoints deleted): one
        # tick's worth before the sockets close, bounded like the stop's other Redis writes.
        self._results_first = False
        self._ticked.clear()
        if self._ticker is not None and not self._ticker.done():
            await wait_event(self._ticked, STOP_REDIS_S)
        if owed:  # a warning when races were cut short (like the drain report), for benchmarks too
            say = self.log.info if all_written and not aborted else self.log.warning
            say(
                "results_written_at_stop",
                aborted=aborted,
                checkpoints_frozen=frozen,  # their unappended journals dropped: results first
                abort_s=round(writing - began, 3),  # aborting the races (their results go out meanwhile)
                owed=owed,
                written=owed - left,
                seconds=round(seconds, 3),  # from the first abort until every result was written
                per_s=round((owed - left) / seconds) if seconds > 0 else None,
                write_s=write_s,
            )
        # Every socket, not only those of rooms still held: the tick forgets a room as soon
        # as its results are out (removable now), and a socket left open holds the stop up.
        self._pause_reading(False)  # the clients' close replies end their sockets at once
        self._sockets_closing = True
        for conn in list(self.sockets):
            conn.close_going_away()
        await self._sockets_gone(self.settings.limits.close_timeout_s + SOCKETS_GONE_SLACK_S)

    async def _sockets_gone(self, timeout_s: float) -> None:
        """Wait for every socket to close (a close reply, or the close timer's cut) and its
        session to end, ``timeout_s`` at most; then cut what is still open and wait as long
        again for those sessions to end."""
        if await wait_event(self._no_sockets, timeout_s):
            return
        for conn in list(self.sockets):
            conn.abort()
        await wait_event(self._no_sockets, timeout_s)

    def pause_reading(self) -> None:
        """The stop has begun (the grace is over): players' input is no longer read, so a
        saturated loop is free for the stop's own steps (``Node.shutdown`` resumes reading
        for the close handshakes)."""
        self._pause_reading(True)

    def _pause_reading(self, pause: bool) -> None:
        """Stop (or resume) reading every socket: the kernel holds what clients send meanwhile."""
        for conn in list(self.sockets):
            transport = conn.transport
            if transport is None or conn.closed:
                continue
            try:
                if pause:
                    transport.pause_reading()
                else:
                    transport.resume_reading()
            except RuntimeError:  # closing under us: nothing to read either way
                continue

    async def stop(self) -> None:
        """Stop the loops and the results writer; results it could not write fail the node
        (``failure``: the process exits 1) and are logged by race id, in one line."""
        await self.mover.stop()
        await stop_tasks((self._ticker, self._flusher, self._heartbeat), self._stopping)
        await stop_tasks(list(self._socket_endings), asyncio.Event(), STOP_REDIS_S)  # after shutdown: none
        self._ticker = self._flusher = self._heartbeat = None
        if self.reaper is not None:
            await self.reaper.stop()
        await self.relay.stop()
        unwritten = await self.results_writer.stop()
        if unwritten:
            race_ids = sorted(room.race.id for room in unwritten)
            self.log.error("results_unwritten_at_stop", races=len(race_ids), race_ids=race_ids)
            why = f"{len(race_ids)} race results not written to the outbox at stop"
            self.failure = f"{self.failure}; {why}" if self.failure else why
        # At once, each bounded by STOP_REDIS_S: one after the other, a slow Redis held the
        # exit up for twice that. The registry entry goes last (reapers wait for it to go).
        await asyncio.gather(self._write_drain_report(), self._drop_checkpoints())
        await self._unregister()
        self.log.info("node_stopped")

    @property
    def loops_alive(self) -> bool:
        """The ticker, the flusher, the heartbeat, the results writer and the relay's loops all
        run (``/readyz``)."""
        loops = (self._ticker, self._flusher, self._heartbeat, self.results_writer.task, *self._reaper_task())
        return all(t is not None and not t.done() for t in loops) and self.relay.tasks_alive()

    def tasks_alive(self) -> list[asyncio.Task[None]]:
        """Background tasks still running (empty after ``stop``)."""
        tasks = (self._ticker, self._flusher, self._heartbeat, self.results_writer.task, *self._reaper_task())
        return [t for t in tasks if t is not None and not t.done()]

    def _reaper_task(self) -> list[asyncio.Task[None] | None]:
        return [self.reaper.task] if self.reaper is not None else []

    def info(self) -> NodeInfo:
        s = self.settings
        return NodeInfo(
            node_id=s.node_id,
            url=s.ws_url,
            http_url=s.http_url,
            admin_url=s.admin_url,
            region=s.region,
            capacity=s.capacity,
            players=self.players_seated() + self.seats_reserved(),
            races=self.live_races(),
            state=self._state().value,
            heartbeat_at=now_ms(),
        )

    def _state(self) -> NodeState:
        if self.draining:
            return NodeState.DRAINING
        return NodeState.FULL if self.admission.full else NodeState.READY

    def _judge_admission(self) -> None:
        """Once a heartbeat: full or not, from the worst lag since the last (the beat that
        follows tells placement)."""
        if not self.admission.step():
            return
        full = self.admission.full
        self.metrics.full.set(int(full))
        self.metrics.full_changes.labels("full" if full else "ready").inc()
        say = self.log.warning if full else self.log.info
        say(
            "node_full" if full else "node_not_full",
            worst_lag_ms=round(self.admission.last_worst_ms),
            full_lag_ms=self.admission.full_lag_ms,
            players=self.players_seated(),
            races=len(self.rooms),
        )

    async def _heartbeat_loop(self) -> None:
        """Tell the registry we are alive and how loaded; a dead node drops out by TTL."""
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.heartbeat_s)
            self._judge_admission()
            try:
                await self.registry.heartbeat(self.info())
            except Exception as exc:  # Redis hiccup: the next beat retries
                self.log.warning("heartbeat_failed", error=str(exc))
            self._sweep_sockets()
            self.memory.step(time.monotonic(), self.structure_sizes())

    def _sweep_sockets(self) -> None:
        """Every ``keepalive_s``: ping silent sockets, drop the ones silent for two sweeps."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_keepalive < self.settings.limits.keepalive_s:
            return
        self._last_keepalive = loop.time()
        dropped = 0
        for conn in list(self.sockets):
            try:
                dropped += not conn.keepalive()
            except Exception:  # this socket's fault: it goes, the sweep (and the heartbeat) go on
                self.metrics.faults.labels("keepalive").inc()
                conn.log.exception("keepalive_failed")
                conn.abort()
        if dropped:
            self.log.info("silent_sockets_dropped", sockets=dropped)

    def structure_sizes(self) -> dict[str, int]:
        """Entries of everything the node keeps per race or per socket: each follows the load
        and returns to 0 when the races are gone (``arena_gameserver_node_items``)."""
        return {
            "rooms": len(self.rooms),
            "sockets": len(self.sockets),
            "results_backlog": self.results_writer.backlog,  # results queued for the outbox
            "batcher": len(self.batcher),
            "remote_watched": len(self._remote_watched),
            "relay_watched_races": self.relay.watched_races(),
        }

    @property
    def connection_count(self) -> int:
        return len(self.sockets)

    def end_socket(self, ending: Coroutine[Any, Any, None]) -> None:
        """A socket closed: its session's ending (leave the race, stop watching, then the socket
        goes from ``sockets``) runs as a task the node owns; the stop waits for these."""
        task = asyncio.get_running_loop().create_task(ending, name="socket-ending")
        self._socket_endings.add(task)
        task.add_done_callback(self._socket_endings.discard)

    def add_socket(self, conn: Connection) -> None:
        self.sockets.add(conn)
        self._no_sockets.clear()
        if self._sockets_closing:  # upgraded on a keep-alive connection during the stop
            conn.close_going_away()
        self.metrics.connections.set(len(self.sockets))

    def remove_socket(self, conn: Connection) -> None:
        self.sockets.discard(conn)
        if not self.sockets:
            self._no_sockets.set()
        self.metrics.connections.set(len(self.sockets))

    async def _drop_checkpoints(self) -> None:
        """Checkpoints of races whose result is written but whose tick did not come round again:
        deleted now, else the reapers would find them (and only clean them up) once we are gone."""
        ckpt = Checkpoints()
        ckpt.done = [r for r in self.rooms.values() if r.checkpointed and r.finalized]
        if not ckpt:
            return
        try:
            async with asyncio.timeout(STOP_REDIS_S), self.redis.pipeline(transaction=False) as pipe:
                ckpt.write(pipe, self.settings.node_id, self.settings.region)
                await pipe.execute()
            ckpt.written()
        except Exception as exc:  # the reapers clean them up (already written: nothing is doubled)
            self.log.warning("checkpoints_left_at_stop", races=len(ckpt.done), error=repr(exc))

    async def _unregister(self) -> None:
        try:
            async with asyncio.timeout(STOP_REDIS_S):
                await self.registry.remove(self.settings.node_id)
        except Exception as exc:  # Redis gone at shutdown: the entry expires by itself
            self.log.warning("node_unregister_failed", error=str(exc))

    async def race_owner(self, race_id: RaceId) -> str | None:
        """The node that adopted ``race_id`` after its node died, if it moved (``race:{id}:owner``)."""
        owner = await self.redis.get(keys.race_owner(race_id))
        return as_text(owner) if owner is not None else None

    async def node_url(self, node_id: str) -> str | None:
        info = await self.registry.get(node_id)
        return info.url if info is not None else None

    async def drain(self, *, exit_after: bool = False, move: bool = False) -> None:
        """Take no new races; the node's races end on their own (``gameserver.drain``).

        ``exit_after``: the process exits once drained; the node can no longer be undrained.
        ``move``: hand the running races to live nodes of the region instead (``gameserver.mover``;
        raises ``MoveUnavailable`` without checkpoints and adoption).
        Idempotent: a drain in progress keeps its start and its counts.
        """
        if move and not self.can_move:
            raise MoveUnavailable("moving races needs ARENA_RACE_CHECKPOINT and ARENA_RACE_ADOPT on")
        if self._begin_drain(now_ms(), exit_after=exit_after):
            await self._beat()
        if move and not self.mover.running:
            self.mover.start()
            self.log.info("node_moving_races", races=len(self.mover.moving()))

    @property
    def can_move(self) -> bool:
        return self.settings.race.checkpoint and self.settings.race.adopt

    @property
    def draining(self) -> bool:
        return self.drain_report is not None

    def _begin_drain(self, now: int, *, exit_after: bool) -> bool:
        """Returns whether anything changed (the registry should hear of it)."""
        changed = False
        if self.drain_report is None:
            self.drain_report = DrainReport(started_at=now)
            self.metrics.draining.set(1)
            self.log.info("node_draining", races=self.live_races(), exit_after=exit_after)
            changed = True
        if exit_after and not self.exiting:
            self.exiting = self.drain_report.exiting = True
            self.exit_requested.set()
            if not changed:
                self.log.info("node_exit_requested", races=self.live_races())
            changed = True
        return changed

    async def undrain(self) -> None:
        """Back in service: takes races again, ready in the registry. Refused once exiting."""
        if self.exiting:
            raise NodeExiting("the node is exiting")
        if self.drain_report is None:
            return
        await self.mover.stop()
        await self.mover.settle()  # what was handed off and not adopted yet runs on here
        self.drain_report = None
        self.metrics.draining.set(0)
        await self._beat()
        self.log.info("node_undrained", races=self.live_races())

    async def _beat(self) -> None:
        """Tell the registry at once (a drain: placement stops picking us before the next beat).
        Bounded: a SIGTERM's drain waits for it, and a saturated node's Redis calls wait seconds
        for a free connection; the next heartbeat carries the state anyway."""
        try:
            async with asyncio.timeout(STOP_REDIS_S):
                await self.registry.heartbeat(self.info())
        except Exception as exc:  # Redis hiccup: the next heartbeat carries the state
            self.log.warning("heartbeat_failed", error=str(exc))

    async def wait_drained(self) -> None:
        """Until no race awaits its result. Call it once draining, or right before the drain
        begins (``gameserver.stopping.until_exit``): the last finalizer of a drain wakes it."""
        while self.live_races():
            self._idle.clear()
            await self._idle.wait()

    def live_races(self) -> int:
        return sum(1 for r in self.rooms.values() if not r.finalized)

    def drain_view(self) -> dict[str, object] | None:
        """The drain's counts and its running races' latest end (ms), or None when not draining."""
        if self.drain_report is None:
            return None
        live = [r.race for r in self.rooms.values() if not r.finalized]
        return self.drain_report.view(len(live), max(map(latest_end, live), default=None))

    async def _write_drain_report(self) -> None:
        """The last drain's outcome, for ``ops.admin`` to read once this node is gone."""
        view = self.drain_view()
        if view is None:
            return
        view |= {"node_id": self.settings.node_id, "stopped_at": now_ms()}
        try:
            key = keys.node_drain_report(self.settings.node_id)
            async with asyncio.timeout(STOP_REDIS_S):
                await self.redis.set(key, json.dumps(view), ex=DRAIN_REPORT_TTL_S)
        except Exception as exc:  # Redis gone at shutdown: the counts stay in this node's log
            self.log.warning("drain_report_unwritten", error=str(exc))
        # A counter would die with the process before a scrape: the log line and the key are the record.
        say = self.log.warning if view["aborted"] else self.log.info
        say("node_drain_report", **{k: v for k, v in view.items() if k != "node_id"})

    # ---- races -------------------------------------------------------------------

    async def write_definition(self, race_id: RaceId) -> bool:
        """A new race's checkpoint definition, written before anyone is told of the race (the
        admin endpoint awaits it), so a node killed before its next tick still leaves the race
        to a reaper: the chaos benchmark lost a race whose node died within its first tick.
        False when Redis did not take it: then the tick writes it, as it did before."""
        room = self.rooms.get(race_id)
        if room is None or room.checkpoint_def is None:
            return True
        definition, room.checkpoint_def = room.checkpoint_def, None
        room.checkpoint_pending = True
        race, s = room.race, self.settings
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.rpush(keys.race_checkpoint(race.id), definition)
                pipe.expire(keys.race_checkpoint(race.id), checkpoint_ttl_s(race))
                pipe.sadd(keys.node_checkpoints(s.node_id), race.id)
                pipe.hset(keys.CHECKPOINT_NODES, s.node_id, s.region)
                await pipe.execute()
        except Exception as exc:  # Redis hiccup: the tick's round trip carries it instead
            room.checkpoint_def = definition
            self.log.warning("checkpoint_definition_deferred", race_id=race.id, error=repr(exc))
            return False
        finally:
            room.checkpoint_pending = False
        return True

    def create_race(
        self,
        race_type: RaceType,
        players: list[SeatRequest],
        *,
        custom_text: str | None = None,
        passage_id: str | None = None,
        heat: HeatTag | None = None,
        ghosts: object = None,
        daily: str | None = None,
        test: TypingMode | None = None,
    ) -> tuple[Race, list[Seat]]:
        """Create a race with reserved seats; returns the tokens each player joins with.

        ``ghosts``: the request's ``ghosts`` list, validated here (``gameserver.ghost.parse_ghosts``:
        ``GhostError``, a ``ValueError``, if refused). ``test``: a typing test (one seat, race
        type custom, no ghosts; its text from ``test_content``)."""
        if self.draining:
            raise NodeDraining("node is draining")
        if self.admission.full:
            raise NodeFull("node is full: its loop lags")
        if not 1 <= len(players) <= self.settings.race.max_players:
            raise ValueError(f"a race seats 1 to {self.settings.race.max_players} players")
        # Keys past the race's own time limit are never fed: the longest race bounds them all.
        ghost_logs = tuple(parse_ghosts(ghosts, limit_ms=int(self.settings.race.longest_race_s * 1000)))
        race_id = new_race_id()
        if test is not None:
            if len(players) != 1 or heat is not None or ghost_logs or daily:
                raise ValueError("a typing test seats exactly one player, alone, and is no heat")
            race_type = RaceType.CUSTOM
            passage = self.test_content.passage(test, race_id, self._rng)
        else:
            passage = self._passage_for(race_type, custom_text, passage_id)
        s = self.settings
        race = Race(
            race_id=race_id,
            node_id=s.node_id,
            race_type=race_type,
            passage=passage,
            seats={p.player_id for p in players},
            now=now_ms(),
            settings=s.race,
            scoring=s.scoring,
            fairplay=s.fairplay,
            heat=heat,
            test=test,
            # Spread over the cadence: races created together (a tournament round) do not
            # all send in the same instant.
            input_offset_ms=self._rng.randrange(s.race.input_cadence_ms) if s.race.input_cadence_ms else 0,
            ghosts=ghost_logs,
            daily=daily,
        )
        self.metrics.ghosts.inc(len(ghost_logs))
        self.rooms[race_id] = room = RaceRoom(race, self.metrics)
        room.ping_phase = self._rng.randrange(self._ping_every)
        if s.race.checkpoint:  # written with the next tick's round trip, with what it journals
            race.journal = Journal()
            room.checkpoint_def = encode_definition(definition_of(race, s.region))
            room.checkpointed = True
        ttl = int(s.race.wait_timeout_s + 600)
        seats = [
            Seat(
                player_id=p.player_id,
                name=p.name,
                player_token=self.signer.sign_player(p.player_id, p.name, ttl_s=86400, guest=True),
                ticket=self.signer.sign_join(p.player_id, p.name, race_id, s.node_id, ttl_s=ttl),
            )
            for p in players
        ]
        if test is not None:  # a test is per request: debug, like the lobby's tickets
            self.metrics.typing_tests.labels(test.type.value).inc()
            self.log.debug("typing_test_created", race_id=race_id, mode=test.name)
        else:
            self.log.info("race_created", race_id=race_id, race_type=race_type.value, seats=len(seats))
        return race, seats

    async def adopt(self, race: Race, dead_node: str, last: int, moved: bool = False) -> None:
        """Run a dead node's race on as ours (``gameserver/adoption.py``); ``last`` is the instant
        of its checkpoint's last entry, or with ``moved`` the instant a draining node froze it
        (``gameserver/mover.py``: that node is alive, its heartbeat says nothing of the race).
        Raises if Redis refuses the take-over (then no room is installed, and the reaper
        finalises the race as aborted, or leaves a moved one to its node)."""
        since = last
        info = None if moved else await self.registry.get(dead_node)  # outlives its liveness a little
        if info is not None:
            since = max(since, info.heartbeat_at)
        now = now_ms()
        outage = max(0, now - since)
        s = self.settings
        extend_by_outage(race, outage)
        race.node_id = s.node_id
        # Redis first: if the take-over fails, the node holds nothing of the race.
        async with self.redis.pipeline(transaction=False) as pipe:
            take_over(pipe, race, dead_node, s.node_id, s.region, now)
            await pipe.execute()
        race.journal = Journal()
        self.rooms[race.id] = room = RaceRoom(race, self.metrics)
        room.ping_phase = self._rng.randrange(self._ping_every)
        room.checkpointed = True
        room.checkpoint_at = now  # the moved instants went with the take-over; new entries follow
        say = self.log.info if moved else self.log.warning  # a hand-off is planned, a death is not
        say(
            "race_adopted",
            race_id=race.id,
            dead_node=dead_node,
            moved=moved,
            state=race.state.value,
            players=len(race.racers),
            outage_ms=outage,
        )

    def _passage_for(self, race_type: RaceType, custom_text: str | None, passage_id: str | None) -> Passage:
        if race_type is RaceType.CUSTOM:
            if custom_text is None:
                raise ValueError("a custom race needs custom_text")
            s = self.settings.race
            return custom_passage(custom_text, min_chars=s.custom_min_chars, max_chars=s.custom_max_chars)
        if passage_id is not None:
            return self.corpus.by_id(passage_id)
        return self.corpus.pick(race_type.value, self._rng)

    def room(self, race_id: RaceId) -> RaceRoom | None:
        return self.rooms.get(race_id)

    def seats_reserved(self) -> int:
        """Seats held for players who have not arrived yet (they count against capacity)."""
        return sum(
            len(r.race.seats) - (len(r.race.racers) - len(r.race.ghosts))  # a ghost takes no seat
            for r in self.rooms.values()
            if r.race.state is RaceState.WAITING
        )

    def players_seated(self) -> int:
        return sum(len(r.race.racers) - len(r.race.ghosts) for r in self.rooms.values() if not r.race.ended)

    # ---- the tick ----------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = 1.0 / self.settings.race.tick_hz
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self._stopping.is_set():
            next_at += interval
            started = loop.time()
            try:
                await self.tick(now_ms())
            except Exception:  # a bug in one tick must not stop every race on the node
                self.log.exception("tick_failed")
            self.metrics.tick_seconds.observe(loop.time() - started)
            delay = next_at - loop.time()
            if delay < 0:  # fell behind: skip the missed ticks rather than bunching them
                next_at = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    async def tick(self, now: int) -> None:
        if self._results_first:  # a stop is writing results: nothing here is worth its time
            return
        # Each race is pinged once per ping interval, in its own tick: never all at once.
        self._tick_no += 1
        ping_phase = self._tick_no % self._ping_every
        counts = dict.fromkeys(RaceState, 0)
        seated = 0
        mirrors: list[RaceRoom] = []
        live: list[RaceRoom] = []  # running races whose racers' figures go to the mirror
        race_settings = self.settings.race
        ckpt = Checkpoints(now, race_settings.checkpoint_ms, race_settings.checkpoint_backlog_kb * 1024)
        for race_id, room in list(self.rooms.items()):
            if room.moving_at is not None:  # frozen for a hand-off (gameserver/mover.py)
                ckpt.collect(room)
                counts[room.race.state] += 1
                continue
            try:
                keep = self._tick_room(room, now, ping_phase, mirrors, live)
            except Exception:  # this race's fault: it is aborted, every other race goes on
                self._race_faulted(room, "tick")
                keep = True
            if room.checkpointed:
                ckpt.collect(room)
            if not keep:
                del self.rooms[race_id]
                continue
            race = room.race
            counts[race.state] += 1
            if not race.ended:
                seated += len(race.racers)
        if self.settings.race.checkpoint:
            self._checkpoint_lag(ckpt, now)
            if ckpt.frozen:
                self._checkpoints_frozen(ckpt.frozen, "backlog")
        await self._sync_redis(now, mirrors, live, ckpt)
        for state, n in counts.items():
            self.metrics.races.labels(state.value).set(n)
        self.metrics.publish()
        self.metrics.players.set(seated)
        self._ticked.set()


    def _checkpoints_frozen(self, rooms: list[RaceRoom], why: str) -> None:
        """Counted; said once per node (a node this far behind would say it every tick)."""
        self.metrics.checkpoints_frozen.labels(why).inc(len(rooms))
        if why == "backlog" and not self._frozen_said:
            self._frozen_said = True
            self.log.warning(
                "checkpoints_frozen",
                races=len(rooms),
                race_ids=[r.race.id for r in rooms[:20]],
                backlog_kb=self.settings.race.checkpoint_backlog_kb,
            )

    def _checkpoint_lag(self, ckpt: Checkpoints, now: int) -> None:
        """How far the checkpoints are behind: a gauge every tick; a warning at most every
        ``CHECKPOINT_LAG_LOG_MS`` when they fall behind: a race's backlog needs more than one
        append or a journal reached ``CHECKPOINT_ENTRIES_PER_ITEM``, or the per-tick bounds held
        races back in every tick for a whole checkpoint interval. (A few ticks of deferrals
        are the bound spreading races that came due together: a ramp, a failed round trip.)"""
        self.metrics.checkpoint_unwritten.set(ckpt.unwritten)
        if not ckpt.deferred:
            self._checkpoint_deferring_since = None
        elif self._checkpoint_deferring_since is None:
            self._checkpoint_deferring_since = now  # the first of a run of ticks with deferrals
        if not (ckpt.deferred or ckpt.split or ckpt.compacted):
            return
        self.metrics.checkpoint_deferred.inc(ckpt.deferred + ckpt.split)
        since = self._checkpoint_deferring_since
        lagging = since is not None and now - since >= self.settings.race.checkpoint_ms
        if not (lagging or ckpt.split or ckpt.compacted):
            return
        if now - self._checkpoint_lag_logged_ms >= CHECKPOINT_LAG_LOG_MS:
            self._checkpoint_lag_logged_ms = now
            self.log.warning(
                "checkpoints_behind",
                deferred=ckpt.deferred,  # races due that wait for a later tick
                split=ckpt.split,  # races whose backlog needs more than one append
                compacted=ckpt.compacted,  # long journals moved to the backlog before due
                unwritten_entries=ckpt.unwritten,
                appends=len(ckpt.appends),
                bytes=ckpt.bytes,
            )

    def _tick_room(
        self, room: RaceRoom, now: int, ping_phase: int, mirrors: list[RaceRoom], live: list[RaceRoom]
    ) -> bool:
        """One race's share of the tick; False when the race is over and can be forgotten."""
        race = room.race
        if room.faulted:  # aborted after a fault: only its results and its removal are left
            self._finalize_when_ended(room, now)
            return not (room.finalized and room.removable_at is not None and now >= room.removable_at)
        race.advance(now)
        room.flush_outgoing()
        if race.version != room.mirrored_version:
            room.mirrored_version = race.version
            race.unmirrored_progress = False
            room.roster_mirrored_at = now
            mirrors.append(room)
        # Live figures: ≈ 23 µs per write, ≈ 0.5 % of a core per 1,000 typing players at
        # 1 s; not visible in node_capacity --quick at 2,000 (docs/PERFORMANCE.md).
        elif race.unmirrored_progress and live_write_due(
            True, room.roster_mirrored_at, now, self.settings.race.live_mirror_ms
        ):
            race.unmirrored_progress = False
            room.roster_mirrored_at = now
            live.append(room)
        # Inputs queue their race in the batcher; a start, a drop-out or the end does not,
        # so the tick sends those (and the final frame before results, in order).
        if race.dirty and race.started and (race.ended or not room.progress_queued):
            room.broadcast_progress(now, FlushReason.TICK)
        if room.ping_phase == ping_phase and not race.ended:
            if race.state is RaceState.RUNNING:  # progress frames come: ride on the next one
                room.ask_ping(now, self._ping_ride_ms)
            else:
                room.ping_all(now)
        if room.ping_due_at is not None and now >= room.ping_due_at:
            room.ping_all(now)  # nothing to ride on came
        self._finalize_when_ended(room, now)
        return not (room.finalized and room.removable_at is not None and now >= room.removable_at)

    def _finalize_when_ended(self, room: RaceRoom, now: int) -> None:
        if room.race.ended and not room.finalized and room.removable_at is None:
            room.removable_at = now + int(self.settings.race.finished_linger_s * 1000)
            self._queue_results(room)

    def _race_faulted(self, room: RaceRoom, where: str) -> None:
        """The server failed on this race (a bug, or state it cannot encode): log it with its id,
        count it, abort the race so its results still reach the outbox, and let it end."""
        race = room.race
        self.metrics.faults.labels(where).inc()
        self.log.exception("race_faulted", race_id=race.id, where=where, state=race.state.value)
        if room.faulted:
            return
        room.faulted = True
        try:
            race.abort(now_ms(), FAULT_REASON)
            race.outgoing.clear()  # whatever it had to say may be what failed; results follow
        except Exception:  # not even that: drop the race, its players can race again elsewhere
            self.log.exception("race_abort_failed", race_id=race.id)
            self._drop_room(room)

    def _drop_room(self, room: RaceRoom) -> None:
        """Forget a race the node cannot end properly: its sockets close with 1011."""
        room.finalized = True
        room.removable_at = now_ms()
        for conn in room.sockets():
            conn.close(CloseCode.INTERNAL_ERROR, FAULT_REASON)

    async def _sync_redis(
        self, now: int, mirrors: list[RaceRoom], live: list[RaceRoom], ckpt: Checkpoints | None = None
    ) -> None:
        """One pipelined round trip per tick: race mirrors (whole, or the racers' live figures),
        live index, who is watched, and the races' checkpoints (appends, and deletes of those
        whose result is written)."""
        check_watched = now - self._last_watch_check_ms >= WATCH_CHECK_MS
        ckpt = ckpt or Checkpoints()
        if not (mirrors or live or check_watched or ckpt):
            return
        # Ended races too: their results still go to spectators elsewhere.
        rooms = list(self.rooms.values()) if check_watched else []
        race_ids = [r.race.id for r in rooms]
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room in mirrors:
                    race = room.race
                    key = keys.race_state(race.id)
                    pipe.hset(key, mapping=mirror_fields(race, now))  # type: ignore[arg-type]
                    pipe.expire(key, mirror_ttl_s(race, now))
                    # The live index rides the same round trip; spectators read the mirror.
                    if race.state is RaceState.RUNNING and race.test is None:  # tests are not races to watch
                        pipe.zadd(keys.LIVE_RACES, {race.id: race.start_at or now})
                    elif race.ended:
                        pipe.zrem(keys.LIVE_RACES, race.id)
                # Live figures: the roster field alone (its TTL covers the race, mirror_ttl_s).
                for room in live:
                    pipe.hset(keys.race_state(room.race.id), "roster", roster_json(room.race, now))
                ckpt.write(pipe, self.settings.node_id, self.settings.region)
                if check_watched:  # last: its answer is the last reply (watched.answer)
                    watched.ask(pipe, race_ids, now)
                replies = await pipe.execute()
        except Exception as exc:  # Redis hiccup: mirrors catch up at the next change
            for room in live:  # and live figures at the next due tick
                room.race.unmirrored_progress = True
            if ckpt:  # the journals keep their entries: appended a checkpoint interval later
                ckpt.failed()
                self.metrics.checkpoint_write_failures.inc()
            self.log.warning("redis_sync_failed", error=str(exc))
            return
        self.metrics.checkpoint_entries.inc(ckpt.written())
        if check_watched:
            self._last_watch_check_ms = now
            for room, is_watched in zip(rooms, watched.answer(replies, race_ids, now), strict=True):
                room.remote_watched = is_watched
            self._remote_watched = [r for r in rooms if r.remote_watched]

    # ---- progress between ticks ------------------------------------------------------

    def send_progress(self, room: RaceRoom, now: int, reason: FlushReason) -> None:
        """The race's progress frame now; if the server fails on it, the race alone pays."""
        try:
            room.broadcast_progress(now, reason)
        except Exception:
            self._race_faulted(room, "progress")

    def send_outgoing(self, room: RaceRoom) -> None:
        """What the race has to say (a finish, a roster) now, contained like a progress frame."""
        try:
            room.flush_outgoing()
        except Exception:
            self._race_faulted(room, "outgoing")

    def progress_due(self, room: RaceRoom, now: int) -> None:
        """An input changed the race: its frame leaves when the batching window closes."""
        self.batcher.queue(room, now)

    async def _flush_loop(self) -> None:
        """Send progress as races come due; publish frames of remotely watched races."""
        pause = self.batcher.slot_ms / 1000
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            asked = loop.time() + pause
            await asyncio.sleep(pause)
            lag = max(0.0, loop.time() - asked)
            self.metrics.loop_lag_seconds.observe(lag)
            # Admission control's figure. A tick that overruns by its own work holds the loop,
            # so it shows here; its wait for Redis does not, on purpose: a slow Redis is no node's
            # load, and every node would say it is full at once.
            self.admission.observe(lag)
            self._send_due(now_ms())
            if self._remote_watched:
                await self._publish_relayed()

    def _send_due(self, now: int) -> None:
        """The progress frames whose window closed (a method: the loop keeps no room alive)."""
        for room in self.batcher.take_due(now):
            race = room.race
            if race.dirty and not race.ended and not room.faulted:  # ended: the tick sends it
                self.send_progress(room, now, FlushReason.WINDOW)

    async def _publish_relayed(self) -> None:
        """Frames for spectators on other nodes, in order, in one pipelined round trip."""
        publishing = [r for r in self._remote_watched if r.to_publish]
        if not publishing:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for room in publishing:
                    channel = keys.race_updates(room.race.id)
                    frames, room.to_publish = room.to_publish, []
                    for frame in frames:
                        pipe.spublish(channel, frame)  # sharded: docs/ARCHITECTURE.md "Redis Cluster"
                await pipe.execute()
        except Exception as exc:  # remote spectators miss frames; the next ones carry the state
            self.log.warning("relay_publish_failed", error=str(exc))

    async def remote_snapshot(self, race_id: RaceId) -> Watching | None:
        """A spectator's snapshot of a race owned elsewhere, from its mirror in Redis."""
        raw = await self.redis.hgetall(keys.race_state(race_id))
        if not raw:
            return None
        d = text_map(raw)
        try:
            players = [PlayerInfo(*row) for row in json.loads(d["roster"])]
            return Watching(
                race_id=race_id,
                race_type=d["type"],
                passage_id=d["passage_id"],
                passage=d["passage"],
                state=d["state"],
                players=players,
                server_time=now_ms(),
                start_at=int(d["start_at"]) or None,
                ends_at=int(d["ends_at"]) or None,
                node_id=d["node"],
            )
        except (KeyError, ValueError, TypeError):
            return None

    # ---- results ------------------------------------------------------------------

    def _queue_results(self, room: RaceRoom) -> None:
        """The race ended: its record goes to the outbox with the next batch (``results_writer``)."""
        self.results_writer.submit(room)

    def _record_failed(self, room: RaceRoom, exc: Exception) -> None:
        """The race's record could not be built: no race may linger, its sockets close 1011."""
        self.metrics.faults.labels("finalize").inc()
        self.log.error("race_finalize_failed", race_id=room.race.id, exc_info=exc)
        self._drop_room(room)
        self.maybe_idle()

    async def _results_written(
        self, written: list[Written[RaceRoom, MatchRecord | TypingTestRecord]]
    ) -> None:
        """A batch is in the outbox: rate its races, then tell their players (in that order:
        a player never sees a result that could be lost)."""
        appended = sum(1 for w in written if w.appended)
        if appended:
            self.metrics.outbox_appends.inc(appended)
        rated = [
            w.record
            for w in written
            if isinstance(w.record, MatchRecord) and ranking_from_record(w.record) is not None
        ]  # typing tests are never rated
        if rated:  # aborted races are not rated: a stop's batches go straight to the players
            await self._rate(rated)
        for w in written:
            try:
                self._results_out(w.item, w.record)
            except Exception:  # this race alone: its result is written, its sockets close 1011
                self.metrics.faults.labels("finalize").inc()
                self.log.exception("race_finalize_failed", race_id=w.item.race.id)
                self._drop_room(w.item)
        self.maybe_idle()  # once per batch: it counts every room

    def maybe_idle(self) -> None:
        """Wake ``wait_drained`` when the last race's result is out (only while draining can the
        count of live races only fall)."""
        if self.drain_report is not None and not self.live_races():
            self._idle.set()

    async def _rate(self, records: list[MatchRecord]) -> None:
        """Update ratings at once, ``RATINGS_AT_ONCE`` races at a time. Idempotent per match;
        persistence applies them again from the outbox, so a failure only delays new ratings."""
        todo = iter(records)
        failed: list[str] = []
        errors: list[str] = []

        async def rater() -> None:
            for record in todo:
                try:
                    await self.ratings.apply_record(record)
                except Exception as exc:
                    failed.append(record.match_id)
                    errors.append(repr(exc))

        await asyncio.gather(*(rater() for _ in range(min(RATINGS_AT_ONCE, len(records)))))
        if failed:  # one line for the batch, not one per race
            self.log.warning("rating_update_failed", races=len(failed), race_ids=failed, error=errors[0])

    def _results_out(self, room: RaceRoom, record: MatchRecord | TypingTestRecord) -> None:
        race = room.race
        self.metrics.results.labels(race.state.value).inc()
        for p in record.participants:
            for flag in p.flags:
                self.metrics.flags.labels(flag).inc()
            racer = race.racers.get(PlayerId(p.player_id))
            if p.flags and racer is not None:  # the server's evidence, for whoever reviews it
                seen = racer.arrivals
                self.log.info(
                    "result_flagged",
                    race_id=race.id,
                    player_id=p.player_id,
                    flags=p.flags,
                    wpm=p.wpm,
                    batches=seen.batches,
                    held_back_batches=seen.held_back_batches,
                    late_batches=seen.late_batches,
                    worst_hold_ms=seen.worst_hold_ms,
                    peak_arrival_wpm=round(seen.peak_wpm(), 1),
                )
        room.broadcast(room.results())
        room.finalized = True
        if self.drain_report is not None:
            self.drain_report.count(outcome_of(race))
        self.log.info(
            "race_finalized", race_id=race.id, state=race.state.value, players=len(record.participants)
        )
