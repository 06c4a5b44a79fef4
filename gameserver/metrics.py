"""Prometheus metrics of a node, in their own registry (several nodes can share a process in tests).

Labels are bounded: message types, states and error codes, never a race or player id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from arena.outbox import OutboxMetrics
from arena.protocol import CloseCode, ErrorCode, MsgType, RaceState
from arena.runtime_metrics import gc_pause_histogram, loop_lag_histogram, time_gc_pauses
from arena.typing_tests import ModeType
from gameserver.fairplay import Flag
from gameserver.wsproto import WsClose

_PREFIX = "arena_gameserver"

# Every known value of each label, created at start-up (``NodeMetrics.warm_labels``); the
# ``where`` of faults and the outcomes are the strings the node's code passes.
FAULT_WHERE = ("tick", "progress", "outgoing", "finalize", "message", "keepalive", "shutdown")
REFUSED_REASONS = ("accept", "upgrade", "body_timeout")
REAPED_OUTCOMES = ("aborted", "finished", "already_written", "unreadable", "adopted")
MOVED_OUTCOMES = ("adopted", "taken_back")
COLLECTION_WHY = ("scheduled", "idle", "startup")


class FlushReason(StrEnum):
    """Why a race's progress frame left: operators see whether clients follow the cadence."""

    INSTANT = "instant"  # the last typist of a send instant arrived
    WINDOW = "window"  # the batching window closed (clients off the cadence, or a quiet typist)
    TICK = "tick"  # a start, a drop-out or the end, sent by the tick


@dataclass
class NodeMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.connections = Gauge(f"{_PREFIX}_connections", "Open WebSocket connections", registry=r)
        self.open_connections = Gauge(
            f"{_PREFIX}_listener_connections",
            "Open TCP connections of the listener, whatever their state (HTTP, upgrading, WebSocket)",
            registry=r,
        )
        self.connections_refused = Counter(
            f"{_PREFIX}_connections_refused_total",
            "Connections refused or cut by the listener: accept (past the spare room), upgrade (503 past "
            "ARENA_MAX_CONNECTIONS), body_timeout (408)",
            ["reason"],
            registry=r,
        )
        self.races = Gauge(f"{_PREFIX}_races", "Races on this node by state", ["state"], registry=r)
        self.players = Gauge(f"{_PREFIX}_players", "Players seated in live races", registry=r)
        self.messages_in = Counter(
            f"{_PREFIX}_messages_in_total", "Messages received, by type", ["type"], registry=r
        )
        self.frames_out = Counter(
            f"{_PREFIX}_frames_out_total", "Frames written to sockets, by type", ["type"], registry=r
        )
        self.errors = Counter(f"{_PREFIX}_errors_total", "Error replies sent, by code", ["code"], registry=r)
        self.closes = Counter(
            f"{_PREFIX}_closes_total", "Connections closed by the server, by close code", ["code"], registry=r
        )
        self.handshakes_abandoned = Counter(
            f"{_PREFIX}_handshakes_abandoned_total",
            "WebSocket upgrades whose client hung up before the node's 101 answer went out",
            registry=r,
        )
        self.tick_seconds = Histogram(
            f"{_PREFIX}_tick_duration_seconds",
            "Time spent in one broadcast tick",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.input_to_broadcast_seconds = Histogram(
            f"{_PREFIX}_input_to_broadcast_seconds",
            "From receiving an input to broadcasting the progress it caused",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.loop_lag_seconds = loop_lag_histogram(_PREFIX, "the flusher", r)
        self.gc_pause_seconds = gc_pause_histogram(_PREFIX, r)
        self.results = Counter(f"{_PREFIX}_results_total", "Race results, by state", ["state"], registry=r)
        self.ghosts = Counter(
            f"{_PREFIX}_ghosts_total", "Ghosts (replayed keystroke logs) put in new races", registry=r
        )
        self.typing_tests = Counter(
            f"{_PREFIX}_typing_tests_total",
            "Typing tests created, by mode type (time, words, quote)",
            ["type"],
            registry=r,
        )
        self.flags = Counter(
            f"{_PREFIX}_flagged_results_total", "Fair-play flags raised, by flag", ["flag"], registry=r
        )
        self.progress_flushes = Counter(
            f"{_PREFIX}_progress_flushes_total",
            "Race progress frames built, by why they left (instant, window, tick)",
            ["reason"],
            registry=r,
        )
        self.outbox_appends = Counter(
            f"{_PREFIX}_outbox_appends_total", "Matches appended to the outbox stream", registry=r
        )
        # The results batcher: batch sizes, retries, backlog (arena.outbox.OutboxBatcher).
        self.outbox = OutboxMetrics.create(r, _PREFIX)
        self.faults = Counter(
            f"{_PREFIX}_faults_total",
            "Failures contained to one race or socket (tick, flush, finalize, message); each is logged",
            ["where"],
            registry=r,
        )
        self.node_items = Gauge(
            f"{_PREFIX}_node_items",
            "Entries in the node's per-race and per-socket structures (rooms, sockets, batcher, relay "
            "watchers, ...), by structure; updated every heartbeat. Follows the load, flat over days",
            ["structure"],
            registry=r,
        )
        self.python_objects = Gauge(
            f"{_PREFIX}_python_objects",
            "Objects the garbage collector tracks that were created after start-up, by type (a few "
            "watched types and 'all'); sampled every ARENA_NODE_HEAP_STATS_S, absent when off",
            ["type"],
            registry=r,
        )
        self.gc_unreachable = Counter(
            f"{_PREFIX}_gc_unreachable_objects_total",
            "Unreachable objects (reference cycles) the scheduled full collections freed "
            "(ARENA_NODE_GC_FULL_S): a steady rise means something forms cycles per race or socket",
            registry=r,
        )
        self.gc_full_collections = Counter(
            f"{_PREFIX}_gc_full_collections_total",
            "Full collections (each followed by the trim), by why: scheduled (ARENA_NODE_GC_FULL_S), "
            "idle (ARENA_NODE_IDLE_COLLECT_S after a load), startup (before the node serves)",
            ["why"],
            registry=r,
        )
        self.malloc_trim_released = Counter(
            f"{_PREFIX}_malloc_trim_released_bytes",
            "Resident memory handed back to the system by malloc_trim after the full collections "
            "(ARENA_NODE_MALLOC_TRIM): free heap pages a load left behind",
            registry=r,
        )
        self.checkpoint_entries = Counter(
            f"{_PREFIX}_checkpoint_entries_total",
            "Race journal entries (joins, countdowns, inputs, leaves) appended to race checkpoints",
            registry=r,
        )
        self.checkpoint_write_failures = Counter(
            f"{_PREFIX}_checkpoint_write_failures_total",
            "Ticks whose checkpoint appends failed (retried at the next tick)",
            registry=r,
        )
        self.checkpoint_deferred = Counter(
            f"{_PREFIX}_checkpoint_deferred_total",
            "Race checkpoint appends put off to a later tick by the per-tick bounds, or split "
            "(a journal longer than one append carries): the checkpoints are behind",
            registry=r,
        )
        self.checkpoint_unwritten = Gauge(
            f"{_PREFIX}_checkpoint_unwritten_entries",
            "Journal entries of the node's races not yet appended to their checkpoints",
            registry=r,
        )
        self.races_reaped = Counter(
            f"{_PREFIX}_races_reaped_total",
            "Races of dead nodes finalised from their checkpoints, by outcome "
            "(aborted: partial results to the outbox; already_written: the owner had written them; "
            "unreadable: the checkpoint could not be replayed, only cleaned up)",
            ["outcome"],
            registry=r,
        )
        self.races_moved = Counter(
            f"{_PREFIX}_races_moved_total",
            "Races a drain with move handed off, by outcome (adopted: another node runs them on; "
            "taken_back: nobody adopted them in time, they ran on here)",
            ["outcome"],
            registry=r,
        )
        self.draining = Gauge(
            f"{_PREFIX}_draining", "1 while the node is draining (takes no new races), else 0", registry=r
        )
        self.full = Gauge(
            f"{_PREFIX}_full",
            "1 while the node says it is full (its loop lag over ARENA_NODE_FULL_LAG_MS: "
            "placement skips it, admin race creation answers 503), else 0",
            registry=r,
        )
        self.full_changes = Counter(
            f"{_PREFIX}_full_changes_total",
            "Times the node became full (to=full) or took races again (to=ready)",
            ["to"],
            registry=r,
        )
        self.checkpoints_frozen = Counter(
            f"{_PREFIX}_checkpoints_frozen_total",
            "Races whose unappended checkpoint backlog passed ARENA_RACE_CHECKPOINT_BACKLOG_KB (or "
            "that a stop aborted): backlog dropped, checkpoint kept at its last written entry",
            ["why"],
            registry=r,
        )

        # Hot counts are plain integers, added to Prometheus by ``publish`` (every tick): a
        # Prometheus increment takes a lock, which cost more than the rest of a message's metrics.
        self._in_by_type: dict[MsgType, Any] = {t: self.messages_in.labels(t.value) for t in MsgType}
        self._out_by_type: dict[MsgType, Any] = {t: self.frames_out.labels(t.value) for t in MsgType}
        self._in_counts: dict[MsgType, int] = dict.fromkeys(MsgType, 0)
        self._out_counts: dict[MsgType, int] = dict.fromkeys(MsgType, 0)
        self._flush_by_reason: dict[FlushReason, Any] = {
            r: self.progress_flushes.labels(r.value) for r in FlushReason
        }
        self._flush_counts: dict[FlushReason, int] = dict.fromkeys(FlushReason, 0)
        self.warm_labels()

    def warm_labels(self) -> None:
        """Create every known label value's child now. A child created at a label's first use,
        mid-load, lives as long as the process and pins the memory pages it landed in after the
        load (issue 21); created here it is part of the start-up heap. Series show 0 until used."""
        values: tuple[tuple[Any, Any], ...] = (
            (self.races, RaceState),
            (self.results, RaceState),
            (self.errors, ErrorCode),
            (self.closes, [str(int(c)) for c in (*CloseCode, *WsClose)]),
            (self.flags, Flag),
            (self.typing_tests, ModeType),
            (self.faults, FAULT_WHERE),
            (self.connections_refused, REFUSED_REASONS),
            (self.races_reaped, REAPED_OUTCOMES),
            (self.races_moved, MOVED_OUTCOMES),
            (self.gc_pause_seconds, ("0", "1", "2")),
            (self.gc_full_collections, COLLECTION_WHY),
        )
        for metric, labels in values:
            for label in labels:
                metric.labels(str(label))

    def watch_gc(self) -> None:
        """Time every garbage collection (a process has one collector: call this once, in main)."""
        time_gc_pauses(self.gc_pause_seconds)

    def message_in(self, kind: MsgType) -> None:
        self._in_counts[kind] += 1

    def frames_sent(self, kind: MsgType, n: int) -> None:
        self._out_counts[kind] += n

    def progress_flushed(self, reason: FlushReason) -> None:
        self._flush_counts[reason] += 1

    def publish(self) -> None:
        """Move the hot counts into their Prometheus counters."""
        hot: tuple[tuple[dict[Any, int], dict[Any, Any]], ...] = (
            (self._in_counts, self._in_by_type),
            (self._out_counts, self._out_by_type),
            (self._flush_counts, self._flush_by_reason),
        )
        for counts, children in hot:
            for kind, n in counts.items():
                if n:
                    children[kind].inc(n)
                    counts[kind] = 0
