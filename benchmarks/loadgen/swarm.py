"""Many simulated players in one process: the lean load generator of the node-capacity benchmark.

Every player is one ``Player`` (a raw asyncio Protocol, see ``wsclient``) that follows the
protocol: hello with its player token, join with its ticket, pong to every server ping, and,
from the race's ``start``, an ``input`` of 1-3 correct characters every 500 ms with jittered
key times (about 55 wpm, so fair-play checks stay quiet and a marathon passage lasts minutes).

One timer drives every player's sends: the 500 ms period is cut into slots and each player
sends in its own slot, so there is no task per player. A player follows its race's input
cadence (``joined``: ``input_every_ms``, ``input_offset_ms``) as the browser client does: from
the race's start it sends at the race's instants, give or take a clock error of up to
``clock_error_ms`` (clock sync and timer jitter of real clients). ``follow_cadence=False`` gives
every player a phase of its own instead, as clients that ignore the hint would (the costly case).

Latency, as defined for the benchmark: a player records the send time of each input ``seq``;
the first time any room-mate's socket receives a ``progress`` frame whose row for that player
has ``seq >= s``, the latency of ``s`` is that receive time minus its send time (one process,
one monotonic clock). A race's five sockets receive the same bytes for one tick, so the first
copy is decoded and credits every row but the receiver's own; the receiver's own row is
credited by the next copy that arrives on a room-mate's socket; later copies cost a bytes
comparison. That is exactly "first time any room-mate sees it", without decoding five times.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgpack

from benchmarks.loadgen.wsclient import WSClientProtocol, server_frame

__all__ = ["JoinFailed", "Player", "RaceGroup", "RaceSeats", "Swarm", "WindowStats"]

CLIENT_NAME = "typogram-loadgen/1"
SEND_INTERVAL_S = 0.5
SLOT_S = 0.01  # timer resolution: 50 slots of 10 ms per 500 ms period
# Characters per input: 1-3, mean 2.33 per 500 ms, about 56 wpm.
_BATCH_SIZES = (1, 2, 2, 3, 3, 3)
_FINISH_MARGIN = 8  # stop typing this many characters before the end: nobody ever finishes

# ``{"t": "progress", ...}`` packs as a fixmap header then these bytes. Checked from offset 1
# so another key count still matches; any other layout takes the (correct, slower) full decode.
_PROGRESS_T = b"\xa1t\xa8progress"

_pack = msgpack.Packer().pack
_unpackb = msgpack.unpackb
_monotonic = time.monotonic
_time_ns = time.time_ns
_random = random.random


class JoinFailed(Exception):
    """A player could not get into its race (refused upgrade, error, close)."""


@dataclass(frozen=True, slots=True)
class RaceSeats:
    """One race created through the admin endpoint: a seat per player."""

    race_id: str
    seats: list[tuple[str, str, str]]  # (player_id, player_token, ticket)


class RaceGroup:
    """The players of one race, and the dedup state of its progress frames."""

    __slots__ = (
        "by_id",
        "first_own_seq",
        "first_receiver",
        "frames",
        "last_frame",
        "last_payload",
        "race_id",
    )

    def __init__(self, race_id: str) -> None:
        self.race_id = race_id
        self.by_id: dict[str, Player] = {}
        self.last_payload = b""
        self.last_frame = b""  # the same payload as a whole frame: what one read usually holds
        self.first_receiver: Player | None = None  # decoded the last frame; its own row is pending
        self.first_own_seq = 0
        self.frames = 0  # progress frames received on all sockets of this race

    def on_progress(self, receiver: Player, payload: bytes) -> None:
        self.frames += 1
        if payload == self.last_payload:
            first = self.first_receiver
            if first is not None and first is not receiver:
                # A room-mate of the first receiver sees the first receiver's row.
                self.first_receiver = None
                if self.first_own_seq > first.acked:
                    first.credit(self.first_own_seq, _monotonic())
            return
        now = _monotonic()
        self.last_payload = payload
        self.last_frame = server_frame(payload)
        try:
            rows = _unpackb(payload)["players"]
        except Exception:
            receiver.swarm.protocol_errors["bad progress frame"] += 1
            return
        by_id = self.by_id
        own = 0
        for row in rows:
            player = by_id.get(row[0])
            if player is None:
                continue
            if player is receiver:
                own = row[4]
                continue
            seq = row[4]
            if seq > player.acked:
                player.credit(seq, now)
        self.first_receiver = receiver
        self.first_own_seq = own


class Player(WSClientProtocol):
    """One simulated player; all its state is plain attributes (slots) for cheap access."""

    __slots__ = (
        "acked",
        "cadence_every",
        "cadence_offset",
        "joined",
        "last_key_ms",
        "passage",
        "pending",
        "player_id",
        "race",
        "running",
        "seq",
        "slot",
        "start_at",
        "swarm",
        "ticket",
        "token",
        "typed",
    )

    def __init__(self, swarm: Swarm, race: RaceGroup, player_id: str, token: str, ticket: str) -> None:
        super().__init__(swarm.host, swarm.port, "/ws")
        self.swarm = swarm
        self.race = race
        self.player_id = player_id
        self.token = token
        self.ticket = ticket
        self.passage = ""
        self.typed = 0  # characters of the passage sent so far
        self.last_key_ms = 0  # time of the last key sent, ms since the race start
        self.start_at = 0  # server epoch ms; 0 until ``start`` (or ``countdown``)
        self.running = False  # got ``start``: typing
        self.seq = 0  # last input seq sent
        self.acked = 0  # highest own seq a room-mate has seen in a progress row
        self.pending: list[float] = []  # send times of seqs acked+1 .. seq
        self.joined: asyncio.Future[None] | None = None  # resolved by ``joined`` during the ramp
        self.slot = 0  # the swarm's send slot
        self.cadence_every = 0  # the race's input cadence from ``joined`` (0: none)
        self.cadence_offset = 0
        race.by_id[player_id] = self

    # ---- hot path --------------------------------------------------------------------

    def send_input(self, now: float) -> None:
        """Type 1-3 correct characters with plausible, jittered key times."""
        k = _BATCH_SIZES[int(_random() * 6)]
        pos = self.typed
        if pos + k > len(self.passage) - _FINISH_MARGIN:
            self.swarm.exhausted += 1  # passage too short for the run: visible in the stats
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        elapsed = _time_ns() // 1_000_000 - self.start_at
        low = self.last_key_ms
        span = elapsed - low
        if span < k:
            span = k
        # k keys at random instants in (low, low + span]: sorted, never before the last key.
        if k == 1:
            times = [low + 1 + int(_random() * span)]
        else:
            times = sorted([low + 1 + int(_random() * span) for _ in range(k)])
        self.last_key_ms = times[-1]
        self.typed = pos + k
        seq = self.seq = self.seq + 1
        self.send_binary(
            _pack({"t": "input", "seq": seq, "keys": self.passage[pos : pos + k], "times": times})
        )
        self.pending.append(now)
        self.swarm.inputs_sent += 1

    def credit(self, seq: int, now: float) -> None:
        """A room-mate saw our row with ``seq``: every pending seq up to it is delivered."""
        pending = self.pending
        k = seq - self.acked
        self.acked = seq
        if k > len(pending):
            k = len(pending)
        swarm = self.swarm
        low, high = swarm.window_start, swarm.window_end
        for i in range(k):
            sent = pending[i]
            if low <= sent < high:
                swarm.latencies.append(now - sent)
        del pending[:k]

    def data_received(self, data: bytes) -> None:
        # The hottest path: a read holding exactly the frame a room-mate already received (a
        # race's sockets all get the same bytes). Nothing to decode: at most one row to credit.
        race = self.race
        if data == race.last_frame and not self._buf:
            race.frames += 1
            first = race.first_receiver
            if first is not None and first is not self:
                race.first_receiver = None
                if race.first_own_seq > first.acked:
                    first.credit(race.first_own_seq, _monotonic())
            return
        WSClientProtocol.data_received(self, data)

    def on_binary(self, payload: bytes) -> None:
        if payload.startswith(_PROGRESS_T, 1):
            self.race.on_progress(self, payload)
            return
        self._on_message(payload)

    # ---- everything else: rare, decoded in full ---------------------------------------

    def _on_message(self, payload: bytes) -> None:
        swarm = self.swarm
        try:
            msg = _unpackb(payload)
            kind = msg["t"]
        except Exception:
            swarm.protocol_errors["undecodable frame"] += 1
            return
        if kind == "ping":
            self.send_binary(_pack({"t": "pong", "echo": msg["sent"], "time": _time_ns() // 1_000_000}))
            swarm.pongs_sent += 1
        elif kind == "progress":  # a layout the fast path did not recognise
            swarm.protocol_errors["progress off the fast path"] += 1
            self.race.on_progress(self, payload)
        elif kind == "welcome":
            self.send_binary(_pack({"t": "join", "ticket": self.ticket}))
        elif kind == "joined":
            self.passage = msg["passage"]
            self.cadence_every = int(msg.get("input_every_ms") or 0)
            self.cadence_offset = int(msg.get("input_offset_ms") or 0)
            if msg.get("start_at"):
                swarm.align(self, msg["start_at"])
            if self.joined is not None and not self.joined.done():
                self.joined.set_result(None)
        elif kind == "countdown":
            self.start_at = msg["start_at"]
            swarm.align(self, self.start_at)
        elif kind == "start":
            self.start_at = msg["start_at"]
            if not self.running:
                self.running = True
                swarm.started += 1
        elif kind == "error":
            swarm.errors[str(msg.get("code"))] += 1
            self._join_failed(f"error {msg.get('code')}: {msg.get('reason')}")
        elif kind in ("results", "finish"):
            swarm.race_events[kind] += 1  # nobody should finish during a run: reported
            if kind == "results":
                self.running = False
        elif kind == "redirect":
            swarm.errors["redirect"] += 1
            self._join_failed("redirected")
        # roster (joins, drops) needs no answer

    def _join_failed(self, reason: str) -> None:
        if self.joined is not None and not self.joined.done():
            self.joined.set_exception(JoinFailed(reason))

    # ---- connection life -------------------------------------------------------------

    def on_open(self) -> None:
        self.send_binary(_pack({"t": "hello", "token": self.token, "client": CLIENT_NAME}))

    def on_failed(self, reason: str) -> None:
        self.swarm.protocol_errors[reason.split(":")[0]] += 1
        self._join_failed(reason)

    def on_closed(self, exc: Exception | None) -> None:
        self.running = False
        if not self.swarm.closing:
            self.swarm.closes[str(self.close_code or ("error" if exc else "eof"))] += 1
        self._join_failed(f"closed ({self.close_code})")


@dataclass(slots=True)
class WindowStats:
    """What one measurement window saw, from the generator's side."""

    seconds: float
    players: int
    started: int
    inputs_sent: int
    progress_frames: int
    pongs_sent: int
    latencies_ms: list[float]  # sorted
    lost: int  # inputs sent in the window that no room-mate saw by the end of the drain
    lag_ms: list[float]  # sorted: timer lateness, the generator's event-loop lag
    errors: dict[str, int]
    closes: dict[str, int]
    protocol_errors: dict[str, int]
    race_events: dict[str, int]
    exhausted: int

    def percentile(self, p: float) -> float:
        return percentile(self.latencies_ms, p)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values (NaN when empty)."""
    if not values:
        return float("nan")
    rank = max(0, min(len(values) - 1, math.ceil(p / 100 * len(values)) - 1))
    return values[rank]


RaceFactory = Callable[[int], Awaitable[RaceSeats]]


class Swarm:
    """All players of one process, the send timer, and the counters of a measurement window."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        slot_s: float = SLOT_S,
        interval_s: float = SEND_INTERVAL_S,
        seed: int | None = None,
        follow_cadence: bool = True,
        clock_error_ms: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.players: list[Player] = []
        self.races: list[RaceGroup] = []
        self._n_slots = max(1, round(interval_s / slot_s))
        self._slot_s = interval_s / self._n_slots
        self._slots: list[list[Player]] = [[] for _ in range(self._n_slots)]
        self._slot = 0
        self._deck: list[int] = []
        self._rng = random.Random(seed)
        self.follow_cadence = follow_cadence
        self.clock_error_ms = clock_error_ms
        # Slot j % n fires at _origin + j * slot_s: an instant maps to its slot before the timer runs.
        self._origin = time.monotonic()
        self._epoch_minus_mono = time.time() - self._origin
        self._interval_ms = round(interval_s * 1000)
        self._next_at = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.closing = False
        # Counters: cumulative; a window reports differences.
        self.inputs_sent = 0
        self.pongs_sent = 0
        self.started = 0
        self.exhausted = 0
        self.errors: Counter[str] = Counter()
        self.closes: Counter[str] = Counter()
        self.protocol_errors: Counter[str] = Counter()
        self.race_events: Counter[str] = Counter()
        self.connect_failures: Counter[str] = Counter()
        # The measurement window (monotonic seconds); sends inside it are measured.
        self.window_start = float("inf")
        self.window_end = float("inf")
        self.latencies = array("d")
        self.lags = array("d")

    # ---- ramp ------------------------------------------------------------------------

    async def add_races(
        self, n_races: int, make_race: RaceFactory, *, concurrency: int, join_timeout_s: float
    ) -> None:
        """Create ``n_races`` races and connect their players, ``concurrency`` races at a time."""
        next_index = 0

        async def worker() -> None:
            nonlocal next_index
            while next_index < n_races:
                index = next_index
                next_index += 1
                seats = await make_race(index)
                group = self.new_group(seats.race_id)
                self.races.append(group)
                players = [Player(self, group, pid, token, ticket) for pid, token, ticket in seats.seats]
                for player in players:
                    self.players.append(player)
                    player.slot = self._next_slot()
                    self._slots[player.slot].append(player)
                await asyncio.gather(*(self._connect(p, join_timeout_s) for p in players))

        await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, n_races)))))

    def new_group(self, race_id: str) -> RaceGroup:
        """The group of a new race's players (a subclass may time its frames)."""
        return RaceGroup(race_id)

    def _next_slot(self) -> int:
        """Slots dealt from a shuffled deck: every slot gets the same number of players, and
        room-mates get unrelated phases (as real players have), so a race's inputs do not
        bunch into one tick and its progress frames are as many as real play makes."""
        if not self._deck:
            self._deck = list(range(self._n_slots))
            self._rng.shuffle(self._deck)
        return self._deck.pop()

    def align(self, player: Player, start_at: int) -> None:
        """Move the player's sends onto its race's instants (server epoch ms), when it has some."""
        every = player.cadence_every
        if not self.follow_cadence or every <= 0 or self._interval_ms % every:
            return  # no hint, or one this interval cannot follow: keep the dealt phase
        error_s = (self._rng.random() * 2 - 1) * self.clock_error_ms / 1000
        instant = (start_at + player.cadence_offset) / 1000 - self._epoch_minus_mono + error_s
        slot = math.ceil((instant - self._origin) / self._slot_s) % self._n_slots
        if slot != player.slot:
            self._slots[player.slot].remove(player)
            player.slot = slot
            self._slots[slot].append(player)

    async def _connect(self, player: Player, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        player.joined = loop.create_future()
        try:
            async with asyncio.timeout(timeout_s):
                await loop.create_connection(lambda: player, self.host, self.port)
                await player.joined
        except (OSError, TimeoutError, JoinFailed) as exc:
            self.connect_failures[
                type(exc).__name__ + (f": {exc}" if isinstance(exc, JoinFailed) else "")
            ] += 1
            player.abort()
        finally:
            player.joined = None

    async def wait_started(self, timeout_s: float) -> bool:
        """Wait until every connected player got ``start``; False at the deadline."""
        deadline = time.monotonic() + timeout_s
        while self.started < len(self.players) - sum(self.connect_failures.values()):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    # ---- the send timer --------------------------------------------------------------

    def start_timer(self) -> None:
        j = math.floor((time.monotonic() - self._origin) / self._slot_s) + 1
        self._slot = j % self._n_slots
        self._next_at = self._origin + j * self._slot_s
        self._timer = asyncio.get_running_loop().call_later(self._slot_s, self._on_timer)

    def _on_timer(self) -> None:
        now = _monotonic()
        lag = now - self._next_at
        if lag >= 0 and self.window_start <= now < self.window_end:  # not on an early wake-up
            self.lags.append(lag)
        # Every slot that is due, late ones included: a slow loop sends late (seen as lag and
        # latency) but never sends less. Beyond a whole period behind, the rest is skipped.
        due = 0
        while self._next_at <= now and due < self._n_slots:
            for player in self._slots[self._slot]:
                if player.running:
                    player.send_input(_monotonic())
            self._slot = (self._slot + 1) % self._n_slots
            self._next_at += self._slot_s
            due += 1
        now = _monotonic()
        period = self._slot_s * self._n_slots
        while self._next_at < now - period:  # whole periods skipped: each slot keeps its instant
            self._next_at += period
        self._timer = asyncio.get_running_loop().call_later(max(0.0, self._next_at - now), self._on_timer)

    def stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # ---- measurement -----------------------------------------------------------------

    async def measure(
        self, seconds: float, drain_s: float, at_end: Callable[[], None] | None = None
    ) -> WindowStats:
        """Measure sends during ``seconds``, then keep going ``drain_s`` so their echoes arrive.

        ``at_end`` runs right at the window's end (to read CPU counters on the same boundary).
        """
        inputs0, pongs0, exhausted0 = self.inputs_sent, self.pongs_sent, self.exhausted
        frames0 = sum(r.frames for r in self.races)
        errors0, closes0 = Counter(self.errors), Counter(self.closes)
        protocol0, events0 = Counter(self.protocol_errors), Counter(self.race_events)
        self.latencies = array("d")
        self.lags = array("d")
        start = time.monotonic()
        self.window_start, self.window_end = start, start + seconds
        await asyncio.sleep(seconds)
        inputs = self.inputs_sent - inputs0
        pongs = self.pongs_sent - pongs0
        frames = sum(r.frames for r in self.races) - frames0
        elapsed = time.monotonic() - start
        if at_end is not None:
            at_end()
        await asyncio.sleep(drain_s)
        low, high = self.window_start, self.window_end
        lost = sum(1 for p in self.players for sent in p.pending if low <= sent < high)
        self.window_start = self.window_end = float("inf")
        return WindowStats(
            seconds=elapsed,
            players=len(self.players),
            started=self.started,
            inputs_sent=inputs,
            progress_frames=frames,
            pongs_sent=pongs,
            latencies_ms=sorted(x * 1000 for x in self.latencies),
            lost=lost,
            lag_ms=sorted(x * 1000 for x in self.lags),
            errors=dict(self.errors - errors0),
            closes=dict(self.closes - closes0),
            protocol_errors=dict(self.protocol_errors - protocol0),
            race_events=dict(self.race_events - events0),
            exhausted=self.exhausted - exhausted0,
        )

    # ---- teardown --------------------------------------------------------------------

    def close_all(self) -> None:
        """Drop every connection at once (no close handshake: the node is torn down next)."""
        self.closing = True
        self.stop_timer()
        for player in self.players:
            player.abort()
