"""Admission control: a node that cannot keep up with the players it has takes no more.

A saturated node's loop runs late: the flusher, which asks to wake every few milliseconds, wakes
later than it asked (loop lag; a tick that overruns its interval by its own work holds the loop,
so it shows there too; its wait for Redis does not, on purpose: a slow Redis is no node's load,
and every node would say it is full at once). Each heartbeat, the node looks at the worst lag
seen since the last one. Worse than ``ARENA_NODE_FULL_LAG_MS`` in ``FULL_AFTER`` heartbeats in a
row and the node is *full*: its registry entry says ``full`` (placement skips it: the matchmaker,
the lobby, the director) and admin race creation answers 503 ``node_full``. It takes races again
once the worst stays under half the threshold for ``CLEAR_AFTER`` heartbeats (the gap keeps a
node near the threshold from flapping). Players already placed on it are not refused: their
seats were promised.

Off the hot path: the flusher compares one float per wake-up; the decision is taken once a
heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass

FULL_AFTER = 2  # heartbeats in a row over the threshold before the node says it is full
CLEAR_AFTER = 3  # heartbeats in a row under half the threshold before it takes races again


@dataclass(slots=True)
class Admission:
    """Whether the node takes new races, from its own lag (pure: no I/O, no clock)."""

    full_lag_ms: int  # ARENA_NODE_FULL_LAG_MS; 0: never full
    full: bool = False
    worst_ms: float = 0.0  # the worst loop lag since the last ``step``
    last_worst_ms: float = 0.0  # the window ``step`` judged last (for the log line)
    _over: int = 0  # heartbeats in a row over the threshold
    _under: int = 0  # heartbeats in a row under half of it

    def observe(self, lag_s: float) -> None:
        """A loop lag, in seconds."""
        ms = lag_s * 1000
        if ms > self.worst_ms:
            self.worst_ms = ms

    def step(self) -> bool:
        """Judge the window since the last step (one heartbeat); True when ``full`` changed."""
        worst, self.worst_ms = self.worst_ms, 0.0
        self.last_worst_ms = worst
        if self.full_lag_ms <= 0:
            return False
        self._over = self._over + 1 if worst >= self.full_lag_ms else 0
        self._under = self._under + 1 if worst < self.full_lag_ms / 2 else 0
        if not self.full and self._over >= FULL_AFTER:
            self.full = True
            self._under = 0
            return True
        if self.full and self._under >= CLEAR_AFTER:
            self.full = False
            self._over = 0
            return True
        return False
