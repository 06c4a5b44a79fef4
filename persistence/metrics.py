"""Prometheus metrics of a persistence process, in their own registry (tests run several).

Labels are bounded: stages, dependencies and sources, never a match or player id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_PREFIX = "arena_persistence"


@dataclass
class PersistenceMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.entries_read = Counter(
            f"{_PREFIX}_entries_read_total",
            "Outbox entries received, by source (new, claimed)",
            ["source"],
            registry=r,
        )
        self.entries_acked = Counter(
            f"{_PREFIX}_entries_acked_total",
            "Outbox entries acknowledged after storing and publishing",
            registry=r,
        )
        self.matches_inserted = Counter(
            f"{_PREFIX}_matches_inserted_total", "Matches newly written to PostgreSQL", registry=r
        )
        self.tests_stored = Counter(
            f"{_PREFIX}_typing_tests_stored_total",
            "Typing tests' results newly written to PostgreSQL",
            registry=r,
        )
        self.matches_duplicate = Counter(
            f"{_PREFIX}_matches_duplicate_total", "Re-delivered matches PostgreSQL already had", registry=r
        )
        self.participant_rows = Counter(
            f"{_PREFIX}_participant_rows_total", "Result rows written to PostgreSQL", registry=r
        )
        self.results_held = Counter(
            f"{_PREFIX}_results_held_total",
            "Result rows stored held for review (ARENA_REVIEW_WPM)",
            registry=r,
        )
        self.results_held_pairs = Counter(
            f"{_PREFIX}_results_held_pairs_total",
            "Of those, held on the player's pooled letter-pair evidence (pairs_history, pairs_population)",
            registry=r,
        )
        self.results_held_by_reason = Counter(
            f"{_PREFIX}_results_held_by_reason_total",
            "Result rows stored held for review, by the rule that held them"
            " (wpm, pb, pairs_history, pairs_population)",
            ["reason"],
            registry=r,
        )
        self.results_provisional = Counter(
            f"{_PREFIX}_results_provisional_total",
            "Result rows stored provisional: a new account's, before its letter-pair evidence is complete",
            registry=r,
        )
        self.placement_settled = Counter(
            f"{_PREFIX}_placement_settled_total",
            "Provisional results settled by placement: released (the letter-pair rule passed) or held",
            ["outcome"],
            registry=r,
        )
        self.review_decisions = Counter(
            f"{_PREFIX}_review_decisions_total",
            "Operator review decisions stored, by decision (released, rejected)",
            ["decision"],
            registry=r,
        )
        self.ratings_undone = Counter(
            f"{_PREFIX}_ratings_undone_total",
            "Ratings corrected because a result was rejected on review (its gain, opponents' refunds)",
            registry=r,
        )
        self.ratings_caught_up = Counter(
            f"{_PREFIX}_ratings_caught_up_total", "Finished matches no node had rated, rated here", registry=r
        )
        self.rating_changes = Counter(
            f"{_PREFIX}_rating_changes_total", "Rating changes copied into rating_history", registry=r
        )
        self.messages_published = Counter(
            f"{_PREFIX}_messages_published_total", "Matches acknowledged by Kafka", registry=r
        )
        self.entry_failures = Counter(
            f"{_PREFIX}_entry_failures_total",
            "Entries that failed on their own, by stage",
            ["stage"],
            registry=r,
        )
        self.dead_letters = Counter(
            f"{_PREFIX}_dead_letters_total", "Entries moved to the dead-letter stream, by stage", ["stage"],
            registry=r,
        )  # fmt: skip
        self.retries = Counter(
            f"{_PREFIX}_dependency_retries_total",
            "Retries because a dependency failed",
            ["dependency"],
            registry=r,
        )
        self.dependency_up = Gauge(
            f"{_PREFIX}_dependency_up", "1 when the dependency's last operation succeeded", ["dependency"],
            registry=r,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            f"{_PREFIX}_stage_duration_seconds",
            "Time one batch spends in a stage, retries included",
            ["stage"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
            registry=r,
        )
        self.batch_size = Histogram(
            f"{_PREFIX}_batch_entries",
            "Entries per processed batch",
            buckets=(1, 5, 10, 25, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.lag_seconds = Histogram(
            f"{_PREFIX}_lag_seconds",
            "From the outbox append to the acknowledgement (stored and published)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
            registry=r,
        )
        self.pair_population = Gauge(
            f"{_PREFIX}_pair_population_contributions",
            "Players' contributions in the population profile of letter-pair speeds, as last read and"
            " written (the agreement rule judges from ARENA_REVIEW_PAIRS_POPULATION_MIN; pair_population.py)",
            registry=r,
        )
        self.pending = Gauge(
            f"{_PREFIX}_pending_entries",
            "Entries delivered to the group and not yet acknowledged",
            registry=r,
        )
        self.backlog = Gauge(
            f"{_PREFIX}_backlog_entries", "Entries in the outbox not yet delivered to the group", registry=r
        )
        # Consumer lag of the groups that read our topics (persistence/kafka_lag.py); labels are
        # the configured groups (ARENA_KAFKA_LAG_GROUPS, at most 20) and our own topics.
        self.kafka_consumer_lag = Gauge(
            f"{_PREFIX}_kafka_consumer_lag_messages",
            "Messages of a topic produced but not committed by a consumer group",
            ["group", "topic"],
            registry=r,
        )
        self.kafka_lag_updated = Gauge(
            f"{_PREFIX}_kafka_lag_updated_timestamp_seconds",
            "When a group's lag was last read",
            ["group"],
            registry=r,
        )
        self.kafka_lag_failures = Counter(
            f"{_PREFIX}_kafka_lag_failures_total", "Rounds of reading a group's lag that failed", registry=r
        )
