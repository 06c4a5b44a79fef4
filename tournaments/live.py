"""Following tournaments live: one Redis pub/sub connection per API process, many sockets.

``LiveHub`` subscribes to ``tournament:{id}:updates`` while anyone follows the tournament (a
live socket, or a long-poll for a player's heat) and relays each JSON update to every socket
of it. For the heats in progress it also subscribes to their races' channels
(``race:{id}:updates``, sharded pub/sub: ``arena/shardfeed.py``, read by a loop of their own)
and keeps them marked in ``races:watched``, so the owning node publishes the races' frames
(it does only while a race is watched); ``progress`` frames become ``heat_progress`` messages.

Each socket has a bounded queue drained by its own writer task. Policy when a socket reads
too slowly: ``heat_progress`` messages are dropped once the queue is half full (the next one
supersedes them); when it is full the socket is closed (1013, try again later) - the client
reconnects and gets a fresh snapshot, rather than a stream with holes in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis.asyncio as aioredis
import structlog
from aiohttp import WSCloseCode, web

from arena import keys, watched
from arena.clock import now_ms
from arena.ids import RaceId
from arena.protocol import MsgType
from arena.redisutil import as_text
from arena.shardfeed import ShardedFeed
from tournaments.metrics import LiveMetrics

log = structlog.get_logger(__name__)

REFRESH_S = 3.0
_HEAT_TYPES = frozenset({"heat_placed", "heat_moved", "heat_finished", "heat_rerun"})


@dataclass(frozen=True, slots=True)
class RaceRef:
    tournament_id: str
    round_no: int
    heat_no: int
    race_id: str


@dataclass(eq=False)
class Follower:
    """One live socket of one tournament."""

    tournament_id: str
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str]
    writer: asyncio.Task[None] | None = None
    closing: bool = False


@dataclass
class _Followed:
    sockets: set[Follower] = field(default_factory=set)
    waiters: set[asyncio.Event] = field(default_factory=set)
    races: dict[str, RaceRef] = field(default_factory=dict)  # race id -> where it counts


class LiveHub:
    def __init__(
        self, redis: aioredis.Redis, *, owner: str, queue_size: int, max_sockets: int, metrics: LiveMetrics
    ) -> None:
        self._redis = redis
        self._owner = owner
        self._queue_size = queue_size
        self.max_sockets = max_sockets
        self.metrics = metrics
        self._pubsub: Any = None  # redis.asyncio.client.PubSub, made on first use
        self._frames: ShardedFeed | None = None  # the races' channels, made on first use
        self._followed: dict[str, _Followed] = {}
        self._races: dict[str, RaceRef] = {}  # race channel's race id -> ref
        self._passage_chars: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closers: set[asyncio.Task[None]] = set()  # closing sockets that read too slowly
        self._closed = False

    # ---- lifecycle -----------------------------------------------------------------

    async def stop(self) -> None:
        """Close every socket (going away), wake every waiter, stop the reader."""
        self._closed = True
        for followed in list(self._followed.values()):
            for event in followed.waiters:
                event.set()
            for follower in list(followed.sockets):
                await self._close(follower, WSCloseCode.GOING_AWAY, "server shutting down")
        await asyncio.gather(*self._closers, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        if self._frames is not None:
            await self._frames.aclose()
            self._frames = None

    @property
    def sockets(self) -> int:
        return sum(len(f.sockets) for f in self._followed.values())

    # ---- long-poll waiters -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(self, tournament_id: str) -> AsyncIterator[asyncio.Event]:
        """Set on every update of the tournament while the block runs (a hint: re-read then)."""
        event = asyncio.Event()
        followed = await self._take(tournament_id)
        followed.waiters.add(event)
        try:
            yield event
        finally:
            followed.waiters.discard(event)
            await self._release(tournament_id)

    # ---- sockets -----------------------------------------------------------------------

    async def follow(self, tournament_id: str, ws: web.WebSocketResponse) -> Follower:
        """Start relaying; the caller sends its snapshot, then ``start_writer``."""
        followed = await self._take(tournament_id)
        follower = Follower(tournament_id, ws, asyncio.Queue(self._queue_size))
        followed.sockets.add(follower)
        self.metrics.sockets.inc()
        return follower

    def start_writer(self, follower: Follower) -> None:
        follower.writer = asyncio.create_task(self._write_loop(follower), name="tournament-live-writer")

    async def unfollow(self, follower: Follower) -> None:
        followed = self._followed.get(follower.tournament_id)
        if followed is None or follower not in followed.sockets:
            return
        followed.sockets.discard(follower)
        self.metrics.sockets.dec()
        if follower.writer is not None and follower.writer is not asyncio.current_task():
            follower.writer.cancel()
            await asyncio.gather(follower.writer, return_exceptions=True)
        await self._release(follower.tournament_id)

    async def track(self, refs: Iterable[RaceRef]) -> None:
        """Relay these heats' races (those in progress when a socket joins)."""
        for ref in refs:
            await self._track(ref)

    # ---- subscriptions -------------------------------------------------------------

    async def _take(self, tournament_id: str) -> _Followed:
        followed = self._followed.get(tournament_id)
        if followed is None:
            followed = self._followed[tournament_id] = _Followed()
            await self._subscribe(keys.tournament_updates(tournament_id))
        return followed

    async def _release(self, tournament_id: str) -> None:
        followed = self._followed.get(tournament_id)
        if followed is None or followed.sockets or followed.waiters:
            return
        del self._followed[tournament_id]
        races = []
        for race_id in followed.races:
            self._races.pop(race_id, None)
            self._passage_chars.pop(race_id, None)
            races.append(keys.race_updates(RaceId(race_id)))
        await self._unsubscribe(keys.tournament_updates(tournament_id))
        await self._unsubscribe_races(*races)

    async def _track(self, ref: RaceRef) -> None:
        followed = self._followed.get(ref.tournament_id)
        if followed is None or not followed.sockets or ref.race_id in followed.races:
            return  # long-polls do not need race frames
        followed.races[ref.race_id] = ref
        self._races[ref.race_id] = ref
        race = RaceId(ref.race_id)
        await watched.mark(self._redis, [race], now_ms())
        await self._subscribe_race(keys.race_updates(race))

    async def _passage_length(self, race_id: str) -> int | None:
        """From the race's mirror (written by its node at its first tick), once per race."""
        if race_id not in self._passage_chars:
            passage = await self._redis.hget(keys.race_state(RaceId(race_id)), "passage")
            if passage is None:
                return None
            self._passage_chars[race_id] = len(as_text(passage))
        return self._passage_chars[race_id]

    async def _untrack_heat(self, tournament_id: str, round_no: int, heat_no: int) -> None:
        followed = self._followed.get(tournament_id)
        if followed is None:
            return
        gone = [r for r in followed.races.values() if (r.round_no, r.heat_no) == (round_no, heat_no)]
        for ref in gone:
            del followed.races[ref.race_id]
            self._races.pop(ref.race_id, None)
            self._passage_chars.pop(ref.race_id, None)
        if gone:
            await self._unsubscribe_races(*(keys.race_updates(RaceId(r.race_id)) for r in gone))

    async def _subscribe(self, channel: str) -> None:
        if self._closed:
            return
        try:
            if self._pubsub is None:
                self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.subscribe(channel)
        except Exception as exc:  # followers still have their snapshot; long-polls re-read on a timer
            log.warning("live_subscribe_failed", error=str(exc))
            return
        self._start_tasks()

    async def _subscribe_race(self, channel: str) -> None:
        if self._closed:
            return
        try:
            if self._frames is None:
                self._frames = ShardedFeed(self._redis)
            await self._frames.subscribe(channel)
        except Exception as exc:  # followers miss this race's progress, not its results
            log.warning("live_subscribe_failed", error=str(exc))
            return
        self._start_tasks()

    def _start_tasks(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._read_loop(), name="tournament-live-reader"),
                asyncio.create_task(self._frames_loop(), name="tournament-live-frames"),
                asyncio.create_task(self._refresh_loop(), name="tournament-live-refresh"),
            ]

    async def _unsubscribe(self, *channels: str) -> None:
        if self._pubsub is None or self._closed:
            return
        try:
            await self._pubsub.unsubscribe(*channels)
        except Exception as exc:
            log.warning("live_unsubscribe_failed", error=str(exc))

    async def _unsubscribe_races(self, *channels: str) -> None:
        if self._frames is None or self._closed or not channels:
            return
        try:
            await self._frames.unsubscribe(*channels)
        except Exception as exc:
            log.warning("live_unsubscribe_failed", error=str(exc))

    # ---- incoming ----------------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except Exception as exc:  # connection trouble: try again shortly
                log.warning("live_read_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = as_text(message["channel"])
            try:
                await self._on_update(_tag(channel), as_text(message["data"]))
            except Exception:
                log.exception("live_message_failed", channel=channel)

    async def _frames_loop(self) -> None:
        while True:
            if self._frames is None:  # a tournament followed before any of its races
                await asyncio.sleep(1.0)
                continue
            try:
                frame = await self._frames.get_message(timeout=1.0)
            except Exception as exc:  # connection trouble: try again shortly
                log.warning("live_read_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            if frame is None:
                continue
            try:
                await self._on_race_frame(_tag(frame.channel), frame.data)
            except Exception:
                log.exception("live_message_failed", channel=frame.channel)

    async def _on_update(self, tournament_id: str, text: str) -> None:
        followed = self._followed.get(tournament_id)
        if followed is None:
            return
        for event in followed.waiters:
            event.set()
        update = json.loads(text)
        kind = update.get("type")
        if kind in _HEAT_TYPES:
            # a heat's earlier race (points rule) or a race its node lost is no longer followed
            await self._untrack_heat(tournament_id, int(update["round"]), int(update["heat"]))
        if kind == "heat_placed" and update.get("race_id"):
            await self._track(
                RaceRef(tournament_id, int(update["round"]), int(update["heat"]), update["race_id"])
            )
        self._fan_out(followed, text, droppable=False)

    async def _on_race_frame(self, race_id: str, payload: bytes) -> None:
        ref = self._races.get(race_id)
        if ref is None:
            return
        frame = msgpack.unpackb(payload, raw=False)
        if not isinstance(frame, dict) or frame.get("t") != MsgType.PROGRESS.value:
            return
        message = {
            "type": "heat_progress",
            "tournament_id": ref.tournament_id,
            "round": ref.round_no,
            "heat": ref.heat_no,
            "race_id": race_id,
            "passage_chars": await self._passage_length(race_id),
            "server_time": frame.get("server_time"),
            "players": [
                {"player_id": row[0], "position": row[1], "wpm": row[2], "place": row[3] or None}
                for row in frame.get("players", [])
            ],
        }
        followed = self._followed.get(ref.tournament_id)
        if followed is not None:
            self._fan_out(followed, json.dumps(message, separators=(",", ":")), droppable=True)

    def _fan_out(self, followed: _Followed, text: str, *, droppable: bool) -> None:
        for follower in list(followed.sockets):
            self.offer(follower, text, droppable=droppable)

    def offer(self, follower: Follower, text: str, *, droppable: bool) -> None:
        """Queue one message for a socket, by the module's overflow policy."""
        if follower.closing:
            return
        q = follower.queue
        if droppable and q.qsize() * 2 >= q.maxsize:
            self.metrics.dropped.labels("progress").inc()
            return
        try:
            q.put_nowait(text)
            self.metrics.messages.inc()
        except asyncio.QueueFull:
            self.metrics.dropped.labels("socket").inc()
            follower.closing = True
            task = asyncio.create_task(self._close(follower, WSCloseCode.TRY_AGAIN_LATER, "too slow"))
            self._closers.add(task)
            task.add_done_callback(self._closers.discard)

    async def _write_loop(self, follower: Follower) -> None:
        try:
            while True:
                text = await follower.queue.get()
                await follower.ws.send_str(text)
        except (ConnectionResetError, RuntimeError):
            pass  # the socket went away; its handler notices and unfollows

    async def _close(self, follower: Follower, code: int, message: str) -> None:
        follower.closing = True
        with contextlib.suppress(Exception):
            await follower.ws.close(code=code, message=message.encode())
        await self.unfollow(follower)

    async def _refresh_loop(self) -> None:
        """Keep telling the races' owners that someone watches them."""
        while True:
            await asyncio.sleep(REFRESH_S)
            if not self._races:
                continue
            try:
                await watched.mark(self._redis, list(self._races), now_ms())
            except Exception as exc:  # Redis hiccup: the next round retries
                log.warning("live_refresh_failed", error=str(exc))


def _tag(channel: str) -> str:
    """The id inside a channel's hash tag: ``tournament:{t1}:updates`` -> ``t1``."""
    return channel.split("{", 1)[1].split("}", 1)[0]
