"""Shared fixtures: real Redis, PostgreSQL and Kafka-protocol servers on loopback ports.

Each server starts the first time a test asks for it and stops at the end of
the session; tests that never ask start nothing.
"""

from collections.abc import Iterator

import pytest
import redis

from ops.services import KafkaBroker, PostgresServer, RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # fsync off: the data is thrown away, and it makes DDL-heavy tests faster.
    with PostgresServer(fsync=False) as server:
        yield server


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    with KafkaBroker() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's Redis, emptied (FLUSHALL) before this test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url
