"""Persistence throughput and end-to-end lag, against real Redis, PostgreSQL and Kafka on loopback.

Starts its own redis-server (AOF on, as in the cluster), PostgreSQL 15 (fsync on) and the
Kafka-protocol broker, applies the migrations, then runs ``--processes`` real
``python -m persistence`` processes (``--workers`` consumers each) on the outbox. Synthetic
matches are realistic: 2-5 players, ``--keys`` keystrokes each (a quick race is ~250).

Two phases:

1. backlog: ``--matches`` matches appended before the consumers start; reports participant rows
   per second drained (stored in PostgreSQL, acked by Kafka, acknowledged on the stream),
   timed from the first acknowledgement so process start-up is not counted, and the CPU
   seconds each part of the system used meanwhile.
2. steady: ``--rate`` matches a second for ``--seconds``; reports the end-to-end lag from the
   outbox append to the Kafka publish of each match (p50/p95/p99/max), read from the
   messages' timestamps, and the append-to-acknowledgement mean from the processes' metrics.

Nodes rate each race as it ends (``arena/rating.py``); the benchmark marks every match rated
as they would, so persistence only checks the markers. ``--unrated`` measures the other case,
every match rated by persistence (one at a time: several Redis round trips each).

Then checks: every match exactly once in PostgreSQL, every match key in Kafka.

``--tests``: the same with typing tests' results instead of races (``arena/typing_tests.py``,
outbox kind ``test``: one row each into ``test_results``, Kafka ``test-results``, recent results
and WPM histograms in Redis), ``--keys`` keystrokes each.

    .venv/bin/python benchmarks/persistence_throughput.py [--matches 15000] [--rate 1000] [--seconds 10]
        [--processes 2] [--workers 2] [--batch 200] [--keys 250] [--compression none] [--tests]
        [--no-player-events]

Bounded: every wait has a deadline; everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from arena import keys
from arena.clock import now_ms
from arena.keys import OUTBOX_STREAM
from arena.results import MatchRecord
from arena.typing_tests import MODE_NAMES, TypingTestRecord
from ops.services import KafkaBroker, PostgresServer, RedisServer, free_port
from persistence import synthetic
from persistence.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
GROUP = "persistence"
DRAIN_DEADLINE_S = 300.0
PUSH_CHUNK = 200


def make_matches(n: int, keys: int, seed: int) -> list[MatchRecord]:
    rng = random.Random(seed)
    players = [f"p{i:06d}" for i in range(max(100, n))]
    now = now_ms()
    return [
        synthetic.match(
            rng,
            ended_at=now - rng.randint(0, 86_400_000),
            players=rng.sample(players, rng.randint(2, 5)),
            keys=keys,
        )
        for _ in range(n)
    ]


def make_tests(n: int, keys: int, seed: int) -> list[TypingTestRecord]:
    """Typing tests' results as nodes write them: a mode, a player, ``keys`` keystrokes."""
    rng = random.Random(seed)
    players = [f"p{i:06d}" for i in range(max(100, n // 10))]
    now = now_ms()
    tests = []
    for i in range(n):
        ended = now - rng.randint(0, 86_400_000)
        times = sorted(rng.sample(range(1, keys * 400), keys))
        wpm = round(rng.uniform(20, 140), 2)
        tests.append(
            TypingTestRecord(
                match_id=f"bench-test-{seed}-{i}",
                node_id="bench",
                mode=rng.choice(MODE_NAMES),
                content_id=f"bench-test-{seed}-{i}",
                passage_chars=keys + 20,
                state="finished",
                reason="",
                player_id=rng.choice(players),
                name="bench",
                status="finished",
                valid=True,
                flags=[],
                wpm=wpm,
                raw_wpm=wpm + 2,
                accuracy=97.0,
                consistency=80.0,
                correct_chars=keys - 3,
                typed_chars=keys,
                errors=3,
                elapsed_ms=times[-1],
                created_at=ended - times[-1] - 5000,
                started_at=ended - times[-1],
                ended_at=ended,
                keys="x" * keys,
                key_times=times,
            )
        )
    return tests


Entry = dict[str, str | bytes]


def encode(records: Sequence[MatchRecord | TypingTestRecord]) -> list[Entry]:
    """Outbox entry fields, encoded before any clock starts (as a node would have done)."""
    return [{"id": r.match_id, "kind": r.kind, "data": r.to_bytes()} for r in records]


async def push(redis: aioredis.Redis, entries: Sequence[Entry]) -> None:
    for i in range(0, len(entries), PUSH_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for fields in entries[i : i + PUSH_CHUNK]:
                pipe.xadd(OUTBOX_STREAM, fields)  # type: ignore[arg-type]
            await pipe.execute()


async def mark_rated(redis: aioredis.Redis, records: Sequence[MatchRecord | TypingTestRecord]) -> None:
    """What the nodes do as each race ends: rate it (here only the marker: persistence then skips it)."""
    for i in range(0, len(records), PUSH_CHUNK):
        async with redis.pipeline(transaction=False) as pipe:
            for r in records[i : i + PUSH_CHUNK]:
                pipe.set(keys.rating_applied(r.match_id), "1", ex=3600)
            await pipe.execute()


async def acked(redis: aioredis.Redis) -> int:
    for g in await redis.xinfo_groups(OUTBOX_STREAM):
        if g["name"] == GROUP.encode():
            return int(g["entries-read"] or 0) - int(g["pending"])
    return 0


async def wait_acked(redis: aioredis.Redis, total: int) -> None:
    deadline = time.monotonic() + DRAIN_DEADLINE_S
    while await acked(redis) < total:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await acked(redis)} of {total} acknowledged after {DRAIN_DEADLINE_S}s")
        await asyncio.sleep(0.02)


async def kafka_lags(bootstrap: str, topic: str, appended: dict[str, int], want: int) -> dict[str, float]:
    """Per match key: Kafka timestamp (publish) minus outbox append, ms. Duplicates keep the first."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-{time.time_ns()}", auto_offset_reset="earliest",
        enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
    )  # fmt: skip
    await consumer.start()
    lags: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 120
        while len(lags) < want and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for m in messages:
                    key = m.key.decode() if m.key else ""
                    if key in appended and key not in lags:
                        lags[key] = m.timestamp - appended[key]
    finally:
        await consumer.stop()
    return lags


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_by_group(groups: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each group of processes and all their descendants."""
    stats = {
        int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))
    }
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    used = {}
    for name, roots in groups.items():
        todo, total = list(roots), 0.0
        while todo:
            pid = todo.pop()
            total += stats[pid][1] if pid in stats else 0.0
            todo += children.get(pid, [])
        used[name] = total
    return used


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


Totals = dict[str, tuple[float, float]]  # histogram series -> (sum, count), over every process


async def scrape(ports: Sequence[int]) -> Totals:
    """Sums and counts of the processes' histograms (lag, time per stage, batch size)."""
    totals: dict[str, list[float]] = {}
    pattern = re.compile(r"^arena_persistence_(\w+?)_(sum|count)(\{[^}]*\})? (\S+)$", re.M)
    async with aiohttp.ClientSession() as http:
        for port in ports:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                text = await resp.text()
            for name, kind, labels, value in pattern.findall(text):
                pair = totals.setdefault(name + (labels or ""), [0.0, 0.0])
                pair[0 if kind == "sum" else 1] += float(value)
    return {k: (v[0], v[1]) for k, v in totals.items()}


def means(before: Totals, after: Totals) -> dict[str, float]:
    """Mean of each series between two scrapes."""
    found = {}
    for series, (total, count) in after.items():
        total0, count0 = before.get(series, (0.0, 0.0))
        if count > count0:
            found[series] = (total - total0) / (count - count0)
    return found


def describe_stages(m: dict[str, float]) -> str:
    stages = {k.split('"')[1]: v for k, v in m.items() if k.startswith("stage_duration_seconds")}
    return (
        "mean per batch (ms): "
        + ", ".join(f"{stage} {seconds * 1000:.1f}" for stage, seconds in stages.items())
        + f"; mean batch {m.get('batch_entries', 0):.0f} entries"
    )


async def wait_ready(ports: Sequence[int]) -> None:
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        for port in ports:
            while True:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"persistence on port {port} not ready")
                await asyncio.sleep(0.1)


def start_processes(
    args: argparse.Namespace, env: dict[str, str], log: Path
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    procs, ports = [], []
    for i in range(args.processes):
        port = free_port()
        penv = os.environ | env | {"ARENA_PERSIST_CONSUMER": f"bench-{i}", "ARENA_PERSIST_PORT": str(port)}
        with log.open("ab") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "persistence"], env=penv, cwd=ROOT, stdout=out, stderr=out
                )
            )
        ports.append(port)
    return procs, ports


async def run(
    args: argparse.Namespace,
    redis_url: str,
    dsn: str,
    bootstrap: str,
    work: Path,
    service_pids: dict[str, int],
) -> int:
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.close()
    print(f"generating {args.matches + int(args.rate * args.seconds)} synthetic matches ...", flush=True)
    make = make_tests if args.tests else make_matches
    backlog: Sequence[MatchRecord | TypingTestRecord] = make(args.matches, args.keys, seed=1)
    steady: Sequence[MatchRecord | TypingTestRecord] = make(int(args.rate * args.seconds), args.keys, seed=2)
    topic, table, rows_table = (
        ("test-results", "test_results", "test_results")
        if args.tests
        else ("race-events", "races", "race_participants")
    )
    rows_backlog = sum(len(r.participants) for r in backlog)
    backlog_entries, steady_entries = encode(backlog), encode(steady)
    size = sum(len(e["data"]) for e in backlog_entries) / len(backlog)
    env = {
        "ARENA_REDIS_URL": redis_url, "ARENA_POSTGRES_DSN": dsn, "ARENA_KAFKA_BOOTSTRAP": bootstrap,
        "ARENA_PERSIST_WORKERS": str(args.workers), "ARENA_PERSIST_BATCH_SIZE": str(args.batch),
        "ARENA_KAFKA_COMPRESSION": args.compression, "ARENA_LOG_LEVEL": "warning", "ARENA_LOG_JSON": "1",
        "ARENA_POSTGRES_POOL_SIZE": str(max(2, args.workers)),
        # Per-player events (one message per racer, keyed by player id) on by default, as in the cluster.
        "ARENA_KAFKA_PLAYER_TOPIC": "" if args.no_player_events else "player-events",
        # Placement off unless set: the synthetic players' short logs never complete their letter-pair
        # evidence, so every result would stay provisional and no board be written (not comparable
        # with the figures before placement; docs/FAIRPLAY.md "Placement").
        "ARENA_REVIEW_PROVISIONAL_MAX_S": os.environ.get("ARENA_REVIEW_PROVISIONAL_MAX_S", "0"),
    }  # fmt: skip
    redis = aioredis.Redis.from_url(redis_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Phase 1: a backlog appended before the consumers start, then drained.
        if not args.unrated:
            await mark_rated(redis, [*backlog, *steady])
        began = time.monotonic()
        await push(redis, backlog_entries)
        print(
            f"appended {len(backlog)} matches (~{size / 1024:.1f} KiB each, "
            f"{rows_backlog / len(backlog):.2f} players per match) in {time.monotonic() - began:.2f}s; "
            f"starting {args.processes} process(es) x {args.workers} worker(s), batch {args.batch}, "
            f"kafka compression {args.compression}",
            flush=True,
        )
        procs, ports = start_processes(args, env, work / "persistence.log")
        groups = {"persistence": [p.pid for p in procs], **{k: [v] for k, v in service_pids.items()}}
        launched = time.monotonic()
        while (first := await acked(redis)) == 0:
            if time.monotonic() - launched > 60:
                raise TimeoutError("nothing acknowledged within 60s of starting")
            await asyncio.sleep(0.005)
        # From the first acknowledgement on: start-up time is not throughput.
        t0, cpu_before = time.monotonic(), cpu_by_group(groups)
        await wait_acked(redis, len(backlog))
        took = time.monotonic() - t0
        cpu_after = cpu_by_group(groups)
        drained = len(backlog) - first
        rows = drained * rows_backlog / len(backlog)
        print(
            f"backlog: {drained} matches (~{rows:,.0f} participant rows) drained in {took:.2f}s after the "
            f"first acknowledgement ({t0 - launched:.2f}s after launch): {rows / took:,.0f} rows/s, "
            f"{drained / took:,.0f} matches/s into PostgreSQL and Kafka",
            flush=True,
        )
        print(
            "  CPU seconds meanwhile: "
            + ", ".join(f"{k} {cpu_after[k] - cpu_before[k]:.2f}" for k in groups)
            + f" (of {took * (os.cpu_count() or 1):.2f} available)",
            flush=True,
        )
        await wait_ready(ports)
        metrics_backlog = await scrape(ports)
        print("  " + describe_stages(means({}, metrics_backlog)), flush=True)
        # Phase 2: steady rate.
        appended: dict[str, int] = {}
        interval = 1.0 / args.rate
        chunk = max(1, int(args.rate / 50))  # appends in 20 ms ticks
        began = time.monotonic()
        for i in range(0, len(steady), chunk):
            target = began + i * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            part = steady_entries[i : i + chunk]
            at = now_ms()
            await push(redis, part)
            appended |= {str(e["id"]): at for e in part}
        await wait_acked(redis, len(backlog) + len(steady))
        lags = list((await kafka_lags(bootstrap, topic, appended, len(steady))).values())
        steady_means = means(metrics_backlog, await scrape(ports))
        mean_ack = steady_means.get("lag_seconds")
        if lags:
            print(
                f"steady: {args.rate} matches/s ({args.rate * rows_backlog / len(backlog):,.0f} rows/s) for "
                f"{args.seconds}s; append -> Kafka publish lag ms: p50 {quantile(lags, 0.5):.0f}, "
                f"p95 {quantile(lags, 0.95):.0f}, p99 {quantile(lags, 0.99):.0f}, max {max(lags):.0f} "
                f"(mean {statistics.fmean(lags):.0f}); append -> ack mean {(mean_ack or 0) * 1000:.0f} ms",
                flush=True,
            )
            print("  " + describe_stages(steady_means), flush=True)
        # Checks.
        every = [*backlog, *steady]
        conn = await asyncpg.connect(dsn)
        races = await conn.fetchval(f"SELECT count(*) FROM {table}")
        rows = await conn.fetchval(f"SELECT count(*) FROM {rows_table}")
        await conn.close()
        in_kafka = await kafka_lags(bootstrap, topic, {r.match_id: 0 for r in every}, len(every))
        expected_rows = sum(len(r.participants) for r in every)
        ok = races == len(every) and rows == expected_rows and len(in_kafka) == len(every)
        print(
            f"check: PostgreSQL {races} races / {rows} rows (expected {len(every)} / {expected_rows}), "
            f"Kafka {len(in_kafka)} distinct match keys: {'OK' if ok else 'MISMATCH'}",
            flush=True,
        )
        return 0 if ok else 1
    finally:
        await redis.aclose()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matches", type=int, default=15000, help="backlog size")
    parser.add_argument("--keys", type=int, default=250, help="keystrokes per participant")
    parser.add_argument("--rate", type=float, default=1000.0, help="steady phase: matches per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--processes", type=int, default=2, help="persistence processes")
    parser.add_argument("--workers", type=int, default=2, help="consumers per process")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    parser.add_argument(
        "--no-player-events", action="store_true", help="ARENA_KAFKA_PLAYER_TOPIC='': the race messages only"
    )
    parser.add_argument(
        "--unrated",
        action="store_true",
        help="leave the matches unrated, as if every node had died before rating (persistence rates them)",
    )
    parser.add_argument("--tests", action="store_true", help="typing tests' results instead of races")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="typogram-bench-persistence-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user when we are root: it must reach its dir
    redis = RedisServer(data_dir=work / "redis", appendonly=True)
    postgres = PostgresServer(data_dir=work / "postgres")
    kafka = KafkaBroker(data_dir=work / "kafka")
    try:
        for service in (redis, postgres, kafka):
            service.start()
        pids = {"postgres": postgres.pid or 0, "kafka": kafka.pid or 0, "redis": redis.pid or 0}
        return asyncio.run(run(args, redis.url, postgres.dsn, kafka.bootstrap, work, pids))
    finally:
        for service in (kafka, postgres, redis):
            service.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
