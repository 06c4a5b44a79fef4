"""``kill -9`` of a persistence process in the middle of a batch, then a restart: still exactly
once in PostgreSQL and none missing in Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from arena.keys import OUTBOX_STREAM
from ops.services import free_port
from tests.persistence.helpers import Env, drained, kafka_keys, matches, push, stored, wait_until

ROOT = Path(__file__).resolve().parents[2]


class Proc:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["ARENA_PERSIST_PORT"])
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "persistence"], env=os.environ | env, cwd=ROOT, stdout=out, stderr=out
            )

    async def ready(self) -> bool:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{self.port}/readyz") as resp,
            ):
                return resp.status == 200
        except aiohttp.ClientError:
            return False


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        if p.popen.poll() is None:
            p.popen.kill()
            p.popen.wait()


async def acked(redis: aioredis.Redis) -> int:
    for g in await redis.xinfo_groups(OUTBOX_STREAM):
        return int(g["entries-read"] or 0) - int(g["pending"])
    return 0


async def test_kill_9_mid_batch_then_restart(
    env: Env, redis: aioredis.Redis, procs: list[Proc], tmp_path: Path
) -> None:
    records = matches(1000)
    log = tmp_path / "persistence.log"
    # A pause between the PostgreSQL commit and Kafka: most of each batch's time is "in the middle".
    first = Proc(
        env.process_env(
            ARENA_PERSIST_CONSUMER="first",
            ARENA_PERSIST_PORT=str(free_port()),
            ARENA_PERSIST_DELAY_AFTER_COMMIT_S="0.2",
        ),
        log,
    )
    procs.append(first)
    await wait_until(first.ready, 20, "the first process ready")
    await push(redis, records)

    async def mid_batch() -> bool:
        races, _ = await stored(env.dsn)
        return races >= 300 and races > await acked(redis)  # committed, not yet acknowledged

    await wait_until(mid_batch, 30, "a batch committed to PostgreSQL and not acknowledged", interval=0.01)
    first.popen.send_signal(signal.SIGKILL)
    first.popen.wait()
    races, _ = await stored(env.dsn)
    assert 300 <= races < 1000 and races > await acked(redis)

    second = Proc(env.process_env(ARENA_PERSIST_CONSUMER="second", ARENA_PERSIST_PORT=str(free_port())), log)
    procs.append(second)
    await wait_until(
        lambda: drained(redis), 60, "the restarted process to finish, claiming the dead one's batch"
    )
    assert await stored(env.dsn) == (1000, sum(len(r.participants) for r in records))
    keys = await kafka_keys(env.bootstrap, env.race_topic, 1000)
    assert set(keys) == {r.match_id for r in records}

    second.popen.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(second.popen.wait, 10) == 0
