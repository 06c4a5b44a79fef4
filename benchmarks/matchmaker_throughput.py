"""Matchmaker throughput and time to match, against a real Redis on loopback.

Placement is faked (no nodes, seats "reserved" instantly), so this measures the matching
path: peek, pairing, atomic claims, assignments and their pub/sub, across several
matchmaker processes.

Two phases:

1. backlog: ``--tickets`` tickets (default 100,000) queued across 3 race types x 3 regions,
   then the matchmakers start; reports tickets matched per second while draining it.
2. steady: tickets arrive at ``--rate`` per second for ``--seconds``; reports the time from
   ticket creation to its assignment (p50/p95/p99/max) and the matched rate.

    .venv/bin/python benchmarks/matchmaker_throughput.py [--tickets 100000] [--rate 10000]

Bounded: every wait has a deadline; starts its own redis-server on 127.0.0.1 and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import queue
import random
import statistics
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event as MpEvent

import redis.asyncio as aioredis
import uvloop

from arena.ids import new_race_id
from arena.logs import configure_logging
from arena.placement import Placed, ReservedSeat, SeatRequest
from arena.settings import LogSettings, RedisSettings
from arena.tickets import QueueRef, TicketRequest, TicketStore
from matchmaker.service import Matchmaker
from matchmaker.settings import MatchmakerSettings
from ops.services import RedisServer

RACE_TYPES = ("quick", "standard", "marathon")
REGIONS = ("eu", "us", "ap")
NEIGHBOURS = {"eu": ("us",), "us": ("eu",), "ap": ("eu",)}
QUEUES = [QueueRef(t, r) for t in RACE_TYPES for r in REGIONS]
DEADLINE_S = 180.0  # the whole run never takes longer than this


class FakePlacer:
    """Every race fits at once on an imaginary node of the first region asked."""

    async def place(self, race_type: str, regions: Sequence[str], players: Sequence[SeatRequest]) -> Placed:
        seats = {p.player_id: ReservedSeat("player-token", "join-ticket") for p in players}
        return Placed(new_race_id(), f"fake-{regions[0]}", "ws://127.0.0.1:9/ws", regions[0], seats)


def settings(redis_url: str, name: str) -> MatchmakerSettings:
    return MatchmakerSettings(
        matchmaker_id=name,
        race_types=RACE_TYPES,
        regions=REGIONS,
        neighbours=NEIGHBOURS,
        redis=RedisSettings(url=redis_url),
        log=LogSettings(level="warning"),
    )


def matchmaker_process(redis_url: str, name: str, ready: MpEvent, stop: MpEvent) -> None:
    configure_logging(LogSettings(level="warning"))
    uvloop.run(_matchmaker(redis_url, name, ready, stop))


async def _matchmaker(redis_url: str, name: str, ready: MpEvent, stop: MpEvent) -> None:
    redis = aioredis.Redis.from_url(redis_url, max_connections=64)
    tickets = TicketStore(redis)
    mm = Matchmaker(settings(redis_url, name), redis, tickets, FakePlacer())
    await mm.start()
    ready.set()
    await asyncio.to_thread(stop.wait)
    await mm.stop()
    await tickets.aclose()
    await redis.aclose()
    matched = sum(
        s.value for m in mm.metrics.tickets_matched.collect() for s in m.samples if s.name.endswith("_total")
    )
    print(f"  {name}: matched {matched:,.0f} tickets using {time.process_time():.1f} s of cpu", flush=True)


def generator_process(redis_url: str, seed: int, count: int, rate: float, out: mp.Queue[list[str]]) -> None:
    configure_logging(LogSettings(level="warning"))
    out.put(uvloop.run(_generate(redis_url, seed, count, rate)))


async def _generate(redis_url: str, seed: int, count: int, rate: float) -> list[str]:
    """Create ``count`` tickets, at ``rate`` per second (0: as fast as possible)."""
    redis = aioredis.Redis.from_url(redis_url, max_connections=128)
    store = TicketStore(redis)
    rng = random.Random(seed)
    ids: list[str] = []
    started = time.monotonic()
    batch = 100

    def request(i: int) -> TicketRequest:
        q = QUEUES[rng.randrange(len(QUEUES))]
        return TicketRequest(f"p{seed}-{i}", f"bot{i}", q.race_type, q.region, rng.gauss(1500, 300))

    for first in range(0, count, batch):
        if rate > 0:  # pace: ticket i is due at started + i / rate
            delay = started + first / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        created = await store.create_many([request(i) for i in range(first, min(count, first + batch))])
        ids += [t.id for t in created if t is not None]
    await store.aclose()
    await redis.aclose()
    print(
        f"  generator {seed}: created {len(ids):,} tickets using {time.process_time():.1f} s of cpu",
        flush=True,
    )
    return ids


def generate(redis_url: str, count: int, rate: float, procs: int) -> tuple[list[str], int]:
    """Create tickets in ``procs`` processes; returns their ids and the most left pending meanwhile."""
    ctx = mp.get_context("spawn")
    out: mp.Queue[list[str]] = ctx.Queue()
    workers = [
        ctx.Process(target=generator_process, args=(redis_url, seed, count // procs, rate / procs, out))
        for seed in range(procs)
    ]
    for w in workers:
        w.start()
    ids: list[str] = []
    most_pending = 0
    end = time.monotonic() + DEADLINE_S
    while len(ids) < (count // procs) * procs and time.monotonic() < end:
        most_pending = max(most_pending, asyncio.run(pending(redis_url)))
        try:
            ids += out.get(timeout=0.25)
        except queue.Empty:
            pass
    for w in workers:
        w.join(10)
    return ids, most_pending


def start_matchmakers(redis_url: str, n: int) -> tuple[list[mp.process.BaseProcess], MpEvent]:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs: list[mp.process.BaseProcess] = []
    readies = []
    for i in range(n):
        ready = ctx.Event()
        p = ctx.Process(target=matchmaker_process, args=(redis_url, f"mm-bench-{i}", ready, stop))
        p.start()
        procs.append(p)
        readies.append(ready)
    for ready in readies:
        if not ready.wait(30):
            raise RuntimeError("a matchmaker did not start within 30 s")
    return procs, stop


def stop_matchmakers(procs: list[mp.process.BaseProcess], stop: MpEvent) -> None:
    stop.set()
    for p in procs:
        p.join(15)
        if p.is_alive():
            p.kill()
            p.join(5)


async def pending(redis_url: str) -> int:
    redis = aioredis.Redis.from_url(redis_url)
    async with redis.pipeline(transaction=False) as pipe:
        for q in QUEUES:
            pipe.zcard(q.queue)
            pipe.zcard(q.claims)
        counts = await pipe.execute()
    await redis.aclose()
    return sum(counts)


def wait_drained(redis_url: str, deadline_s: float) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if asyncio.run(pending(redis_url)) == 0:
            return True
        time.sleep(0.1)
    return False


async def match_times(redis_url: str, ids: list[str]) -> tuple[list[int], list[int]]:
    """(created_at, matched_at) of the matched tickets."""
    redis = aioredis.Redis.from_url(redis_url)
    created: list[int] = []
    matched: list[int] = []
    for first in range(0, len(ids), 5000):
        async with redis.pipeline(transaction=False) as pipe:
            for tid in ids[first : first + 5000]:
                q = QueueRef(*tid.split(".")[:2])
                pipe.hmget(q.ticket(tid), "created_at", "matched_at")
            rows = await pipe.execute()
        for c, m in rows:
            if c is not None and m is not None:
                created.append(int(c))
                matched.append(int(m))
    await redis.aclose()
    return created, matched


async def redis_cpu_s(redis_url: str) -> float:
    redis = aioredis.Redis.from_url(redis_url)
    info = await redis.info("cpu")
    await redis.aclose()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def backlog_phase(redis_url: str, tickets: int, matchmakers: int, generators: int) -> None:
    started = time.monotonic()
    ids, _ = generate(redis_url, tickets, 0, generators)
    fill_s = time.monotonic() - started
    print(f"backlog: queued {len(ids)} tickets in {fill_s:.1f} s ({len(ids) / fill_s:,.0f} creates/s)")
    cpu0 = asyncio.run(redis_cpu_s(redis_url))
    procs, stop = start_matchmakers(redis_url, matchmakers)
    drained = wait_drained(redis_url, DEADLINE_S / 2)
    stop_matchmakers(procs, stop)
    cpu = asyncio.run(redis_cpu_s(redis_url)) - cpu0
    _, matched = asyncio.run(match_times(redis_url, ids))
    matched.sort()
    first = matched[0]
    t99 = (matched[int(0.99 * len(matched)) - 1] - first) / 1000
    t100 = (matched[-1] - first) / 1000
    print(
        f"backlog: {len(matched)}/{len(ids)} matched{'' if drained else ' (deadline hit)'} by {matchmakers} "
        f"matchmaker process(es): 99% in {t99:.2f} s = {0.99 * len(matched) / t99:,.0f} tickets/s; "
        f"the last 1% (rating outliers) wait for the fallback/solo steps: all in {t100:.1f} s; "
        f"redis cpu {cpu:.1f} s"
    )


def steady_phase(redis_url: str, rate: float, seconds: float, matchmakers: int, generators: int) -> None:
    procs, stop = start_matchmakers(redis_url, matchmakers)
    cpu0 = asyncio.run(redis_cpu_s(redis_url))
    started = time.monotonic()
    ids, most_pending = generate(redis_url, int(rate * seconds), rate, generators)
    gen_s = time.monotonic() - started
    drained = wait_drained(redis_url, 30)
    stop_matchmakers(procs, stop)
    cpu = asyncio.run(redis_cpu_s(redis_url)) - cpu0
    created, matched = asyncio.run(match_times(redis_url, ids))
    waits = [(m - c) / 1000 for c, m in zip(created, matched, strict=True)]
    arrival_s = (max(created) - min(created)) / 1000
    note = "" if drained else " (deadline hit)"
    print(
        f"steady: {len(ids)} tickets offered at {rate:,.0f}/s, arrived at {len(ids) / arrival_s:,.0f}/s "
        f"over {arrival_s:.1f} s ({gen_s:.1f} s with process start-up); {len(matched)} matched{note}; "
        f"at most {most_pending} queued or claimed at once; redis cpu {cpu:.1f} s"
    )
    print(
        f"steady: time to match p50 {statistics.median(waits):.3f} s, p95 {pct(waits, 0.95):.3f} s, "
        f"p99 {pct(waits, 0.99):.3f} s, max {max(waits):.3f} s"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=100_000, help="backlog size")
    parser.add_argument("--rate", type=float, default=10_000, help="steady arrivals per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--matchmakers", type=int, default=2, help="matchmaker processes")
    parser.add_argument("--generators", type=int, default=2, help="ticket-creating processes")
    parser.add_argument("--phase", choices=("both", "backlog", "steady"), default="both")
    args = parser.parse_args(argv)
    with RedisServer() as server:
        print(f"redis {server.url}; queues {len(QUEUES)}; fake placement")
        if args.phase in ("both", "backlog"):
            backlog_phase(server.url, args.tickets, args.matchmakers, args.generators)
        if args.phase in ("both", "steady"):
            steady_phase(server.url, args.rate, args.seconds, args.matchmakers, args.generators)


if __name__ == "__main__":
    main()
