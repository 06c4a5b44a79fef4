"""Prometheus metrics of a lobby, in their own registry (several lobbies can share a test process).

Labels are bounded: route templates (never a raw path), methods, status codes, race types,
limit scopes. Never a player, ticket, race id or invite code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from arena.runtime_metrics import gc_pause_histogram, loop_lag_histogram, time_gc_pauses

_PREFIX = "arena_lobby"


@dataclass
class LobbyMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        # labels() takes a lock and builds a key each call: the children every request uses are
        # kept here (bounded like the labels: route templates x methods x statuses).
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._token_cache_stats: Callable[[], tuple[int, int, int]] = lambda: (0, 0, 0)
        r = self.registry
        r.register(_TokenCacheCollector(lambda: self._token_cache_stats()))
        self.requests = Counter(
            f"{_PREFIX}_requests_total",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            f"{_PREFIX}_request_duration_seconds",
            "Time to answer a request (long-polls included), by route template",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
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
        self.presence_heartbeats = Counter(
            f"{_PREFIX}_presence_heartbeats_total", "Presence heartbeats received", registry=r
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
        children = self._answered.get((route, method, status))
        if children is None:
            children = (self.requests.labels(route, method, str(status)), self.request_seconds.labels(route))
            self._answered[(route, method, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def watch_token_cache(self, stats: Callable[[], tuple[int, int, int]]) -> None:
        """Report the token cache's (hits, misses, entries), read at scrape time (no hot-path cost)."""
        self._token_cache_stats = stats


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
