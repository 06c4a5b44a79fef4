"""Which failures a retry can fix (a dependency is down) and which it cannot (bad data).

A dependency failure keeps the whole batch in the stream and is retried with backoff: it
never counts against an entry. A data failure belongs to one entry and counts towards its
dead-lettering.
"""

from __future__ import annotations

from enum import StrEnum

import asyncpg
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError

# SQLSTATE classes that reject the row itself: 22 data exception, 23 integrity violation.
# Everything else (connection loss, shutdown, missing schema, deadlock) is worth a retry.
_PERMANENT_SQLSTATE_CLASSES = ("22", "23")


class Dependency(StrEnum):
    REDIS = "redis"
    POSTGRES = "postgres"
    KAFKA = "kafka"


class DependencyDown(Exception):
    """A dependency failed in a way a later retry can fix."""

    def __init__(self, dependency: Dependency, error: BaseException | str) -> None:
        self.dependency = dependency
        self.reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        super().__init__(f"{dependency}: {self.reason}")


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def postgres_rejects_data(exc: BaseException) -> bool:
    """True when PostgreSQL (or asyncpg encoding a value) refuses the data, not the connection."""
    if isinstance(exc, asyncpg.PostgresError):
        sqlstate = getattr(exc, "sqlstate", None) or ""
        return sqlstate[:2] in _PERMANENT_SQLSTATE_CLASSES
    # Client-side encoding of a bad value: asyncpg's DataError, or a conversion in our rows.
    return isinstance(exc, (asyncpg.exceptions._base.DataError, ValueError, TypeError, OverflowError))


def kafka_rejects_message(exc: BaseException) -> bool:
    """True when the broker or producer refuses this message itself (too large)."""
    return isinstance(exc, (MessageSizeTooLargeError, RecordTooLargeError))
