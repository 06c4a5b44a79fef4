"""One swarm player, end to end: guest token, ticket, long-poll, WebSocket race, result.

The race itself is ``simulators.bot.Bot`` (human-like typing over the real protocol);
``SwarmBot`` only adds timestamps and what the latency merge needs: the send time of every
input seq, and when this bot first saw each room-mate's seq rise in a ``progress`` frame.
All times are ``time.monotonic()`` seconds since the run's ``t0`` (one clock machine-wide).

Failures that may pass are retried with capped, jittered backoff (``RETRY``), each one counted
in the player's errors: a lobby call that got a 5xx or lost its connection (``LOBBY_ATTEMPTS``
per call), and the rating seed when Redis drops (``SEED_ATTEMPTS``; then the player queues
unseeded). Whatever happens to one player ends up in its record, never in its worker.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from arena import keys
from arena.backoff import Backoff, BackoffSettings
from arena.protocol import BACKSPACE, Input, Joined, Progress
from simulators.bot import Bot, BotReport, RaceGone, _Link, _Outcome
from simulators.guard import require_loopback
from simulators.swarm.plan import Arrival
from simulators.swarm.scenario import TypingMix
from simulators.swarm.stats import Observation
from simulators.typing import draw_profile

__all__ = ["RETRY", "LobbyError", "PlayerRecord", "SwarmBot", "Tally", "run_player"]

log = structlog.get_logger(__name__)

LONG_POLL_S = 10  # per request; the lobby cuts longer waits anyway
# A player whose node dies keeps trying to rejoin this long (the race's grace window, 15 s by
# default, plus adoption's few seconds): the node again, then the lobby's current assignment.
REJOIN_S = 20.0
EXPECTED_SERVER_ERRORS = frozenset({"race_over"})  # an input racing the time limit: benign
# Between retries: 0.25 s, doubling up to 4 s, less up to half at random (players do not retry in step).
RETRY = BackoffSettings(base_s=0.25, cap_s=4.0, jitter=0.5)
LOBBY_ATTEMPTS = 5  # tries of one lobby call that failed with a 5xx or a lost connection
SEED_ATTEMPTS = 4  # tries of the rating seed while Redis is unreachable


class LobbyError(Exception):
    def __init__(self, status: int, code: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"lobby answered {status} {code}")
        self.status = status
        self.code = code
        self.body = body or {}


@dataclass
class Tally:
    """What every bot of one worker adds to; shipped to the parent at the end."""

    t0: float
    inputs_per_s: dict[int, int] = field(default_factory=dict)
    frames_per_s: dict[int, int] = field(default_factory=dict)
    # player -> send time by seq - 1; None for an input that did not move the player's position:
    # the node broadcasts only position changes, so such an input has no broadcast of its own.
    sends: dict[str, list[float | None]] = field(default_factory=dict)
    observations: list[Observation] = field(default_factory=list)

    def second(self, now: float) -> int:
        return max(0, int(now - self.t0))

    def count(self, counts: dict[int, int], now: float) -> None:
        second = self.second(now)
        counts[second] = counts.get(second, 0) + 1


@dataclass
class PlayerRecord:
    index: int
    race_type: str
    region: str
    rating: float
    worker: int
    # Seconds since t0; None when the step never happened.
    arrived: float | None = None
    ticket_sent: float | None = None
    matched: float | None = None
    connect_started: float | None = None
    joined: float | None = None
    started: float | None = None
    results: float | None = None
    closed: float | None = None
    player_id: str | None = None
    race_id: str | None = None
    node_id: str | None = None
    finished: bool = False
    wpm: float | None = None
    inputs_sent: int = 0
    seeded: bool = False  # its rating was seeded into Redis before it queued (the report's spread)
    errors: list[str] = field(default_factory=list)  # kinds, e.g. "lobby_429_rate_limited"

    @property
    def time_to_match_s(self) -> float | None:
        if self.matched is None or self.ticket_sent is None:
            return None
        return self.matched - self.ticket_sent

    @property
    def join_latency_ms(self) -> float | None:
        if self.joined is None or self.connect_started is None:
            return None
        return (self.joined - self.connect_started) * 1000.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SwarmBot(Bot):
    """A ``Bot`` that records when it connected, joined and started, every input's send
    time, and every rise of a room-mate's seq it sees."""

    def __init__(self, *args: Any, record: PlayerRecord, tally: Tally, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.record = record
        self.tally = tally
        self._seen: dict[str, int] = {}  # room-mate -> highest seq seen
        self._passage = ""
        self._typed: list[str] = []  # the server's replay, mirrored: what the position is
        self._position = 0

    def _since_t0(self) -> float:
        return time.monotonic() - self.tally.t0

    async def _connection(self, session: aiohttp.ClientSession, url: str) -> _Outcome:
        if self.record.connect_started is None:
            self.record.connect_started = self._since_t0()
        try:
            return await super()._connection(session, url)
        finally:
            self.record.closed = self._since_t0()

    async def _on_joined(self, link: _Link, msg: Joined) -> None:
        if self.record.joined is None:
            self.record.joined = self._since_t0()
            self.record.race_id = msg.race_id
            self.tally.sends[self.report.player_id] = []
            self._passage = msg.passage
        await super()._on_joined(link, msg)

    def _set_start(self, start_at: int, ends_at: int | None) -> None:
        if self.record.started is None:
            self.record.started = self._since_t0()
        super()._set_start(start_at, ends_at)

    async def _send_input(self, link: _Link, batch: Input) -> None:
        await super()._send_input(link, batch)
        sent = self._sent_at[batch.seq]
        sends = self.tally.sends.setdefault(self.report.player_id, [])
        if batch.seq == len(sends) + 1:  # a resend after a reconnect keeps its first time
            sends.append(sent if self._moves(batch.keys) else None)
        self.tally.count(self.tally.inputs_per_s, sent)

    def _moves(self, keys: str) -> bool:
        """Replay ``keys`` like the server (append, backspace deletes; the position is the
        typed prefix matching the passage) and say whether the position changed."""
        typed = self._typed
        for key in keys:
            if key == BACKSPACE:
                if typed:
                    typed.pop()
            else:
                typed.append(key)
        before = self._position
        position = 0
        passage = self._passage
        for got, want in zip(typed, passage, strict=False):
            if got != want:
                break
            position += 1
        self._position = position
        return position != before

    def _on_progress(self, msg: Progress) -> None:
        super()._on_progress(msg)
        now = time.monotonic()
        self.tally.count(self.tally.frames_per_s, now)
        me = self.report.player_id
        seen = self._seen
        for row in msg.players:
            if len(row) < 5 or row[0] == me:
                continue
            player, seq = row[0], row[4]
            if not (isinstance(player, str) and isinstance(seq, int)):
                continue
            before = seen.get(player, 0)
            if seq > before:
                seen[player] = seq
                self.tally.observations.append((player, before, seq, now))


async def run_player(
    arrival: Arrival,
    *,
    worker: int,
    lobby_url: str,
    http: aiohttp.ClientSession,
    typing: TypingMix,
    tally: Tally,
    stop_at: float,
    redis: aioredis.Redis | None = None,
    retry: BackoffSettings = RETRY,
) -> PlayerRecord:
    """Play one arrival through the whole path; never past ``stop_at`` (monotonic). Never
    raises: every failure is one of the record's errors."""
    record = PlayerRecord(arrival.index, arrival.race_type, arrival.region, arrival.rating, worker)
    record.arrived = time.monotonic() - tally.t0
    lobby = require_loopback(lobby_url).rstrip("/")
    ticket_id: str | None = None
    token = ""
    phase = "guest"
    # Its own stream, so retries leave the bot's typing (seeded by arrival.seed) as planned.
    backoff = Backoff(retry, random.Random(arrival.seed + 1))

    async def call(method: str, url: str, *, token: str | None = None, body: Any = None) -> dict[str, Any]:
        return await _call_retrying(http, method, url, record, backoff, token=token, body=body)

    try:
        async with asyncio.timeout(max(0.0, stop_at - time.monotonic())):
            guest = await call("POST", f"{lobby}/v1/guests", body={"name": f"swarm-{arrival.index}"})
            token = guest["token"]
            record.player_id = guest["player_id"]
            if redis is not None:
                await _seed_with_retries(redis, guest["player_id"], arrival.rating, record, backoff)
            phase = "ticket"
            record.ticket_sent = time.monotonic() - tally.t0
            body = {"race_type": arrival.race_type, "region": arrival.region}
            try:
                view = await call("POST", f"{lobby}/v1/tickets", token=token, body=body)
            except LobbyError as exc:
                # A retry after a lost answer: the first try did queue the ticket.
                if exc.code != "already_queued" or "ticket_id" not in exc.body:
                    raise
                view = {"ticket_id": exc.body["ticket_id"], "state": "queued"}
            ticket_id = view["ticket_id"]
            phase = "match"
            while view["state"] == "queued":
                view = await call("GET", f"{lobby}/v1/tickets/{ticket_id}?wait={LONG_POLL_S}", token=token)
            if view["state"] != "matched":
                record.errors.append(f"ticket_{view['state']}")
                return record
            record.matched = time.monotonic() - tally.t0
            ticket_id = None  # matched: nothing to cancel
            assignment = view["assignment"]
            record.node_id = assignment["node_id"]
            phase = "race"
            rng = random.Random(arrival.seed)
            matched_ticket = view["ticket_id"]

            async def locate() -> str | None:  # where the race is now (its node died: the adopter)
                now = await _call(http, "GET", f"{lobby}/v1/tickets/{matched_ticket}", token=token)
                if now.get("state") == "node_lost":
                    raise RaceGone(str(now.get("reason")))
                return str(now["assignment"]["url"]) if now.get("state") == "matched" else None

            bot = SwarmBot(
                assignment["url"],
                assignment["player_token"],
                assignment["ticket"],
                draw_profile(rng, mean_wpm=typing.mean_wpm, sd_wpm=typing.sd_wpm),
                rng,
                send_interval_ms=typing.send_interval_ms,
                name=f"swarm-{arrival.index}",
                session=http,
                record=record,
                tally=tally,
                reconnect_s=REJOIN_S,
                locate=locate,
            )
            report = await bot.run(max(1.0, stop_at - time.monotonic()))
            _absorb(record, report)
    except TimeoutError:
        record.errors.append(f"deadline_in_{phase}")
    except LobbyError as exc:
        record.errors.append(f"lobby_{exc.status}_{exc.code}")
    except (aiohttp.ClientError, OSError) as exc:
        record.errors.append(f"lobby_unreachable_{type(exc).__name__}")
    except Exception as exc:  # a bug or a surprise: this player's error, not its worker's end
        log.exception("swarm_player_crashed", index=arrival.index, phase=phase)
        record.errors.append(f"crashed_in_{phase}_{type(exc).__name__}")
    finally:
        if ticket_id is not None and token:
            await _cancel(http, lobby, ticket_id, token)
    return record


async def _call_retrying(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    record: PlayerRecord,
    backoff: Backoff,
    *,
    token: str | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """``_call``, tried again after a 5xx or a lost connection (each failure one of the record's
    errors) up to ``LOBBY_ATTEMPTS`` times; the last failure is raised."""
    for attempt in range(1, LOBBY_ATTEMPTS + 1):
        try:
            data = await _call(http, method, url, token=token, body=body)
        except LobbyError as exc:
            if exc.status < 500 or attempt == LOBBY_ATTEMPTS:
                raise
            kind = f"lobby_{exc.status}_{exc.code}"
        except (aiohttp.ClientError, OSError) as exc:
            if attempt == LOBBY_ATTEMPTS:
                raise
            kind = f"lobby_unreachable_{type(exc).__name__}"
        else:
            backoff.reset()
            return data
        record.errors.append(kind)
        delay = backoff.next_delay()
        log.debug(
            "swarm_lobby_retry", index=record.index, error=kind, attempt=attempt, retry_s=round(delay, 3)
        )
        await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def _seed_with_retries(
    redis: aioredis.Redis, player_id: str, rating: float, record: PlayerRecord, backoff: Backoff
) -> None:
    """Seed the rating, tried again while Redis is unreachable (each failure one of the record's
    errors); after ``SEED_ATTEMPTS`` the player goes on unseeded (at the default rating)."""
    for attempt in range(1, SEED_ATTEMPTS + 1):
        try:
            await _seed_rating(redis, player_id, rating)
        except (RedisError, OSError) as exc:
            record.errors.append(f"redis_seed_{type(exc).__name__}")
            if attempt == SEED_ATTEMPTS:
                log.debug("swarm_seed_given_up", index=record.index, error=repr(exc))
                return
            delay = backoff.next_delay()
            log.debug("swarm_seed_retry", index=record.index, error=repr(exc), retry_s=round(delay, 3))
            await asyncio.sleep(delay)
        else:
            backoff.reset()
            record.seeded = True
            return


def _absorb(record: PlayerRecord, report: BotReport) -> None:
    record.inputs_sent = report.inputs_sent
    if report.results is not None:
        record.results = record.closed
    row = report.my_row
    if row is not None:
        record.finished = row.status == "finished"
        record.wpm = row.wpm
    for error in report.errors:
        record.errors.append(
            f"server_{error.code}" + ("_expected" if error.code in EXPECTED_SERVER_ERRORS else "")
        )
    if report.failure is not None:
        record.errors.append(_failure_kind(report.failure, report.close_code))


def _failure_kind(failure: str, close_code: int | None) -> str:
    """A bot's free-text failure as a small set of kinds (the report counts kinds)."""
    if failure.startswith("timed out"):
        return "race_timeout"
    if failure.startswith("could not connect"):
        return "ws_connect_failed"
    if failure.startswith("connection closed"):
        return f"ws_closed_{close_code}"
    if failure.startswith("redirected"):
        return "redirect_loop"
    return "bot_failure"


async def _call(
    http: aiohttp.ClientSession, method: str, url: str, *, token: str | None = None, body: Any = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as resp:
        try:
            data: dict[str, Any] = await resp.json(content_type=None)
        except ValueError:
            raise LobbyError(resp.status, "not_json") from None
        if resp.status >= 400:
            raise LobbyError(resp.status, str(data.get("error", "unknown")), data)
        return data


async def _cancel(http: aiohttp.ClientSession, lobby: str, ticket_id: str, token: str) -> None:
    """Best effort, so a stopped run leaves no queued ticket for the matchmaker to place."""
    try:
        async with asyncio.timeout(2.0):
            await _call(http, "DELETE", f"{lobby}/v1/tickets/{ticket_id}", token=token)
    except (TimeoutError, LobbyError, aiohttp.ClientError, OSError):
        pass


async def _seed_rating(redis: aioredis.Redis, player_id: str, rating: float) -> None:
    """The scenario's rating spread: a guest starts as a rated player (Glicko-2 fields of
    ``arena.rating``), so the matchmaker's windows see a real spread of skill."""
    await redis.hset(
        keys.player_rating(player_id),
        mapping={"r": rating, "rd": 80.0, "vol": 0.06, "v": 0, "races": 0},
    )
