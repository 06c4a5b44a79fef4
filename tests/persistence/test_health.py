"""Readiness from what the consumers saw: a failure counts until cleared or no longer repeated."""

import time

import pytest

from persistence.consumer import Backoff, Health
from persistence.errors import Dependency
from persistence.metrics import PersistenceMetrics


def test_a_failure_counts_until_a_success_clears_it() -> None:
    health = Health(PersistenceMetrics())
    assert health.ready
    health.failed(Dependency.KAFKA, "timed out")
    assert health.down == {Dependency.KAFKA: "timed out"} and not health.ready
    health.succeeded(Dependency.POSTGRES)
    assert not health.ready
    health.succeeded(Dependency.KAFKA)
    assert health.ready


def test_a_failure_nobody_repeats_goes_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    health = Health(PersistenceMetrics(), stale_after_s=5.0)
    health.failed(Dependency.POSTGRES, "refused")
    later = time.monotonic() + 6.0
    monkeypatch.setattr("persistence.consumer.time.monotonic", lambda: later)
    assert health.ready


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 0.4)
    delays = [backoff() for _ in range(5)]
    assert 0.05 <= delays[0] <= 0.1 and 0.1 <= delays[1] <= 0.2
    assert all(0.2 <= d <= 0.4 for d in delays[2:])
