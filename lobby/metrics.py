"""Prometheus metrics of a lobby, in their own registry (several lobbies can share a test process).

Labels are bounded: route templates (never a raw path), methods, status codes, race types,
limit scopes. Never a player, ticket, race id or invite code.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from arena.runtime_metrics import gc_pause_histogram, loop_lag_histogram, time_gc_pauses

_PREFIX = "arena_lobby"


@dataclass
class LobbyMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self._token_cache_stats: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0)
        r = self.registry
        r.register(_TokenCacheCollector(lambda: self._token_cache_stats()))
        # Counted in plain ints on the request path and read at scrape time (_RequestCollector):
        # prometheus_client's labelled Counter and Histogram took a lock per value, ~3.3 us of a
        # heartbeat's ~40 us of lobby work (issue 19). Same names, labels and buckets as before.
        self.requests = _RequestCollector(REQUEST_BUCKETS)
        r.register(self.requests)
        self.rate_limited = Counter(
            f"{_PREFIX}_rate_limited_total",
            "Requests refused with 429, by scope (ip, player, login)",
            ["scope"],
            registry=r,
        )
        self.tickets_created = Counter(
            f"{_PREFIX}_tickets_created_total", "Matchmaking tickets queued", ["race_type"], registry=r
        )
        self.node_lost = Counter(
            f"{_PREFIX}_node_lost_total",
            "Reads that reported an assignment lost (its node died mid-race), by kind (ticket, private)",
            ["kind"],
            registry=r,
        )
        self.typing_tests = Counter(
            f"{_PREFIX}_typing_tests_total",
            "Typing tests asked for, by outcome (created, no_node)",
            ["outcome"],
            registry=r,
        )
        self.assignments_moved = Counter(
            f"{_PREFIX}_assignments_moved_total",
            "Reads that reported an assignment at its race's adopter (its node died, a live node "
            "runs the race on), by kind (ticket, private)",
            ["kind"],
            registry=r,
        )
        self.private_races = Counter(
            f"{_PREFIX}_private_races_total",
            "Private race events, by event (created, joined, started, start_failed)",
            ["event"],
            registry=r,
        )
        self.presence_heartbeats = LoopCounter(
            f"{_PREFIX}_presence_heartbeats", "Presence heartbeats received", registry=r
        )
        self.presence_dropped = Counter(
            f"{_PREFIX}_presence_dropped_total",
            "Heartbeats of new players dropped because the buffer was full",
            registry=r,
        )
        self.presence_buffered = Gauge(
            f"{_PREFIX}_presence_buffered", "Players whose heartbeat waits for the next flush", registry=r
        )
        self.presence_flushes = Counter(
            f"{_PREFIX}_presence_flushes_total", "Presence flushes (one Redis round trip each)", registry=r
        )
        self.presence_flush_failures = Counter(
            f"{_PREFIX}_presence_flush_failures_total",
            "Presence flushes that failed (retried next time)",
            registry=r,
        )
        self.gc_pause_seconds = gc_pause_histogram(_PREFIX, r, "lobby/collector.py")
        self.loop_lag_seconds = loop_lag_histogram(_PREFIX, "a probe woke up every 10 ms", r)
        self.presence_players_flushed = Counter(
            f"{_PREFIX}_presence_players_flushed_total", "Player presences written to Redis", registry=r
        )

    def watch_gc(self) -> None:
        """Time every garbage collection (a process has one collector: call this once, in main)."""
        time_gc_pauses(self.gc_pause_seconds)

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        self.requests.answered(route, method, status, seconds)

    def watch_token_cache(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        """Report the token cache's (hits, misses, entries), read at scrape time (no hot-path cost)."""
        self._token_cache_stats = stats


REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class LoopCounter(Collector):
    """A counter without labels that only the event loop's thread increments: a plain int, read at
    scrape time. prometheus_client's ``Counter.inc`` takes a lock (~0.9 us), per heartbeat."""

    def __init__(self, name: str, documentation: str, *, registry: CollectorRegistry) -> None:
        self._name = name  # without _total, which the exposition adds
        self._documentation = documentation
        self.value = 0
        registry.register(self)

    def inc(self, amount: int = 1) -> None:
        self.value += amount

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, value=self.value)


class _RequestCollector(Collector):
    """``arena_lobby_requests_total{route, method, status}`` and
    ``arena_lobby_request_duration_seconds{route}``, counted by the event loop's thread in plain
    ints and floats (no lock) and turned into metric families at scrape time. Labels are bounded
    like before: route templates x methods x statuses."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self._bounds = (*buckets, math.inf)
        self._les = tuple("+Inf" if b == math.inf else repr(float(b)) for b in self._bounds)  # "0.001"
        self._counts: dict[tuple[str, str, int], int] = {}
        # route -> a count per bucket (not cumulative), then the sum of the durations
        self._durations: dict[str, list[float]] = {}

    def answered(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self._counts[key] = self._counts.get(key, 0) + 1
        durations = self._durations.get(route)
        if durations is None:
            durations = self._durations[route] = [0.0] * (len(self._bounds) + 1)
        durations[bisect.bisect_left(self._bounds, seconds)] += 1  # the first bound >= seconds
        durations[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            f"{_PREFIX}_requests",
            "HTTP requests answered, by route template, method and status",
            labels=["route", "method", "status"],
        )
        for (route, method, status), count in list(self._counts.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        seconds = HistogramMetricFamily(
            f"{_PREFIX}_request_duration_seconds",
            "Time to answer a request (long-polls included), by route template",
            labels=["route"],
        )
        for route, durations in list(self._durations.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for le, in_bucket in zip(self._les, durations, strict=False):  # the sum, last, is left out
                cumulative += in_bucket
                buckets.append((le, cumulative))
            seconds.add_metric([route], buckets, durations[-1])
        yield seconds


class _TokenCacheCollector(Collector):
    def __init__(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        hits, misses, entries = self._stats()
        lookups = CounterMetricFamily(
            f"{_PREFIX}_token_cache_lookups",
            "Player token verifications, by result (hit: already verified; miss: HMAC checked)",
            labels=["result"],
        )
        lookups.add_metric(["hit"], hits)
        lookups.add_metric(["miss"], misses)
        yield lookups
        yield GaugeMetricFamily(
            f"{_PREFIX}_token_cache_entries", "Verified player tokens cached", value=entries
        )
