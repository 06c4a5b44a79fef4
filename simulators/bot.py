"""A simulated player that races over the real wire protocol.

One ``Bot`` plays one seat: hello, join, clock sync, typing its planned keystrokes in
``input`` batches, answering server pings, and waiting for the results. It can also drop
its connection abruptly mid-race (and come back), leave, and follow one redirect.

With ``reconnect_s`` it copes with losing its node (issue 15): when the connection breaks or
cannot be made before the results, it keeps trying for that long, first the race's node again,
then the lobby's current assignment (``locate``) or any other node (``fallback_urls``: a node
redirects the ticket to the race's owner, the adopter after a node's death). Its keys stay due
meanwhile (a local buffer): once joined again it resends the inputs above the server's ``seq``
and then everything typed while away.

Design: per connection, a reader task only moves frames from the socket into an inbox;
everything else (decoding, state, sending) happens in ``Bot``'s single main coroutine,
which wakes on a frame or on the next send tick. So no state is shared between tasks.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

import aiohttp
import structlog
from aiohttp import ClientWSTimeout, WSMsgType

from arena.clock import now_ms
from arena.codec import ProtocolError, WireFormat, decode_server, encode
from arena.protocol import (
    Countdown,
    Error,
    Finish,
    Hello,
    Input,
    Join,
    Joined,
    Leave,
    Message,
    Ping,
    PlayerStatus,
    Pong,
    Progress,
    RaceState,
    Redirect,
    ResultRow,
    Results,
    ResumeState,
    Start,
    Welcome,
)
from arena.waits import wait_event, within
from simulators.guard import NotLoopbackError, require_loopback
from simulators.typing import TypingProfile, plan_keystrokes

__all__ = ["Bot", "BotReport", "Planner", "RaceGone"]

# Makes the keystroke plan once the passage is known: (key, ms since start) pairs.
Planner = Callable[[str], list[tuple[str, int]]]

log = structlog.get_logger(__name__)

CLIENT_NAME = "typogram-bot/1"
CLOCK_SYNC_PINGS = 5  # sequential pings at each connect; the fastest round trip wins
_CLOSE_WAIT_S = 1.0  # at most this long for a normal close to get the server's close frame
# Close codes after which rejoining cannot help: bad ticket, race full, replaced, race over.
_FINAL_CLOSES = frozenset({4001, 4006, 4009, 4010})
_RECONNECT_BACKOFF_S = (0.1, 0.2, 0.4, 0.5)  # between attempts; the last one repeats
_MAX_REDIRECTS = 3  # per rejoin: the ticket's node, then the race's owner
_LIVE_STATES = frozenset({RaceState.WAITING.value, RaceState.COUNTDOWN.value, RaceState.RUNNING.value})
_NOT_STARTED = frozenset({RaceState.WAITING.value, RaceState.COUNTDOWN.value})


@dataclass
class BotReport:
    player_id: str
    name: str
    profile: TypingProfile
    joined: bool = False
    finished: bool = False
    results: Results | None = None
    my_row: ResultRow | None = None
    errors: list[Error] = field(default_factory=list)
    close_code: int | None = None  # of the last connection
    progress_latencies_ms: list[float] = field(default_factory=list)
    inputs_sent: int = 0  # input messages, resends included
    # Beyond the core fields: what happened along the way.
    finish: Finish | None = None  # the server's finish message for this bot
    failure: str | None = None  # a local problem: could not connect, timed out, closed early
    connections: int = 0
    reconnects: int = 0  # rejoins after the connection was lost (not after a planned drop)
    resume_state: ResumeState | None = None  # ``you`` of the last join after a reconnect
    redirected_to: str | None = None
    dropped: bool = False
    left: bool = False
    clock_offset_ms: float | None = None  # server clock minus local clock
    best_rtt_ms: float | None = None
    keys_planned: int = 0
    keys_sent: int = 0


class RaceGone(Exception):
    """Raised by a ``locate`` when the lobby says the race is lost or over: stop trying to rejoin."""


class _Outcome(Enum):
    """How one connection ended."""

    RESULTS = "results"  # got the results: done
    REDIRECT = "redirect"  # the race lives elsewhere
    DROPPED = "dropped"  # we cut the connection on purpose
    LEFT = "left"  # we sent leave
    CLOSED = "closed"  # the server closed, or the socket broke


_EOF = object()  # the reader's last inbox item: the socket is done


@dataclass
class _Link:
    """One WebSocket connection and its reader."""

    ws: aiohttp.ClientWebSocketResponse
    reader: asyncio.Task[None] | None = None
    inbox: collections.deque[object] = field(default_factory=collections.deque)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    hello_sent_ms: int = 0
    pings_left: int = CLOCK_SYNC_PINGS
    joined: bool = False  # no input before the join, so resends go out before new keys
    url: str = ""


class Bot:
    def __init__(
        self,
        url: str,
        player_token: str,
        ticket: str,
        profile: TypingProfile,
        rng: random.Random,
        *,
        send_interval_ms: int = 200,
        fmt: WireFormat = WireFormat.MSGPACK,
        name: str = "bot",
        drop_after_ms: int | None = None,
        resume_after_ms: int | None = None,
        leave_after_ms: int | None = None,
        session: aiohttp.ClientSession | None = None,
        planner: Planner | None = None,
        reconnect_s: float | None = None,
        fallback_urls: Sequence[str] = (),
        locate: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        """``drop_after_ms``/``leave_after_ms`` are race times (ms after the start);
        ``resume_after_ms`` is how long to stay away after a drop. ``session`` lets many
        bots share one connection pool; otherwise ``run`` makes and closes its own.
        ``planner`` replaces the human-like plan (tests of cheating: pasting, robots).
        ``reconnect_s``: how long to keep trying to rejoin after losing the connection (None:
        give up at once); ``fallback_urls`` (other nodes) and ``locate`` (asks the lobby for the
        race's current node URL) are where to try once the race's node does not answer."""
        if send_interval_ms <= 0:
            raise ValueError("send_interval_ms must be > 0")
        self.url = require_loopback(url)
        self.player_token = player_token
        self.ticket = ticket
        self.profile = profile
        self.rng = rng
        self.send_interval_ms = send_interval_ms
        self.fmt = fmt
        self.name = name
        self.drop_after_ms = drop_after_ms
        self.resume_after_ms = resume_after_ms
        self.leave_after_ms = leave_after_ms
        self._session = session
        self._planner = planner
        self.reconnect_s = reconnect_s
        self.fallback_urls = [require_loopback(u) for u in fallback_urls]
        self._locate = locate
        self._race_url = self.url  # the node the bot last joined on
        self._lost_since: float | None = None  # monotonic: the connection broke, not rejoined yet
        self._problem: str | None = None  # why the last connection ended, while rejoining
        self.report = BotReport(player_id="", name=name, profile=profile)
        self.log = log.bind(bot=name)
        # Race state, kept across reconnects.
        self._plan: list[tuple[str, int]] | None = None
        self._next_key = 0  # index of the first planned key not yet sent
        self._seq = 0
        self._batches: list[Input] = []  # everything sent, for resending after a resume
        self._sent_at: dict[int, float] = {}  # seq -> monotonic send time, for latency
        self._progress_seq = 0  # highest own seq seen in a progress row
        self._start_at: int | None = None  # server clock
        self._ends_at: int | None = None  # server clock
        self._typing_over = False  # all keys sent, or no longer allowed to type
        self._max_keys = 64
        self._offset_ms = 0.0  # server clock - local clock
        self._best_rtt_ms = math.inf
        self._next_tick = 0.0  # monotonic seconds
        self._cadence_every = 0  # the race's input cadence from ``joined`` (0: none)
        self._cadence_offset = 0
        self._redirects = 0
        self._close_wait_s = _CLOSE_WAIT_S

    # ---- the whole run -----------------------------------------------------------

    async def run(self, timeout_s: float) -> BotReport:
        """Play until the results arrive (or the bot leaves or drops for good); never
        longer than ``timeout_s``. Every task and socket is closed on return."""
        # Part of the budget is kept for closing politely, so run() returns in time.
        cleanup_s = self._close_wait_s = min(_CLOSE_WAIT_S, timeout_s / 10)
        own_session = self._session is None
        session = self._session or aiohttp.ClientSession()
        try:
            async with asyncio.timeout(max(0.0, timeout_s - cleanup_s)):
                await self._play(session)
        except TimeoutError:
            if self.report.results is None:
                self._fail(f"timed out after {timeout_s:.1f}s without results")
        finally:
            if own_session:
                await session.close()
        return self.report

    async def _play(self, session: aiohttp.ClientSession) -> None:
        url = self.url
        attempt = 0
        while True:
            outcome = await self._connection(session, url)
            if outcome is _Outcome.REDIRECT:
                self._redirects += 1
                target = self.report.redirected_to
                limit = 1 if self.reconnect_s is None else _MAX_REDIRECTS
                if target is None or self._redirects > limit:
                    self._fail("redirected more than once" if limit == 1 else "redirected too often")
                    return
                try:
                    url = require_loopback(target)
                except NotLoopbackError as exc:
                    self._fail(str(exc))
                    return
                self.log.info("bot_redirected", url=url)
                continue
            if outcome is _Outcome.DROPPED and self.resume_after_ms is not None:
                await asyncio.sleep(self.resume_after_ms / 1000)
                self.log.info("bot_reconnecting")
                continue
            if outcome is _Outcome.CLOSED and self._may_rejoin():
                now = time.monotonic()
                if self._lost_since is None:
                    self._lost_since, attempt = now, 0
                    self.log.info("bot_connection_lost", problem=self._problem)
                assert self.reconnect_s is not None
                if now - self._lost_since > self.reconnect_s:
                    self._fail(f"could not rejoin within {self.reconnect_s:.1f}s: {self._problem}")
                    return
                await asyncio.sleep(_RECONNECT_BACKOFF_S[min(attempt, len(_RECONNECT_BACKOFF_S) - 1)])
                attempt += 1
                try:
                    url = await self._rejoin_url(attempt)
                except RaceGone as exc:
                    self._fail(f"the race is gone: {exc}")
                    return
                self._redirects = 0
                continue
            if outcome is _Outcome.CLOSED and self._problem is not None and self.report.results is None:
                self._fail(self._problem)
            return

    def _may_rejoin(self) -> bool:
        """The connection was lost before the results, in a way rejoining can mend."""
        if self.reconnect_s is None or self.report.results is not None or self.report.left:
            return False
        return self.report.close_code not in _FINAL_CLOSES

    async def _rejoin_url(self, attempt: int) -> str:
        """Odd attempts: the race's node again; even ones: where the lobby says the race is
        now, else another node (which redirects the ticket to the race's owner)."""
        if attempt % 2 == 1:
            return self._race_url
        if self._locate is not None:
            try:
                located = await self._locate()
            except RaceGone:
                raise
            except Exception as exc:  # the lobby is one way among others: try a node instead
                self.log.info("bot_locate_failed", error=repr(exc))
                located = None
            if located is not None:
                try:
                    return require_loopback(located)
                except NotLoopbackError as exc:
                    self._problem = str(exc)
        if self.fallback_urls:
            return self.fallback_urls[(attempt // 2 - 1) % len(self.fallback_urls)]
        return self._race_url

    # ---- one connection ----------------------------------------------------------

    async def _connection(self, session: aiohttp.ClientSession, url: str) -> _Outcome:
        try:
            ws = await session.ws_connect(
                url, autoping=True, timeout=ClientWSTimeout(ws_close=self._close_wait_s), max_msg_size=1 << 20
            )
        except (aiohttp.ClientError, OSError) as exc:
            self.report.close_code = None
            self._lose(f"could not connect to {url}: {exc!r}")
            return _Outcome.CLOSED
        self.report.connections += 1
        link = _Link(ws, url=url)
        link.reader = asyncio.create_task(_read(ws, link.inbox, link.arrived), name=f"{self.name}-reader")
        outcome = _Outcome.CLOSED
        try:
            link.hello_sent_ms = now_ms()
            await self._send(link, Hello(token=self.player_token, client=CLIENT_NAME))
            outcome = await self._converse(link)
            return outcome
        finally:
            if outcome is _Outcome.DROPPED:
                link.reader.cancel()
                _cut(ws)
            else:
                # Closing wakes the reader, which then ends by itself; cancelling it first
                # would make aiohttp report 1006 instead of the server's close code.
                await _close(ws, self._close_wait_s)
                link.reader.cancel()
            await asyncio.gather(link.reader, return_exceptions=True)
            self.report.close_code = ws.close_code

    async def _converse(self, link: _Link) -> _Outcome:
        """The main loop of a connection: frames and send ticks, until an outcome."""
        while True:
            if not link.inbox:
                link.arrived.clear()
                await wait_event(link.arrived, self._until_tick(link))  # a tick is due
            while link.inbox:
                item = link.inbox.popleft()
                if item is _EOF:
                    return self._closed_by_server(link)
                assert isinstance(item, aiohttp.WSMessage)
                outcome = await self._on_frame(link, item.data)
                if outcome is not None:
                    return outcome
            if self._tick_due(link):
                self._next_tick = self._next_send_time()
                outcome = await self._on_tick(link)
                if outcome is not None:
                    return outcome

    def _closed_by_server(self, link: _Link) -> _Outcome:
        code = link.ws.close_code
        self.log.info("bot_connection_closed", close_code=code)
        if self.report.results is None:
            self._lose(f"connection closed before the results (close code {code})")
        return _Outcome.CLOSED

    # ---- ticks: typing, dropping, leaving ----------------------------------------

    def _ticking(self, link: _Link) -> bool:
        if self._start_at is None or not link.joined:
            return False
        racing = not (self.report.finished or self.report.results)
        pending_exit = racing and (
            (self.drop_after_ms is not None and not self.report.dropped)
            or (self.leave_after_ms is not None and not self.report.left)
        )
        return pending_exit or not self._typing_over

    def _until_tick(self, link: _Link) -> float | None:
        if not self._ticking(link):
            return None
        return max(0.0, self._next_tick - time.monotonic())

    def _tick_due(self, link: _Link) -> bool:
        return self._ticking(link) and time.monotonic() >= self._next_tick

    async def _on_tick(self, link: _Link) -> _Outcome | None:
        elapsed = self._race_elapsed_ms()
        racing = not self.report.finished  # a finished bot neither leaves nor drops
        if racing and not self.report.left and _reached(elapsed, self.leave_after_ms):
            self.report.left = True
            self._typing_over = True
            self.log.info("bot_leaving", elapsed_ms=elapsed)
            await self._send(link, Leave())
            return _Outcome.LEFT
        if racing and not self.report.dropped and _reached(elapsed, self.drop_after_ms):
            self.report.dropped = True
            self.log.info("bot_dropping", elapsed_ms=elapsed, seq=self._seq)
            return _Outcome.DROPPED
        await self._send_due_keys(link, elapsed)
        return None

    async def _send_due_keys(self, link: _Link, elapsed: int) -> None:
        plan = self._plan
        if plan is None or self._typing_over:
            return
        if self._ends_at is not None and self._server_now() >= self._ends_at:
            self._typing_over = True  # the time limit passed: the server would refuse more
            return
        due_end = self._next_key
        while due_end < len(plan) and plan[due_end][1] <= elapsed:
            due_end += 1
        while self._next_key < due_end:
            chunk = plan[self._next_key : min(due_end, self._next_key + self._max_keys)]
            self._seq += 1
            batch = Input(seq=self._seq, keys="".join(k for k, _ in chunk), times=[t for _, t in chunk])
            self._batches.append(batch)
            self._next_key += len(chunk)
            self.report.keys_sent = self._next_key
            await self._send_input(link, batch)
        if self._next_key == len(plan):
            self._typing_over = True

    async def _send_input(self, link: _Link, batch: Input) -> None:
        self._sent_at[batch.seq] = time.monotonic()
        self.report.inputs_sent += 1
        await self._send(link, batch)

    # ---- frames ------------------------------------------------------------------

    async def _on_frame(self, link: _Link, data: bytes | str) -> _Outcome | None:
        try:
            msg = decode_server(data)
        except ProtocolError as exc:
            self._fail(f"undecodable frame from the server: {exc}")
            return None
        match msg:
            case Ping(sent=sent):
                await self._send(link, Pong(echo=sent, time=now_ms()))
            case Pong():
                await self._on_pong(link, msg)
            case Welcome():
                await self._on_welcome(link, msg)
            case Joined():
                await self._on_joined(link, msg)
            case Countdown(start_at=start_at):
                self._set_start(start_at, None)
            case Start(start_at=start_at, ends_at=ends_at):
                self._set_start(start_at, ends_at)
            case Progress():
                self._on_progress(msg)
            case Finish():
                if msg.player_id == self.report.player_id:
                    self.report.finish = msg
                    self.report.finished = True
                    self._typing_over = True
            case Results():
                self._on_results(msg)
                return _Outcome.RESULTS
            case Error():
                self.report.errors.append(msg)
                self.log.warning("bot_server_error", code=msg.code, reason=msg.reason)
            case Redirect(url=url):
                self.report.redirected_to = url
                return _Outcome.REDIRECT
            case _:
                pass  # roster: nothing to do
        return None

    async def _on_welcome(self, link: _Link, msg: Welcome) -> None:
        self.report.player_id = msg.player_id
        self.log = self.log.bind(player_id=msg.player_id)
        self._max_keys = max(1, msg.max_keys)
        self._clock_sample(link.hello_sent_ms, msg.server_time, now_ms())
        await self._send(link, Join(ticket=self.ticket))
        # Clock sync: pings one after another (the next one goes out on each pong).
        link.pings_left = CLOCK_SYNC_PINGS - 1
        await self._send(link, Ping(sent=now_ms()))

    async def _on_pong(self, link: _Link, msg: Pong) -> None:
        self._clock_sample(msg.echo, msg.time, now_ms())
        if link.pings_left > 0:
            link.pings_left -= 1
            await self._send(link, Ping(sent=now_ms()))

    async def _on_joined(self, link: _Link, msg: Joined) -> None:
        first = not self.report.joined
        self.report.joined = True
        self._race_url = link.url
        if self._lost_since is not None:  # back after losing the node: carry on from its view
            self._lost_since = self._problem = None
            self.report.reconnects += 1
        if self._plan is None:
            if self._planner is not None:
                self._plan = self._planner(msg.passage)
            else:
                self._plan = plan_keystrokes(msg.passage, self.profile, self.rng)
            self.report.keys_planned = len(self._plan)
        self._cadence_every, self._cadence_offset = msg.input_every_ms, msg.input_offset_ms
        you = msg.you
        if not first and msg.state in _NOT_STARTED:
            # The server's race has not started (its node died before its checkpoint held the
            # start, so the adopter waits for its players again): the start and anything typed
            # for the old one go; type again from the server's view once it starts.
            self._next_key = self.report.keys_sent = 0
            self._batches.clear()
            self._sent_at.clear()
            self._seq = you.seq
            self._typing_over = False
            self._start_at = self._ends_at = None
        if msg.start_at is not None:
            self._set_start(msg.start_at, msg.ends_at)
        if not first:
            self.report.resume_state = you
        self.log.info("bot_joined", race_id=msg.race_id, state=msg.state, resumed=not first, seq=you.seq)
        if msg.state not in _LIVE_STATES or you.status != PlayerStatus.RACING.value:
            self._typing_over = True  # over for us: wait for the results
        else:
            # The server ignores seq <= you.seq, so resending the rest is exactly right.
            for batch in self._batches:
                if batch.seq > you.seq:
                    await self._send_input(link, batch)
        link.joined = True

    def _set_start(self, start_at: int, ends_at: int | None) -> None:
        if self._start_at is None:
            self._next_tick = time.monotonic()
        self._start_at = start_at
        if ends_at is not None:
            self._ends_at = ends_at

    def _on_progress(self, msg: Progress) -> None:
        me = self.report.player_id
        for row in msg.players:
            if len(row) < 5 or row[0] != me:
                continue
            seq = row[4]
            if isinstance(seq, int) and seq > self._progress_seq:
                self._progress_seq = seq
                sent = self._sent_at.get(seq)
                if sent is not None:
                    self.report.progress_latencies_ms.append((time.monotonic() - sent) * 1000)

    def _on_results(self, msg: Results) -> None:
        self.report.results = msg
        me = self.report.player_id
        self.report.my_row = next((r for r in msg.results if r.player_id == me), None)
        if self.report.my_row is not None:
            self.report.finished = self.report.my_row.status == PlayerStatus.FINISHED.value
        self._typing_over = True
        row = self.report.my_row
        self.log.info(
            "bot_results",
            race_id=msg.race_id,
            state=msg.state,
            place=row.place if row else None,
            wpm=row.wpm if row else None,
            flags=row.flags if row else None,
        )

    # ---- clock -------------------------------------------------------------------

    def _clock_sample(self, sent_ms: int, server_ms: int, received_ms: int) -> None:
        """Keep the offset of the fastest round trip: its midpoint is the best guess."""
        rtt = received_ms - sent_ms
        if rtt < 0 or rtt >= self._best_rtt_ms:
            return
        self._best_rtt_ms = rtt
        self._offset_ms = server_ms - (sent_ms + received_ms) / 2
        self.report.best_rtt_ms = float(rtt)
        self.report.clock_offset_ms = self._offset_ms

    def _server_now(self) -> float:
        return now_ms() + self._offset_ms

    def _next_send_time(self) -> float:
        """Monotonic time of the next send: the race's next input instant when it gives a
        cadence (room-mates then share frames), else one send interval from now."""
        every = self._cadence_every
        if every <= 0 or self._start_at is None:
            return time.monotonic() + self.send_interval_ms / 1000
        step = every * max(1, round(self.send_interval_ms / every))
        anchor = self._start_at + self._cadence_offset
        now = self._server_now()
        k = math.floor((now - anchor) / step) + 1
        return time.monotonic() + (anchor + k * step - now) / 1000

    def _race_elapsed_ms(self) -> int:
        assert self._start_at is not None
        return math.floor(self._server_now() - self._start_at)

    # ---- plumbing ----------------------------------------------------------------

    async def _send(self, link: _Link, msg: Message) -> None:
        frame = encode(msg, self.fmt)
        try:
            if isinstance(frame, bytes):
                await link.ws.send_bytes(frame)
            else:
                await link.ws.send_str(frame)
        except ConnectionError:
            pass  # the socket is going away; the reader reports it

    def _lose(self, reason: str) -> None:
        """A connection ended badly: a failure, unless the bot will try to rejoin (``_play``)."""
        if self.reconnect_s is None:
            self._fail(reason)
        else:
            self._problem = reason

    def _fail(self, reason: str) -> None:
        if self.report.failure is None:
            self.report.failure = reason
        self.log.warning("bot_failed", reason=reason)


def _reached(elapsed_ms: int, at_ms: int | None) -> bool:
    return at_ms is not None and elapsed_ms >= at_ms


async def _read(
    ws: aiohttp.ClientWebSocketResponse, inbox: collections.deque[object], arrived: asyncio.Event
) -> None:
    """Move data frames from the socket to the inbox; ``_EOF`` when the socket is done."""
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break  # ERROR: the socket is broken
            inbox.append(msg)
            arrived.set()
    finally:
        inbox.append(_EOF)
        arrived.set()


def _cut(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Drop the TCP connection without a WebSocket close frame, like a lost network.

    aiohttp has no public abort for client websockets; closing the underlying response
    closes the transport.
    """
    ws._response.close()


async def _close(ws: aiohttp.ClientWebSocketResponse, wait_s: float) -> None:
    """A normal close (1000), waiting at most about ``wait_s`` for the server's answer."""
    if ws.closed:
        return
    try:
        await within(ws.close(), wait_s)
    except (TimeoutError, ConnectionError, aiohttp.ClientError):
        _cut(ws)
