"""Many bots at once: create races through a node's admin endpoint, race, summarise.

``run_bots`` is the reusable part; ``python -m simulators`` (see ``__main__``) wraps it.
Load goes to loopback only (``simulators.guard``).

A node that refuses a race for now (503 ``draining``, another 5xx, connection refused) is asked
again after a capped, jittered backoff, the next node first when there are several; each
refusal is counted in the summary (``placement_errors``). Races already created race
meanwhile. Bots whose race could not be created before the deadline fail the run; a refusal
that cannot pass (bad token, bad request) ends it at once (``AdminError``).
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from arena.backoff import Backoff, BackoffSettings
from arena.codec import WireFormat
from arena.protocol import ErrorCode, PlayerStatus
from simulators.admin import AdminError, CreatedRace, create_race
from simulators.bot import Bot, BotReport
from simulators.guard import require_loopback
from simulators.typing import TypingProfile, draw_profile

__all__ = [
    "EXPECTED_ERROR_CODES",
    "PLACEMENT_BACKOFF",
    "RunSummary",
    "format_summary",
    "percentile",
    "run_bots",
    "summarise",
]

log = structlog.get_logger(__name__)

MAX_SEATS = 5
# A bot whose node dies keeps trying to rejoin this long (the grace window, 15 s by default,
# plus the adoption's few seconds): its node again, then the other nodes races were placed on.
REJOIN_S = 20.0
# An input crossing the race's time limit is a benign race with the server's clock.
EXPECTED_ERROR_CODES = frozenset({ErrorCode.RACE_OVER.value})
# Between refused race creations: 0.5 s, then doubling up to 10 s, less up to half at random.
PLACEMENT_BACKOFF = BackoffSettings(base_s=0.5, cap_s=10.0, jitter=0.5)


@dataclass
class RunSummary:
    races: int
    bots: int
    finished: int
    dnf: int
    flagged: int
    wpm_mean: float | None
    wpm_min: float | None
    wpm_max: float | None
    accuracy_mean: float | None
    errors_by_code: dict[str, int]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    failures: dict[str, str]  # bot name -> what went wrong locally
    unexpected: list[str]  # names of bots that failed or got an unexpected error
    duration_s: float
    reports: list[BotReport] = field(default_factory=list, repr=False)
    # Refused race creations by kind ("503_draining", "connect_ClientConnectorError"), retried.
    placement_errors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.unexpected

    def to_dict(self) -> dict[str, Any]:
        """Everything but the per-bot reports, for ``--json``."""
        return {
            "races": self.races,
            "bots": self.bots,
            "finished": self.finished,
            "dnf": self.dnf,
            "flagged": self.flagged,
            "wpm": {"mean": self.wpm_mean, "min": self.wpm_min, "max": self.wpm_max},
            "accuracy_mean": self.accuracy_mean,
            "errors_by_code": self.errors_by_code,
            "progress_latency_ms": {
                "p50": self.latency_p50_ms,
                "p95": self.latency_p95_ms,
                "p99": self.latency_p99_ms,
            },
            "placement_errors": self.placement_errors,
            "failures": self.failures,
            "unexpected": self.unexpected,
            "duration_s": self.duration_s,
            "ok": self.ok,
        }


async def run_bots(
    node_admin_url: str | Sequence[str],
    admin_token: str,
    n_bots: int,
    race_type: str,
    rng: random.Random,
    timeout_s: float,
    *,
    seats_per_race: int = MAX_SEATS,
    custom_text: str | None = None,
    mean_wpm: float = 60.0,
    sd_wpm: float = 22.0,
    send_interval_ms: int = 200,
    fmt: WireFormat = WireFormat.MSGPACK,
    backoff: BackoffSettings = PLACEMENT_BACKOFF,
) -> RunSummary:
    """Create ceil(n_bots / seats_per_race) races, each group's bots racing as soon as its race
    exists, and summarise. ``node_admin_url`` (a node's admin listener, ``ARENA_NODE_ADMIN_*``)
    may name several nodes: a refusal moves on to the next. Refusals for now are retried
    (``backoff``) until ``timeout_s``.

    Raises ``NotLoopbackError`` for a non-loopback URL and ``AdminError`` when a node refuses
    a race for good (4xx).
    """
    nodes = [node_admin_url] if isinstance(node_admin_url, str) else list(node_admin_url)
    if not nodes:
        raise ValueError("need at least one node")
    for url in nodes:
        require_loopback(url)
    if n_bots < 1:
        raise ValueError("n_bots must be >= 1")
    if not 1 <= seats_per_race <= MAX_SEATS:
        raise ValueError(f"seats_per_race must be 1 to {MAX_SEATS}")
    started = time.monotonic()
    deadline = started + timeout_s
    names = [f"bot-{i}" for i in range(1, n_bots + 1)]
    # Drawn up front, in seat order: the same seed gives the same bots whatever the refusals.
    bot_rngs = {name: random.Random(rng.getrandbits(64)) for name in names}
    placer = _Placer(nodes, admin_token, Backoff(backoff, random.Random(rng.getrandbits(64))))

    def profile(name: str) -> TypingProfile:
        return draw_profile(bot_rngs[name], mean_wpm=mean_wpm, sd_wpm=sd_wpm)

    # No connection cap: every bot holds one WebSocket for the whole race.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    races = 0
    unplaced: list[BotReport] = []
    runs: list[asyncio.Task[BotReport]] = []
    node_urls: list[str] = []  # the nodes races were placed on: where a bot whose node died asks
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            for first in range(0, n_bots, seats_per_race):
                group = names[first : first + seats_per_race]
                race = await placer.place(
                    session, group, race_type=race_type, custom_text=custom_text, deadline=deadline
                )
                if race is None:  # the deadline passed: these bots and the rest never race
                    reason = f"no race created before the deadline (last refusal: {placer.last_error})"
                    for name in names[first:]:
                        unplaced.append(BotReport("", name, profile(name), failure=reason))
                    break
                races += 1
                log.info("race_created", race_id=race.race_id, node_id=race.node_id, seats=len(race.seats))
                remaining = max(1.0, deadline - time.monotonic())
                if race.url not in node_urls:
                    node_urls.append(race.url)
                for seat in race.seats:
                    bot = Bot(
                        race.url,
                        seat.player_token,
                        seat.ticket,
                        profile(seat.name),
                        bot_rngs[seat.name],
                        send_interval_ms=send_interval_ms,
                        fmt=fmt,
                        name=seat.name,
                        session=session,
                        # Its node dies: rejoin through the other nodes (they redirect the ticket
                        # to the node that adopted the race).
                        reconnect_s=REJOIN_S,
                        fallback_urls=[u for u in node_urls if u != race.url],
                    )
                    runs.append(asyncio.create_task(bot.run(remaining), name=f"bot-run-{seat.name}"))
            reports = list(await asyncio.gather(*runs))
        finally:
            for task in runs:  # only when placement failed for good or we were cancelled
                task.cancel()
            await asyncio.gather(*runs, return_exceptions=True)
    return summarise(
        reports + unplaced,
        races=races,
        duration_s=time.monotonic() - started,
        placement_errors=dict(placer.errors),
    )


class _Placer:
    """Creates races, retrying the refusals that may pass (``AdminError.retryable``, connection
    errors) with capped exponential backoff; after a refusal the next node is asked first.
    Quiet: a warning at the 1st, 2nd, 4th, 8th... refusal in a row, the others at debug."""

    def __init__(self, nodes: list[str], admin_token: str, backoff: Backoff) -> None:
        self.nodes = nodes
        self.admin_token = admin_token
        self.backoff = backoff
        self.errors: Counter[str] = Counter()
        self.last_error = ""
        self._current = 0

    async def place(
        self,
        session: aiohttp.ClientSession,
        names: list[str],
        *,
        race_type: str,
        custom_text: str | None,
        deadline: float,
    ) -> CreatedRace | None:
        """The created race, or None when the deadline comes first."""
        while True:
            node = self.nodes[self._current]
            try:
                race = await create_race(
                    session, node, self.admin_token, names, race_type=race_type, custom_text=custom_text
                )
            except AdminError as exc:
                if not exc.retryable:
                    raise
                kind, self.last_error = exc.kind, str(exc)
            except (aiohttp.ClientError, TimeoutError) as exc:  # refused, reset, timed out
                kind, self.last_error = f"connect_{type(exc).__name__}", f"{node}: {exc!r}"
            else:
                failures = self.backoff.reset()
                if failures:
                    log.info("race_placement_recovered", node=node, failures=failures)
                return race
            self.errors[kind] += 1
            delay = self.backoff.next_delay()
            failures = self.backoff.failures
            say = log.warning if failures & (failures - 1) == 0 else log.debug
            say("race_placement_refused", node=node, error=kind, failures=failures, retry_s=round(delay, 2))
            self._current = (self._current + 1) % len(self.nodes)
            if time.monotonic() + delay >= deadline:
                return None
            await asyncio.sleep(delay)


def summarise(
    reports: list[BotReport],
    *,
    races: int,
    duration_s: float,
    placement_errors: dict[str, int] | None = None,
) -> RunSummary:
    rows = [r.my_row for r in reports if r.my_row is not None]
    finished_rows = [row for row in rows if row.status == PlayerStatus.FINISHED.value]
    wpms = [row.wpm for row in finished_rows]
    accuracies = [row.accuracy for row in finished_rows]
    latencies = sorted(ms for r in reports for ms in r.progress_latencies_ms)
    errors = Counter(e.code for r in reports for e in r.errors)
    failures = {r.name: r.failure for r in reports if r.failure is not None}
    unexpected = [
        r.name
        for r in reports
        if r.failure is not None or any(e.code not in EXPECTED_ERROR_CODES for e in r.errors)
    ]
    return RunSummary(
        races=races,
        bots=len(reports),
        finished=len(finished_rows),
        dnf=len(reports) - len(finished_rows),
        flagged=sum(1 for row in rows if row.flags),
        wpm_mean=_round(statistics.fmean(wpms)) if wpms else None,
        wpm_min=min(wpms) if wpms else None,
        wpm_max=max(wpms) if wpms else None,
        accuracy_mean=_round(statistics.fmean(accuracies)) if accuracies else None,
        errors_by_code=dict(sorted(errors.items())),
        latency_p50_ms=_round(percentile(latencies, 50)),
        latency_p95_ms=_round(percentile(latencies, 95)),
        latency_p99_ms=_round(percentile(latencies, 99)),
        failures=failures,
        unexpected=unexpected,
        duration_s=round(duration_s, 2),
        reports=reports,
        placement_errors=dict(sorted((placement_errors or {}).items())),
    )


def percentile(sorted_values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) of sorted values, linearly interpolated; None if empty."""
    if not sorted_values:
        return None
    if not 0 <= q <= 100:
        raise ValueError("q must be in [0, 100]")
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def format_summary(summary: RunSummary) -> str:
    """A small human-readable table."""

    def num(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:.1f}{unit}"

    errors = ", ".join(f"{code}={n}" for code, n in summary.errors_by_code.items()) or "none"
    refused = ", ".join(f"{kind}={n}" for kind, n in summary.placement_errors.items()) or "none"
    lines = [
        ("races", str(summary.races)),
        ("bots", f"{summary.bots} ({summary.finished} finished, {summary.dnf} DNF)"),
        ("wpm", f"mean {num(summary.wpm_mean)}  min {num(summary.wpm_min)}  max {num(summary.wpm_max)}"),
        ("accuracy", f"mean {num(summary.accuracy_mean, '%')}"),
        ("flagged", str(summary.flagged)),
        ("errors", errors),
        ("refused races", f"{refused} (retried)" if summary.placement_errors else refused),
        (
            "progress latency",
            f"p50 {num(summary.latency_p50_ms, ' ms')}  p95 {num(summary.latency_p95_ms, ' ms')}"
            f"  p99 {num(summary.latency_p99_ms, ' ms')}",
        ),
        ("duration", f"{summary.duration_s:.1f} s"),
        ("result", "ok" if summary.ok else f"FAILED: {len(summary.unexpected)} bot(s) went wrong"),
    ]
    width = max(len(label) for label, _ in lines)
    out = [f"{label.ljust(width)}  {value}" for label, value in lines]
    out.extend(f"  {name}: {reason}" for name, reason in summary.failures.items())
    return "\n".join(out)
