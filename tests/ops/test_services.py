"""Round trips against the real backing services, and clean shutdown."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ops.services import (
    HOST,
    KafkaBroker,
    PostgresServer,
    RedisServer,
    ServiceError,
    free_port,
)

CONSUME_DEADLINE = 20.0


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _children(pid: int) -> list[int]:
    """Direct children of pid, read from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name is in parentheses and may hold spaces: split after it.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as sock:
        sock.bind((HOST, port))


@pytest.mark.asyncio
async def test_redis_set_get(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set("greeting", b"hello")
        assert await client.get("greeting") == b"hello"
    finally:
        await client.aclose()


@pytest.mark.parametrize("attempt", [1, 2])
def test_redis_url_starts_empty(redis_url: str, attempt: int) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set(f"left-by-{attempt}", 1)  # the next attempt must not see it
    finally:
        client.close()


@pytest.mark.asyncio
async def test_postgres_round_trip(postgres_server: PostgresServer) -> None:
    table = _unique("ops_round_trip")
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        assert await conn.fetchval("SELECT current_database()") == postgres_server.database
        await conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, word text NOT NULL)")
        await conn.executemany(f"INSERT INTO {table} (word) VALUES ($1)", [("alpha",), ("beta",)])
        rows = await conn.fetch(f"SELECT word FROM {table} ORDER BY id")
        assert [row["word"] for row in rows] == ["alpha", "beta"]
        await conn.execute(f"DROP TABLE {table}")
    finally:
        await conn.close()


async def _consume(bootstrap: str, topic: str, group: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + CONSUME_DEADLINE
        while len(values) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                values += [message.value for message in messages if message.value is not None]
        await consumer.commit()
    finally:
        await consumer.stop()
    return values


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for value in values:
            # Same key: one partition, so the order is checkable.
            await producer.send_and_wait(topic, value, key=b"race-1")
    finally:
        await producer.stop()


@pytest.mark.asyncio
async def test_kafka_idempotent_produce_and_group_consume(
    kafka_broker: KafkaBroker,
) -> None:
    topic = _unique("ops-created")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        assert topic in await admin.list_topics()
    finally:
        await admin.close()
    sent = [f"keystroke-{i}".encode() for i in range(5)]
    await _produce(kafka_broker.bootstrap, topic, sent)
    assert await _consume(kafka_broker.bootstrap, topic, _unique("group"), len(sent)) == sent


@pytest.mark.asyncio
async def test_kafka_auto_creates_topic_on_produce(kafka_broker: KafkaBroker) -> None:
    topic = _unique("ops-auto")
    await _produce(kafka_broker.bootstrap, topic, [b"one", b"two"])
    assert await _consume(kafka_broker.bootstrap, topic, _unique("group"), 2) == [
        b"one",
        b"two",
    ]


@pytest.mark.asyncio
async def test_kafka_group_resumes_from_committed_offset(
    kafka_broker: KafkaBroker,
) -> None:
    topic, group = _unique("ops-resume"), _unique("group")
    await _produce(kafka_broker.bootstrap, topic, [b"first"])
    assert await _consume(kafka_broker.bootstrap, topic, group, 1) == [b"first"]
    await _produce(kafka_broker.bootstrap, topic, [b"second"])
    assert await _consume(kafka_broker.bootstrap, topic, group, 1) == [b"second"]


Factory = Callable[[], RedisServer | PostgresServer | KafkaBroker]


@pytest.mark.parametrize(
    "factory",
    [RedisServer, lambda: PostgresServer(fsync=False), KafkaBroker],
    ids=["redis", "postgres", "kafka"],
)
def test_stop_leaves_no_process(factory: Factory) -> None:
    server = factory().start()
    pid = server.pid
    assert pid is not None and server.running
    children = _children(pid)
    data_dir = server.data_dir
    assert data_dir is not None and data_dir.is_dir()

    server.stop()
    server.stop()  # idempotent

    assert not server.running
    assert not _alive(pid)
    assert [child for child in children if _alive(child)] == []
    assert not _accepts(server.port)
    assert not data_dir.exists()


def test_failed_start_shows_log_tail_and_cleans_up() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))  # bound, not listening: only the server's own bind fails
        server = RedisServer(port=taken.getsockname()[1], start_timeout=10)
        with pytest.raises(ServiceError, match="(?s)exited with code.*Address already in use"):
            server.start()
    assert server.data_dir is not None and not server.data_dir.exists()
    assert not server.running


def test_keep_preserves_data_dir_and_log() -> None:
    with RedisServer(keep=True) as server:
        data_dir = server.data_dir
    assert data_dir is not None
    try:
        assert (data_dir / "redis.log").is_file()
    finally:
        shutil.rmtree(data_dir)


def test_start_works_inside_a_running_event_loop() -> None:
    # start() blocks, so it must not need an event loop of its own: the
    # launcher may call it from inside one.
    async def start_inside_loop() -> str:
        with RedisServer() as server:
            client = redis.asyncio.Redis.from_url(server.url)
            try:
                return str(await client.ping())
            finally:
                await client.aclose()

    assert asyncio.run(start_inside_loop()) == "True"


def test_a_fixed_port_that_is_taken_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((HOST, 0))
        holder.listen()
        with pytest.raises(ServiceError, match="already in use"):
            RedisServer(port=holder.getsockname()[1]).start()


def test_serve_runs_the_services_until_sigint() -> None:
    """`python -m ops.services --serve`, as the README's by-hand commands use it."""
    command = [sys.executable, "-m", "ops.services", "--serve"]
    command += ["--redis-port", "0", "--postgres-port", "0", "--kafka-port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        exports: dict[str, str] = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = value
            if len(exports) == 3:
                break
        assert set(exports) == {"ARENA_REDIS_URL", "ARENA_POSTGRES_DSN", "ARENA_KAFKA_BOOTSTRAP"}
        with redis.Redis.from_url(exports["ARENA_REDIS_URL"]) as client:
            assert client.ping()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    port = int(exports["ARENA_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as probe:
        assert probe.connect_ex((HOST, port)) != 0, "Redis still listens after the stop"
