"""House bots: a few bots that wait in the matchmaking queues so a person alone gets a race at once.

Each bot is a guest of the lobby that queues for one race type in one region, exactly as the
page does. A bot withdraws its ticket after ``hold_s`` (set below the matchmaker's fallback
wait) and queues again, so bots never form a race among themselves: with at most
``max_players - 1`` of them per queue, only a person's ticket completes a race. When that
happens the matchmaker assigns the bot like anyone, and it races with a human-like typing
profile (``simulators.bot``), then queues again.

    python -m simulators.house --lobby http://127.0.0.1:8300 [--per-queue 3] [--hold 2.0]

A lobby that fails (down, 5xx, a dropped connection) is retried with capped, jittered
backoff per bot (``HouseSettings.backoff``), counted in ``HouseStats.errors``; the process
never exits for it. Runs until SIGINT/SIGTERM; loopback only (``simulators.guard``).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
import uvloop

from arena.backoff import Backoff, BackoffSettings
from arena.logs import configure_logging
from arena.settings import LogSettings
from arena.signals import until_signal
from arena.waits import wait_event
from simulators.bot import Bot, RaceGone
from simulators.guard import NotLoopbackError, require_loopback
from simulators.typing import draw_profile

log = structlog.get_logger(__name__)

RACE_TYPES = ("quick", "standard", "marathon")
# A bot whose node dies keeps trying to rejoin this long (the race's grace window, 15 s by
# default, plus adoption's few seconds): the node again, then the lobby's current assignment.
REJOIN_S = 20.0
LEAVE_TIMEOUT_S = 2.0  # on stop, withdrawing the tickets still queued takes at most this


@dataclass(frozen=True, slots=True)
class HouseSettings:
    lobby_url: str  # http://127.0.0.1:PORT (loopback only)
    # Bots per race type and region: at most max_players - 1, so only a person fills a race.
    per_queue: int = 4
    hold_s: float = 2.0  # withdraw a ticket after this: below the matchmaker's fallback wait (3 s)
    race_types: tuple[str, ...] = RACE_TYPES
    regions: tuple[str, ...] = ()  # empty: every region the lobby offers
    race_timeout_s: float = 1200.0  # a marathon at a slow bot's speed fits
    mean_wpm: float = 55.0
    seed: int | None = None
    # After a failed call: 1 s, doubling up to 30 s, less up to half at random; reset by a success.
    backoff: BackoffSettings = BackoffSettings(base_s=1.0, cap_s=30.0, jitter=0.5)

    def __post_init__(self) -> None:
        require_loopback(self.lobby_url)
        if self.per_queue < 1 or self.hold_s <= 0 or not self.race_types:
            raise ValueError("need per_queue >= 1, hold_s > 0 and at least one race type")


@dataclass
class HouseStats:
    """What the house bots did, for logs and tests."""

    queued: int = 0
    withdrawn: int = 0
    races: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class LobbyError(Exception):
    """The lobby refused or failed a call the bot cannot go on without."""


class HouseBot:
    """One bot, one queue (race type + region), forever: queue, hold, withdraw or race."""

    def __init__(
        self,
        settings: HouseSettings,
        http: aiohttp.ClientSession,
        name: str,
        race_type: str,
        region: str,
        rng: random.Random,
        stats: HouseStats,
    ) -> None:
        self.settings = settings
        self.http = http
        self.name = name
        self.race_type = race_type
        self.region = region
        self.rng = rng
        self.stats = stats
        self.token = ""
        self.ticket: str | None = None  # queued and not yet withdrawn or matched

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.backoff, random.Random(self.rng.random()))
        while not stop.is_set():
            try:
                if not self.token:
                    self.token = await self._guest()
                await self._one_turn(stop)
            except (LobbyError, aiohttp.ClientError, TimeoutError) as exc:
                kind = _error_kind(exc)
                self.stats.error(kind)
                delay = backoff.next_delay()
                _log_retry("house_bot_error", backoff.failures, bot=self.name, error=kind, retry_s=delay)
                await _sleep_unless(stop, delay)
            else:
                failures = backoff.reset()
                if failures:
                    log.info("house_bot_recovered", bot=self.name, failures=failures)

    async def _one_turn(self, stop: asyncio.Event) -> None:
        self.ticket = ticket = await self._queue()
        self.stats.queued += 1
        view = await self._call("GET", f"/v1/tickets/{ticket}?wait={self.settings.hold_s:g}")
        if view.get("state") == "queued":
            view = await self._withdraw(ticket)
        self.ticket = None
        state = view.get("state")
        if state == "matched":
            await self._race(view["assignment"], ticket)
        elif state == "cancelled":
            self.stats.withdrawn += 1
        # A short, jittered pause: the bots of one queue never all withdraw at once.
        await _sleep_unless(stop, 0.1 + 0.3 * self.rng.random())

    async def leave_queue(self) -> None:
        """On stop: withdraw the ticket still queued, so no race is placed for a bot that left."""
        ticket, self.ticket = self.ticket, None
        if ticket is None:
            return
        try:
            await self._withdraw(ticket)
        except (LobbyError, aiohttp.ClientError, TimeoutError):
            pass  # the lobby is going too: the ticket expires by itself

    async def _guest(self) -> str:
        body = await self._call("POST", "/v1/guests", {"name": self.name}, auth=False)
        return str(body["token"])

    async def _queue(self) -> str:
        try:
            body = await self._call(
                "POST", "/v1/tickets", {"race_type": self.race_type, "region": self.region}
            )
        except LobbyError as exc:
            # Our own ticket from before a restart: keep it.
            if exc.args and isinstance(exc.args[0], dict) and exc.args[0].get("error") == "already_queued":
                return str(exc.args[0]["ticket_id"])
            raise
        return str(body["ticket_id"])

    async def _withdraw(self, ticket: str) -> dict[str, Any]:
        try:
            return await self._call("DELETE", f"/v1/tickets/{ticket}")
        except LobbyError as exc:  # matched just before the cancel: go race
            if exc.args and isinstance(exc.args[0], dict) and exc.args[0].get("error") == "already_matched":
                return dict(exc.args[0]["ticket"])
            raise

    async def _race(self, assignment: dict[str, Any], ticket: str) -> None:
        profile = draw_profile(self.rng, mean_wpm=self.settings.mean_wpm)

        async def locate() -> str | None:  # where the race is now (its node died: the adopter)
            view = await self._call("GET", f"/v1/tickets/{ticket}")
            if view.get("state") == "node_lost":
                raise RaceGone(str(view.get("reason")))
            return str(view["assignment"]["url"]) if view.get("state") == "matched" else None

        bot = Bot(
            assignment["url"],
            assignment["player_token"],
            assignment["ticket"],
            profile,
            self.rng,
            name=self.name,
            session=self.http,
            reconnect_s=REJOIN_S,
            locate=locate,
        )
        report = await bot.run(self.settings.race_timeout_s)
        self.stats.races += 1
        log.info("house_bot_raced", bot=self.name, race_type=self.race_type, ok=report.results is not None)

    async def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, auth: bool = True
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        url = self.settings.lobby_url.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=self.settings.hold_s + 10)
        async with self.http.request(method, url, json=body, headers=headers, timeout=timeout) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:  # a proxy's or a restarting server's page, not the lobby's JSON
                data = None
            if resp.status >= 400 or not isinstance(data, dict):
                if resp.status == 401:
                    self.token = ""  # expired: a new guest next turn
                raise LobbyError(data if isinstance(data, dict) else {"error": f"http_{resp.status}"})
            return dict(data)


def _error_kind(exc: Exception) -> str:
    """A bounded label for the stats: the lobby's error code, or the exception's type."""
    if isinstance(exc, LobbyError) and exc.args and isinstance(exc.args[0], dict):
        code = exc.args[0].get("error")
        if isinstance(code, str) and code.isidentifier() and len(code) <= 40:
            return f"lobby_{code}"
    return type(exc).__name__


def _log_retry(event: str, failures: int, **fields: object) -> None:
    """Quiet retries: a warning at the 1st, 2nd, 4th, 8th... failure in a row, else debug."""
    say = log.warning if failures & (failures - 1) == 0 else log.debug
    say(event, failures=failures, **fields)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    await wait_event(stop, seconds)


async def lobby_regions(http: aiohttp.ClientSession, lobby_url: str) -> tuple[str, ...]:
    async with http.get(
        lobby_url.rstrip("/") + "/v1/regions", timeout=aiohttp.ClientTimeout(total=10)
    ) as resp:
        if resp.status != 200:
            raise LobbyError({"error": f"http_{resp.status}"})
        body = await resp.json()
    regions = body["regions"]
    accepting = tuple(r["id"] for r in regions if r.get("accepting"))
    return accepting or tuple(r["id"] for r in regions)  # no node yet: queue everywhere anyway


async def _regions_until_stop(
    settings: HouseSettings,
    http: aiohttp.ClientSession,
    stop: asyncio.Event,
    stats: HouseStats,
    rng: random.Random,
) -> tuple[str, ...] | None:
    """The lobby's regions, asked again with backoff while the lobby cannot say; None if stopped."""
    backoff = Backoff(settings.backoff, rng)
    while not stop.is_set():
        try:
            return await lobby_regions(http, settings.lobby_url)
        except (LobbyError, aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            kind = _error_kind(exc)
            stats.error(kind)
            delay = backoff.next_delay()
            _log_retry("house_regions_failed", backoff.failures, error=kind, retry_s=delay)
            await _sleep_unless(stop, delay)
    return None


async def run_house(
    settings: HouseSettings, stop: asyncio.Event, stats: HouseStats | None = None
) -> HouseStats:
    """Run the house bots until ``stop`` is set; every bot's task ends before this returns."""
    stats = stats or HouseStats()
    rng = random.Random(settings.seed)
    async with aiohttp.ClientSession() as http:
        retry_rng = random.Random(settings.seed)  # its own stream: the bots' seeds stay the same
        regions = settings.regions or await _regions_until_stop(settings, http, stop, stats, retry_rng)
        if regions is None:  # stopped before the lobby ever answered
            return stats
        bots = [
            HouseBot(settings, http, f"house-{race_type[0]}{region}-{i + 1}", race_type, region,
                     random.Random(rng.random()), stats)
            for region in regions
            for race_type in settings.race_types
            for i in range(settings.per_queue)
        ]  # fmt: skip
        log.info("house_bots_started", bots=len(bots), regions=list(regions))
        tasks = [asyncio.create_task(bot.run(stop), name=f"house-{bot.name}") for bot in bots]
        try:
            await stop.wait()
        finally:
            stop.set()
            # A racing bot finishes its race politely; it is bounded by race_timeout_s.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                async with asyncio.timeout(LEAVE_TIMEOUT_S):
                    await asyncio.gather(*(bot.leave_queue() for bot in bots))
            except TimeoutError:
                log.warning("house_bots_left_tickets", timeout_s=LEAVE_TIMEOUT_S)
    log.info("house_bots_stopped", queued=stats.queued, races=stats.races)
    return stats


def parse_args(argv: list[str] | None = None) -> HouseSettings:
    p = argparse.ArgumentParser(prog="python -m simulators.house", description=__doc__.split("\n")[0])
    p.add_argument("--lobby", required=True, help="lobby URL, loopback only (http://127.0.0.1:8300)")
    p.add_argument("--per-queue", type=int, default=4, help="bots per race type and region")
    p.add_argument("--hold", type=float, default=2.0, help="seconds a ticket waits before it is withdrawn")
    p.add_argument("--race-types", default=",".join(RACE_TYPES))
    p.add_argument("--regions", default="", help="comma-separated (default: every region the lobby offers)")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)
    try:
        return HouseSettings(
            lobby_url=args.lobby,
            per_queue=args.per_queue,
            hold_s=args.hold,
            race_types=tuple(t for t in args.race_types.split(",") if t),
            regions=tuple(r for r in args.regions.split(",") if r),
            seed=args.seed,
        )
    except (ValueError, NotLoopbackError) as exc:
        p.error(str(exc))
        raise  # unreachable: error() exits


async def _main(settings: HouseSettings) -> None:
    stop = asyncio.Event()
    runner = asyncio.create_task(run_house(settings, stop))
    await until_signal()
    stop.set()
    await runner


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    configure_logging(LogSettings())
    uvloop.run(_main(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
