"""Capped exponential backoff with jitter, for clients that retry (bots, house bots, the swarm,
the local cluster's restarts).

The n-th consecutive failure (n = 0, 1, ...) waits ``min(cap_s, base_s * factor**n)`` minus up
to ``jitter`` of it, drawn from the caller's random stream, so clients that failed together do
not retry together, and a seeded ``random.Random`` gives the same delays every time (tests).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffSettings"]

_MAX_EXPONENT = 64  # past this the ceiling is the cap anyway; keeps factor**n finite


@dataclass(frozen=True, slots=True)
class BackoffSettings:
    base_s: float = 0.5  # the first retry's ceiling
    cap_s: float = 30.0  # no delay is longer
    jitter: float = 0.5  # 0: exact delays; 0.5: each delay in [ceiling / 2, ceiling]; at most 1
    factor: float = 2.0  # each failure multiplies the ceiling by this

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be in [0, 1]")
        if self.factor < 1:
            raise ValueError("backoff factor must be >= 1")

    def ceiling(self, attempt: int) -> float:
        """The longest wait after the ``attempt``-th consecutive failure (0-based)."""
        return min(self.cap_s, self.base_s * self.factor ** min(max(0, attempt), _MAX_EXPONENT))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait after the ``attempt``-th consecutive failure: the ceiling, less some jitter."""
        return self.ceiling(attempt) * (1.0 - self.jitter * rng.random())


class Backoff:
    """The failures in a row of one client: each ``next_delay`` is longer, up to the cap, until
    ``reset`` (a success) starts over."""

    def __init__(self, settings: BackoffSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng or random.Random()
        self.failures = 0  # in a row, since the last reset

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before the next try."""
        delay = self.settings.delay(self.failures, self.rng)
        self.failures += 1
        return delay

    def reset(self) -> int:
        """A success: the next failure waits the base again. Returns the failures it ends."""
        failures, self.failures = self.failures, 0
        return failures
