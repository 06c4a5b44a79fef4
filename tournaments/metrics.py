"""Prometheus metrics of the tournament director and the live sockets, each in its own registry.

Labels are bounded (states, outcomes, reasons from this package), never a tournament,
heat, race or player id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_PREFIX = "arena_tournament"


@dataclass
class DirectorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.leader = Gauge(f"{_PREFIX}_director_leader", "1 while this director holds the lease", registry=r)
        self.elections = Counter(f"{_PREFIX}_director_elections_total", "Leases won", registry=r)
        self.tournaments = Counter(
            f"{_PREFIX}_tournaments_total",
            "Tournaments started, finished or cancelled",
            ["outcome"],
            registry=r,
        )
        self.heats = Counter(
            f"{_PREFIX}_heats_total",
            "Heats decided, by outcome (finished, bye, node_lost, timed_out, unplaceable)",
            ["outcome"],
            registry=r,
        )
        self.placements = Counter(
            f"{_PREFIX}_placements_total", "Heat races created on nodes, or not", ["outcome"], registry=r
        )
        self.placement_failures = Counter(
            f"{_PREFIX}_placement_failures_total",
            "Heat races nodes did not create (draining, full, unreachable, refused, bad_answer, no_node)",
            ["reason"],
            registry=r,
        )
        self.heats_moved = Counter(
            f"{_PREFIX}_heats_moved_total",
            "Heats whose race was adopted by a live node after its node died (no re-run)",
            registry=r,
        )
        self.reruns = Counter(
            f"{_PREFIX}_heat_reruns_total", "Heats re-run after their node died", registry=r
        )
        self.results = Counter(
            f"{_PREFIX}_results_total",
            "Heat race records and rejected heat results from the outbox, by outcome (applied, stale,"
            " unknown, bad; rejected, rejection_late)",
            ["outcome"],
            registry=r,
        )
        self.result_lag_seconds = Histogram(
            f"{_PREFIX}_result_lag_seconds",
            "From a heat record's outbox append to the standings update",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.start_lateness_seconds = Histogram(
            f"{_PREFIX}_start_lateness_seconds",
            "Scheduled tournaments: actual start minus the announced start",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.faults = Counter(
            f"{_PREFIX}_director_faults_total",
            "A tournament the director failed on (start or step); logged with its id, the others go on",
            ["where"],
            registry=r,
        )
        self.conflicts = Counter(
            f"{_PREFIX}_write_conflicts_total",
            "Guarded writes refused (conflict, fenced)",
            ["outcome"],
            registry=r,
        )
        self.tick_seconds = Histogram(
            f"{_PREFIX}_tick_duration_seconds",
            "One look at every live tournament",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )


@dataclass
class LiveMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.sockets = Gauge(f"{_PREFIX}_live_sockets", "Live tournament sockets open", registry=r)
        self.messages = Counter(
            f"{_PREFIX}_live_messages_total", "Messages queued to live sockets", registry=r
        )
        self.dropped = Counter(
            f"{_PREFIX}_live_dropped_total",
            "Messages dropped for slow sockets (progress first), and sockets closed for it",
            ["what"],
            registry=r,
        )
