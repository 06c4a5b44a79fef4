"""Epoch milliseconds (the outbox's unit) to and from ``datetime`` (PostgreSQL's), exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_datetime(ms: int) -> datetime:
    """No float division, so milliseconds survive the round trip."""
    return EPOCH + timedelta(milliseconds=ms)


def opt_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else to_datetime(ms)


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MS
