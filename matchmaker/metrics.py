"""Prometheus metrics of a matchmaker, in their own registry (several can share a test process).

Labels are bounded: race types, regions, group kinds and failure reasons from settings and
enums, never a ticket, player or race id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_PREFIX = "arena_matchmaker"


@dataclass
class MatchmakerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.queue_depth = Gauge(
            f"{_PREFIX}_queue_depth", "Tickets queued, per queue", ["race_type", "region"], registry=r
        )
        self.tickets_matched = Counter(
            f"{_PREFIX}_tickets_matched_total", "Tickets given a race", ["race_type", "kind"], registry=r
        )
        self.races_placed = Counter(
            f"{_PREFIX}_races_placed_total", "Races created on nodes", ["race_type", "kind"], registry=r
        )
        self.time_to_match_seconds = Histogram(
            f"{_PREFIX}_time_to_match_seconds",
            "From ticket creation to its assignment",
            ["race_type"],
            buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0),
            registry=r,
        )
        self.claim_conflicts = Counter(
            f"{_PREFIX}_claim_conflicts_total",
            "Groups not claimed because a ticket was taken or cancelled meanwhile",
            registry=r,
        )
        self.placement_failures = Counter(
            f"{_PREFIX}_placement_failures_total",
            "Seat reservations that failed, by reason "
            "(draining, full, unreachable, refused, bad_answer, no_node)",
            ["reason"],
            registry=r,
        )
        self.tickets_released = Counter(
            f"{_PREFIX}_tickets_released_total", "Claimed tickets given back to their queue", registry=r
        )
        self.tickets_reaped = Counter(
            f"{_PREFIX}_tickets_reaped_total",
            "Claims of a dead or stuck matchmaker returned to their queue",
            registry=r,
        )
        self.assignments_lost = Counter(
            f"{_PREFIX}_assignments_lost_total",
            "Seats reserved for tickets cancelled or reaped before the assignment",
            registry=r,
        )
        self.pass_seconds = Histogram(
            f"{_PREFIX}_pass_duration_seconds",
            "One queue's peek, pairing and claim",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.inflight_batches = Gauge(
            f"{_PREFIX}_inflight_batches", "Claimed batches being placed right now", registry=r
        )
