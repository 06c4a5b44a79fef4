"""The lobby against a bare aiohttp handler, in one sitting, driven by ``wrk`` (issue 19).

Starts its own redis-server, a real lobby (``python -m lobby``) and a bare aiohttp + uvloop
server whose one handler reads and parses the same JSON body and answers a small JSON object;
both servers and Redis pinned to ``--server-core``, ``wrk`` to ``--wrk-core`` (``taskset``).
Every request carries the token of one of ``--players`` players, minted with the project's own
signer and rotated by ``benchmarks/lobby_throughput.lua``; the per-player rate limit stays on
(100 a minute), the per-IP limit is off (every request comes from 127.0.0.1).

Scenarios (``--scenarios``): ``heartbeat`` (POST /v1/presence), ``leaderboard`` (GET the quick
daily top 10 of a board seeded with 1,000 players), ``tickets`` (per connection: create, poll,
cancel a ticket; one wrk thread per connection). Prints requests/s, p50, p99, non-2xx answers
and lobby/bare per scenario, and for the lobby's run its event loop's late wake-ups and its
garbage collections (from its /metrics: what a p99 far above the p50 waited behind).

    .venv/bin/python benchmarks/lobby_throughput.py                 # 5 s per run, 32 connections
    .venv/bin/python benchmarks/lobby_throughput.py --seconds 15 --connections 32,128
    .venv/bin/python benchmarks/lobby_throughput.py --scenarios heartbeat --profile /tmp/lobby.svg
    .venv/bin/python benchmarks/lobby_throughput.py --flush-micro   # longest loop hold of a flush
    .venv/bin/python benchmarks/lobby_throughput.py --gc-micro      # a full collection, frozen or not
    .venv/bin/python benchmarks/lobby_throughput.py --scrape-micro  # one /metrics answer's CPU
    .venv/bin/python benchmarks/lobby_throughput.py --handler-micro # a heartbeat in the lobby's code

``--profile`` records the lobby with py-spy during one extra run of the first scenario (not measured).
Bounded: each wrk run lasts ``--seconds``; everything started is stopped on exit. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from arena.ids import new_player_id
from arena.tokens import TokenSigner
from ops.services import RedisServer, free_port

HERE = Path(__file__).resolve().parent
LUA = HERE / "lobby_throughput.lua"
SECRET = "bench-secret-0123456789-0123456789"
SCENARIOS = ("heartbeat", "leaderboard", "tickets")
START_TIMEOUT_S = 30.0


# ---- data ---------------------------------------------------------------------------------


def seed_board(url: str, players: int = 1000) -> None:
    """Today's quick daily board with ``players`` entries and their names, so the leaderboard
    scenario reads a real top 10 (a ZREVRANGE and an HMGET of names) when it is not cached."""
    import redis as sync_redis

    from arena import keys
    from arena.clock import now_ms
    from persistence.leaderboards import Timeframe, board_key, score
    from persistence.times import to_datetime

    key = board_key("quick", Timeframe.DAILY, to_datetime(now_ms()).date())
    client = sync_redis.Redis.from_url(url)
    try:
        client.zadd(key, {f"p{i}": score(40 + i % 160, 90 + i % 10) for i in range(players)})
        client.hset(keys.PLAYER_NAMES, mapping={f"p{i}": f"typist{i}" for i in range(players)})
    finally:
        client.close()


# ---- the bare server ---------------------------------------------------------------


def bare_server(port: int) -> None:
    """aiohttp + uvloop, one handler: parse the JSON body if any, answer a small JSON object."""
    import uvloop
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        raw = await request.read()
        data = json.loads(raw) if raw else {}
        if not isinstance(data, dict):
            return web.json_response({"error": "bad_body"}, status=400)
        status = 201 if request.method == "POST" and request.path == "/v1/tickets" else 200
        return web.json_response({"accepted": True, "ticket_id": "bare"}, status=status)

    app = web.Application(client_max_size=16 * 1024)
    app.router.add_route("*", "/{tail:.*}", handler)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096)


# ---- processes ------------------------------------------------------------------------


def pinned(core: int | None, argv: list[str]) -> list[str]:
    if core is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(core), *argv]


def wait_http(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url}: not ready after {START_TIMEOUT_S} s")


def spawn(stack: ExitStack, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = stack.enter_context(log.open("wb"))
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    stack.callback(stop)
    return proc


# ---- wrk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    cpu_us: float = float("nan")  # the server's CPU per request: steadier than req/s on a busy machine
    redis_us: float = float("nan")  # Redis's CPU per request (the lobby's runs only)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def parse_wrk(out: str) -> Run:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)(?:\.000)?%\s+(\S+)", out, re.M))
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return Run(
        rps=rps,
        p50_ms=_ms(pct.get("50", "")),
        p99_ms=_ms(pct.get("99", "")),
        non_2xx=int(non.group(1)) if non else 0,
        errors=sum(int(g) for g in errs.groups()) if errs else 0,
    )


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    base: str, scenario: str, connections: int, seconds: float, core: int | None, tokens: Path
) -> Run:
    threads = min(connections, 32) if scenario == "tickets" else 2
    connections = threads if scenario == "tickets" else connections
    argv = pinned(
        core,
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(LUA),
            base,
        ],
    )
    env = {**os.environ, "LOBBY_MODE": scenario, "LOBBY_TOKENS": str(tokens)}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def fmt(run: Run) -> str:
    bad = f"  non-2xx {run.non_2xx}" if run.non_2xx else ""
    bad += f"  socket errors {run.errors}" if run.errors else ""
    return (
        f"{run.rps:9,.0f} req/s  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms"
        f"  cpu {run.cpu_us:5.0f} us/req"
        + (f" + redis {run.redis_us:4.0f} us/req" if run.redis_us == run.redis_us else "")  # not NaN
        + bad
    )


# ---- the lobby's own view: loop lag and collector pauses -------------------------------


def lobby_counts(base: str) -> dict[str, float]:
    """From the lobby's /metrics: loop-lag buckets (``lag <= 0.005``, ...) and count (``lag``),
    GC pause counts and seconds per generation (``gc_count 2``, ``gc_sum 2``)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    counts: dict[str, float] = {}
    for le, value in re.findall(r'^arena_lobby_loop_lag_seconds_bucket\{le="([^"]+)"\} (\S+)$', text, re.M):
        counts[f"lag <= {float(le)}"] = float(value)
    for value in re.findall(r"^arena_lobby_loop_lag_seconds_count (\S+)$", text, re.M):
        counts["lag"] = float(value)
    for kind, gen, value in re.findall(
        r'^arena_lobby_gc_pause_seconds_(count|sum)\{generation="(\d)"\} (\S+)$', text, re.M
    ):
        counts[f"gc_{kind} {gen}"] = float(value)
    return counts


def fmt_stalls(before: dict[str, float], after: dict[str, float]) -> str:
    """The lobby's loop-lag wake-ups later than 5, 10, 25 ms, and its GC pauses, between two scrapes."""
    d = {k: v - before.get(k, 0.0) for k, v in after.items()}
    wakes = d.get("lag", 0.0)
    late = {ms: wakes - d.get(f"lag <= {ms / 1000}", wakes) for ms in (5, 10, 25)}
    gcs = ", ".join(
        f"gen{g} {d.get(f'gc_count {g}', 0):.0f} ({d.get(f'gc_sum {g}', 0) * 1e3:.0f} ms)" for g in range(3)
    )
    return (
        f"loop lag: {wakes:,.0f} wake-ups, late > 5 ms {late[5]:.0f}, > 10 ms {late[10]:.0f}, "
        f"> 25 ms {late[25]:.0f}; gc: {gcs}"
    )


# ---- main -----------------------------------------------------------------------------


def sync_micro(rounds: int = 30, subjects: int = 2000) -> None:
    """The lobby's CPU per subject of one rate-limit sync (``RateLimiter.sync``), against a
    redis-server of its own: the part of a heartbeat that the wrk runs cannot isolate."""
    import asyncio

    import redis.asyncio as aioredis

    from lobby.ratelimit import RateLimiter

    async def measure(url: str) -> float:
        client = aioredis.Redis.from_url(url, socket_timeout=5)
        limiter = RateLimiter(client, per_player=10**9, per_ip=0, window_s=60, sync_s=0.1)
        spent = 0.0
        for _ in range(rounds):
            for i in range(subjects):
                limiter.check_local("", f"p{i}")
            started = time.process_time()
            await limiter.sync()
            spent += time.process_time() - started
        await client.aclose()
        return spent / rounds / subjects

    with RedisServer() as redis:
        per_subject = asyncio.run(measure(redis.url))
    us = per_subject * 1e6
    print(f"rate-limit sync: {us:.2f} us of lobby CPU per subject ({rounds} syncs of {subjects:,})")


def flush_micro(rounds: int = 10, players: int = 10_000) -> None:
    """One presence flush of ``players`` players against a redis-server of its own: the longest
    stretch it held the event loop and its CPU per player, both in this thread's CPU time (what
    the lobby's other requests wait behind; unlike wall time, not stretched by a busy machine)."""
    import asyncio

    import redis.asyncio as aioredis

    from lobby.metrics import LobbyMetrics
    from lobby.presence import PresenceBatcher

    async def measure(url: str) -> tuple[float, float]:
        import gc

        gc.collect()  # the collector as a lobby sets it (lobby/collector.py): the flush's own
        gc.freeze()  # holds are measured, not a full collection of this process's heap
        gc.set_threshold(50_000, 10, 10)
        client = aioredis.Redis.from_url(url, socket_timeout=5)
        batcher = PresenceBatcher(
            client, LobbyMetrics(), regions=("local",), ttl_s=300, flush_s=60, max_buffer=players
        )
        held = spent = 0.0
        for _ in range(rounds):
            # Its CPU: the flush alone (a task turning the loop would add its own spinning).
            for i in range(players):
                batcher.beat(f"player-{i:08d}", "local")
            started = time.thread_time()
            await batcher.flush()
            spent += time.thread_time() - started
            # The longest stretch between two turns of the loop while it runs.
            for i in range(players):
                batcher.beat(f"player-{i:08d}", "local")
            flush = asyncio.create_task(batcher.flush())
            while not flush.done():
                turn = time.thread_time()
                await asyncio.sleep(0)
                held = max(held, time.thread_time() - turn)
            await flush
        await client.aclose()
        return held, spent / rounds / players

    with RedisServer() as redis:
        held, per_player = asyncio.run(measure(redis.url))
    print(
        f"presence flush of {players:,} players: held the loop {held * 1e3:.1f} ms at most, "
        f"{per_player * 1e6:.2f} us of lobby CPU per player ({rounds} flushes)"
    )


def gc_micro(tokens: int = 10_000) -> None:
    """A full collection of a lobby's heap (its app built, ``tokens`` verified tokens cached),
    in this thread's CPU time, without and with ``gc.freeze()`` after start-up (lobby/collector.py)."""
    import gc

    from arena.tokens import PlayerTokenCache
    from lobby.app import build_app
    from lobby.settings import LobbySettings

    app = build_app(LobbySettings())  # every module and route of a lobby
    signer = TokenSigner(SECRET.encode())
    minted = [signer.sign_player(new_player_id(), f"bench{i}", ttl_s=3600, guest=True) for i in range(tokens)]

    def cached() -> PlayerTokenCache:
        cache = PlayerTokenCache(signer, max_size=tokens)
        for t in minted:
            cache.verify_player(t)
        return cache

    def full_ms() -> float:
        started = time.thread_time()
        gc.collect()
        return (time.thread_time() - started) * 1e3

    cache = cached()
    walked = len(gc.get_objects())
    before = [full_ms() for _ in range(3)]
    del cache
    gc.collect()
    gc.freeze()  # what the lobby does once started; the tokens are cached after it, as in a lobby
    cache = cached()
    after = [full_ms() for _ in range(3)]
    print(
        f"full collection, {walked:,} objects: {min(before):.1f}-{max(before):.1f} ms of CPU; "
        f"start-up heap frozen ({gc.get_freeze_count():,} objects): {min(after):.1f}-{max(after):.1f} ms"
    )
    gc.unfreeze()
    del app, cache


def handler_micro(players: int = 1000, batch: int = 2000, rounds: int = 40) -> None:
    """A heartbeat's CPU in the lobby's own code: ``POST /v1/presence`` through the app's
    middleware, routing and handler (``Application._handle``), without sockets, HTTP parsing or
    the answer's write (the bare handler pays those too). Requests are built with aiohttp's
    ``make_mocked_request`` (fake transport) before each timed batch of ``batch``; the figure is
    this thread's CPU per request, the lowest and the median of ``rounds`` batches. The lobby's
    parts are real (token cache, batched rate limiter, presence buffer, metrics); its Redis is
    never called (nothing is flushed or synced here)."""
    import asyncio
    import gc
    from typing import Any

    import redis.asyncio as aioredis
    from aiohttp.streams import StreamReader
    from aiohttp.test_utils import make_mocked_request

    from arena.tokens import PlayerTokenCache
    from lobby.app import METRICS_KEY, build_app
    from lobby.context import LOBBY_KEY, Lobby
    from lobby.presence import PresenceBatcher
    from lobby.ratelimit import RateLimiter
    from lobby.settings import LobbySettings

    class Fake:  # the transport, protocol and writer a request reads a few fields of
        ssl_context = None
        sockname = ("127.0.0.1", 8000)
        peername = ("127.0.0.1", 40000)
        transport = None
        buffer_size = output_size = 0

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return self.peername if name == "peername" else default

        def is_closing(self) -> bool:
            return False

        def pause_reading(self, **_: Any) -> None:
            pass

        def resume_reading(self, **_: Any) -> None:
            pass

    async def run() -> list[float]:
        settings = LobbySettings()
        app = build_app(settings)
        metrics = app[METRICS_KEY]
        redis = aioredis.Redis(host="127.0.0.1", port=1)  # never connected
        signer = TokenSigner(SECRET.encode())
        limiter = RateLimiter(redis, per_player=10**9, per_ip=0, window_s=60, sync_s=0.1)
        presence = PresenceBatcher(
            redis, metrics, regions=settings.regions, ttl_s=120, flush_s=1.0, max_buffer=10**6
        )
        parts: dict[str, Any] = dict.fromkeys(
            ("accounts", "tickets", "ratings", "nodes", "placer", "events", "private_races", "pool")
        )
        app[LOBBY_KEY] = Lobby(
            settings=settings,
            metrics=metrics,
            signer=signer,
            player_tokens=PlayerTokenCache(signer, max_size=100_000),
            redis=redis,
            limiter=limiter,
            presence=presence,
            **parts,
        )
        app.freeze()
        tokens = [
            "Bearer " + signer.sign_player(new_player_id(), f"bench{i}", ttl_s=3600, guest=True)
            for i in range(players)
        ]
        body = json.dumps({"region": settings.regions[0]}).encode()
        loop = asyncio.get_running_loop()
        fake = Fake()

        def request(i: int) -> Any:
            payload = StreamReader(fake, 2**16, loop=loop)  # type: ignore[arg-type]
            payload.feed_data(body)
            payload.feed_eof()
            headers = {"Authorization": tokens[i % players], "Content-Type": "application/json"}
            return make_mocked_request(
                "POST",
                "/v1/presence",
                headers=headers,
                payload=payload,
                app=app,
                writer=fake,
                protocol=fake,
                transport=fake,
                loop=loop,
            )

        first = await app._handle(request(0))
        assert first.status == 202, first.status
        results: list[float] = []
        for _ in range(rounds):
            requests = [request(i) for i in range(batch)]
            gc.collect()
            started = time.thread_time()
            for one in requests:
                await app._handle(one)
            results.append((time.thread_time() - started) / batch * 1e6)
        return sorted(results)

    runs = asyncio.run(run())
    lowest, median = runs[0], runs[rounds // 2]
    print(
        f"heartbeat through the lobby's middleware and handler (no sockets): {lowest:.1f} us of CPU "
        f"per request (lowest of {rounds} batches of {batch}), median {median:.1f}"
    )


def scrape_micro(statuses: tuple[int, ...] = (200, 400, 401, 429)) -> None:
    """One ``/metrics`` answer (``generate_latest``) of a lobby whose every route answered each of
    ``statuses``, in this thread's CPU time: how long a scrape holds the lobby's event loop."""
    from prometheus_client import generate_latest

    from lobby.app import METRICS_KEY, build_app
    from lobby.settings import LobbySettings

    app = build_app(LobbySettings())
    metrics = app[METRICS_KEY]
    routes = sorted({r.resource.canonical for r in app.router.routes() if r.resource is not None})
    for route in routes:
        for status in statuses:
            for seconds in (0.0005, 0.003, 0.02):
                metrics.answered(route, "GET", status, seconds)
    runs: list[float] = []
    for _ in range(20):
        started = time.thread_time()
        text = generate_latest(metrics.registry)
        runs.append((time.thread_time() - started) * 1e3)
    runs.sort()
    lines = text.count(b"\n")
    print(
        f"/metrics of {len(routes)} routes x {len(statuses)} statuses: {len(text):,} bytes, {lines:,} lines; "
        f"generate_latest {runs[0]:.1f} ms of CPU (min of 20), median {runs[10]:.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run (default 5)")
    ap.add_argument("--connections", default="32", help="comma list of connection counts (default 32)")
    ap.add_argument("--players", type=int, default=10_000, help="distinct player tokens (default 10,000)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma list of {', '.join(SCENARIOS)}")
    ap.add_argument("--server-core", type=int, default=0, help="core of Redis and both servers")
    ap.add_argument("--wrk-core", type=int, default=1, help="core of wrk")
    ap.add_argument(
        "--profile", type=Path, help="py-spy profile in an extra run of the first scenario (.txt: raw stacks)"
    )
    ap.add_argument("--sync-micro", action="store_true", help="only time one rate-limit sync per subject")
    ap.add_argument(
        "--flush-micro", action="store_true", help="only time one presence flush (longest loop hold)"
    )
    ap.add_argument(
        "--gc-micro", action="store_true", help="only time a full collection, unfrozen and frozen"
    )
    ap.add_argument(
        "--handler-micro", action="store_true", help="only time a heartbeat in the lobby's code (no sockets)"
    )
    ap.add_argument(
        "--scrape-micro", action="store_true", help="only time one /metrics answer (generate_latest)"
    )
    ap.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)  # internal: run the bare server
    args = ap.parse_args(argv)
    if args.bare_server:
        bare_server(args.bare_server)
        return 0
    if args.sync_micro:
        sync_micro()
        return 0
    if args.flush_micro:
        flush_micro()
        return 0
    if args.handler_micro:
        handler_micro()
        return 0
    if args.scrape_micro:
        scrape_micro()
        return 0
    if args.gc_micro:
        gc_micro()
        return 0
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    scenarios = [s for s in args.scenarios.split(",") if s]
    if unknown := set(scenarios) - set(SCENARIOS):
        raise SystemExit(f"unknown scenarios: {sorted(unknown)}")
    counts = [int(c) for c in args.connections.split(",")]
    cores = os.cpu_count() or 1
    server_core = args.server_core if args.server_core < cores else None
    wrk_core = args.wrk_core if args.wrk_core < cores and args.wrk_core != args.server_core else None

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lobby-bench-")))
        signer = TokenSigner(SECRET.encode())
        tokens = work / "tokens.txt"
        tokens.write_text(
            "\n".join(
                signer.sign_player(new_player_id(), f"bench{i}", ttl_s=3600, guest=True)
                for i in range(args.players)
            )
            + "\n"
        )
        redis = stack.enter_context(RedisServer())
        seed_board(redis.url)
        if server_core is not None and redis.pid is not None:
            subprocess.run(
                ["taskset", "-pc", str(server_core), str(redis.pid)], capture_output=True, check=False
            )
        lobby_port, bare_port = free_port(), free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
            "ARENA_ENV": "development",
            "ARENA_TOKEN_SECRET": SECRET,
            "ARENA_REDIS_URL": redis.url,
            "ARENA_LOBBY_HOST": "127.0.0.1",
            "ARENA_LOBBY_PORT": str(lobby_port),
            "ARENA_LOBBY_RATE_PER_IP": "0",  # one client IP here; the per-player limit stays on
            "ARENA_LOG_LEVEL": "warning",
            "ARENA_POSTGRES_DSN": "postgresql://127.0.0.1:9/none",  # no history route is measured
        }
        lobby = spawn(stack, pinned(server_core, [sys.executable, "-m", "lobby"]), env, work / "lobby.log")
        bare = spawn(
            stack,
            pinned(
                server_core, [sys.executable, str(Path(__file__).resolve()), "--bare-server", str(bare_port)]
            ),
            env,
            work / "bare.log",
        )
        wait_http(f"http://127.0.0.1:{lobby_port}/readyz", lobby)
        wait_http(f"http://127.0.0.1:{bare_port}/", bare)
        print(
            f"lobby and Redis on core {server_core}, wrk on core {wrk_core}; {args.players:,} players; "
            f"{args.seconds:g} s per run",
            flush=True,
        )

        def measured(pid: int, base: str, scenario: str, c: int, with_redis: bool = False) -> Run:
            redis_pid = redis.pid if with_redis else None
            before, redis_before = cpu_s(pid), cpu_s(redis_pid) if redis_pid else 0.0
            run = run_wrk(base, scenario, c, args.seconds, wrk_core, tokens)
            requests = max(1.0, run.rps * args.seconds)
            run = replace(run, cpu_us=(cpu_s(pid) - before) * 1e6 / requests)
            if redis_pid:
                run = replace(run, redis_us=(cpu_s(redis_pid) - redis_before) * 1e6 / requests)
            return run

        for c in counts:
            for scenario in scenarios:
                base_l, base_b = f"http://127.0.0.1:{lobby_port}", f"http://127.0.0.1:{bare_port}"
                # bare, lobby, bare: the bare figure is the mean of the two around the lobby's run
                b1 = measured(bare.pid, base_b, scenario, c)
                seen = lobby_counts(base_l)
                lob = measured(lobby.pid, base_l, scenario, c, with_redis=True)
                stalls = fmt_stalls(seen, lobby_counts(base_l))
                b2 = measured(bare.pid, base_b, scenario, c)
                bare_rps = (b1.rps + b2.rps) / 2
                conns = min(c, 32) if scenario == "tickets" else c
                print(f"{scenario:<11} c={conns:<4} lobby {fmt(lob)}", flush=True)
                print(f"{'':<11} {'':<6}       {stalls}", flush=True)
                print(f"{'':<11} {'':<6} bare  {fmt(b1)}", flush=True)
                print(f"{'':<11} {'':<6} bare  {fmt(b2)}", flush=True)
                bare_cpu = (b1.cpu_us + b2.cpu_us) / 2
                print(
                    f"{'':<11} {'':<6} lobby / bare = {lob.rps / bare_rps:.0%} of req/s, "
                    f"{bare_cpu / lob.cpu_us:.0%} by CPU per request",
                    flush=True,
                )
        if args.profile is not None:
            spy = Path(sys.executable).with_name("py-spy")
            record = subprocess.Popen(
                pinned(
                    wrk_core,
                    [str(spy), "record", "-p", str(lobby.pid), "-o", str(args.profile), "-r", "250",
                     "-d", f"{args.seconds:g}", "--nonblocking",
                     "-f", "raw" if args.profile.suffix == ".txt" else "flamegraph"],
                ),
            )  # fmt: skip
            time.sleep(0.5)
            run_wrk(f"http://127.0.0.1:{lobby_port}", scenarios[0], counts[0], args.seconds, wrk_core, tokens)
            record.wait(timeout=args.seconds + 30)
            print(f"profile: {args.profile}")
        if lobby.poll() is not None:
            tail = (work / "lobby.log").read_text()[-2000:]
            print(f"the lobby exited with {lobby.returncode}; its log:\n{tail}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
