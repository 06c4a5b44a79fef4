"""GET /v1/races/{race_id}/replay under wrk: requests/s and latency of a marathon race's replay.

Starts its own Redis and PostgreSQL (``ops.services``) on 127.0.0.1, stores one synthetic
marathon race (5 players, ``--keys`` keystrokes each) the way persistence does, serves an
in-process lobby (rate limits off) and runs ``wrk`` against the route three ways: gzip asked,
identity, and a revalidation (``If-None-Match`` with the current ETag: 304). The first request
(PostgreSQL, decoding, encoding) is timed alone; wrk's then come from the lobby's replay cache
(``lobby.replay.ReplayCache``). Bounded: three wrk runs of ``--seconds`` each; everything it
started stops on exit.

    .venv/bin/python benchmarks/replay_endpoint.py --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import random
import shutil
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks.* as in soak.py

from arena.clock import now_ms
from arena.settings import RedisSettings
from benchmarks.lobby_throughput import parse_wrk
from lobby.app import build_app
from lobby.settings import LobbySettings
from ops.services import PostgresServer, RedisServer, free_port
from persistence import synthetic
from persistence.migrate import migrate
from persistence.settings import PostgresSettings
from persistence.store import PostgresStore


def _wrk_figures(out: str) -> str:
    run = parse_wrk(out)
    return f"{run.rps:8.0f} req/s  p50 {run.p50_ms:.2f} ms  p99 {run.p99_ms:.2f} ms"


async def _wrk(url: str, seconds: int, connections: int, headers: list[str]) -> str:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for h in headers:
        args += ["-H", h]
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 30)
    return out.decode()


async def run(args: argparse.Namespace, redis_url: str, server_dsn: str) -> None:
    admin = await asyncpg.connect(server_dsn)
    await admin.execute("DROP DATABASE IF EXISTS replay_bench")
    await admin.execute("CREATE DATABASE replay_bench")
    await admin.close()
    dsn = server_dsn.rsplit("/", 1)[0] + "/replay_bench"
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    race = synthetic.match(
        random.Random(1), ended_at=now_ms(), players=None, race_type="marathon", keys=args.keys
    )
    race = (
        race
        if len(race.participants) == 5
        else synthetic.match(
            random.Random(1),
            ended_at=now_ms(),
            players=[f"p{i}" for i in range(5)],
            race_type="marathon",
            keys=args.keys,
        )
    )
    await PostgresStore(pool).write([race])
    await pool.close()

    settings = LobbySettings(
        host="127.0.0.1",
        port=free_port(),
        rate_per_player=0,
        rate_per_ip=0,
        redis=RedisSettings(url=redis_url),
        postgres=PostgresSettings(dsn=dsn),
    )
    runner = web.AppRunner(build_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    url = f"http://127.0.0.1:{settings.port}/v1/races/{race.match_id}/replay"
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            started = time.perf_counter()
            async with http.get(url, headers={"Accept-Encoding": "identity"}) as resp:
                body, etag = await resp.read(), resp.headers["ETag"]
            first = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            async with http.get(url, headers={"Accept-Encoding": "identity"}) as resp:
                await resp.read()
            cached = (time.perf_counter() - started) * 1000
        print(
            f"race: 5 players x {args.keys} keys; body {len(body):,} B, gzip {len(gzip.compress(body)):,} B;"
            f" first request {first:.1f} ms, cached {cached:.1f} ms"
        )
        for label, headers in (
            ("gzip", ["Accept-Encoding: gzip"]),
            ("identity", ["Accept-Encoding: identity"]),
            ("304", [f"If-None-Match: {etag}"]),
        ):
            out = await _wrk(url, args.seconds, args.connections, headers)
            print(f"{label:8s} {_wrk_figures(out)}")
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--keys", type=int, default=1600, help="keystrokes per player (default 1600)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (make setup installs it)")
    with RedisServer() as redis, PostgresServer(fsync=False) as postgres:
        asyncio.run(run(args, redis.url, postgres.dsn))


if __name__ == "__main__":
    main()
