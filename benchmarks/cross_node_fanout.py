"""Cross-node fan-out: progress frames a node relays to spectators of races another node owns.

    .venv/bin/python benchmarks/cross_node_fanout.py       # 40 races, 2 remote spectators each
    .venv/bin/python benchmarks/cross_node_fanout.py --races 100 --spectators 4 --window 30 --json out.json
    .venv/bin/python benchmarks/cross_node_fanout.py --redis-cluster   # a Redis Cluster: 3 masters + replicas

The path (``gameserver/room.py``, ``gameserver/relay.py``): node A owns the races; a spectator
on node B sends ``spectate``; B subscribes to ``race:{id}:updates`` and marks the race watched;
A, seeing it watched (checked once a second), queues each progress frame it broadcasts
(``room.to_publish``) and publishes it in the tick's pipelined Redis round trip; B writes it to
its spectators as it came.

Workload: Redis and two ``python -m gameserver`` nodes on loopback. On A, races of 5 players
(``benchmarks/loadgen``: an input every 500 ms, marathon passages, nobody finishes); on B,
``--spectators`` per race. After a warm-up, for ``--window`` seconds, every progress frame is
matched by its bytes (B relays A's msgpack frames as they came): the latency the relay adds
is when a spectator on B received a frame minus when the first of the race's players on A
received it (one process, one monotonic clock). Printed: relayed frames/s (to B's sockets,
and distinct frames/s through pub/sub), added latency p50/p95/p99/max, frames A's players got
that a B spectator never did, CPU and memory of both nodes and Redis, the CPU of other
processes, and whether this generator was saturated.
Bounded in time; stops everything it started on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.codec import WireFormat, encode  # noqa: E402
from arena.ids import PlayerId  # noqa: E402
from arena.protocol import Hello, Spectate  # noqa: E402
from arena.tokens import TokenSigner  # noqa: E402
from benchmarks.loadgen import AdminClient, Player, RaceGroup, RaceSeats, Swarm  # noqa: E402
from benchmarks.node_capacity import NodeProcess, bench_node_env  # noqa: E402
from ops.rediscluster import LocalRedisCluster  # noqa: E402
from ops.services import RedisServer, free_port  # noqa: E402
from simulators.procstat import machine_busy, process_cpu, process_rss_mb, self_cpu  # noqa: E402
from simulators.swarm.saturation import Verdict, WorkerLoad, judge  # noqa: E402
from simulators.swarm.stats import Percentiles, percentiles  # noqa: E402

HOST = "127.0.0.1"
ADMIN_TOKEN = secrets.token_urlsafe(32)  # strong, random: the nodes run as in production
TOKEN_SECRET = secrets.token_urlsafe(32)
RACE_SIZE = 5
READY_TIMEOUT_S = 30.0
_PROGRESS_T = b"\xa1t\xa8progress"  # msgpack of "t": "progress", right after the map header
LAG_PERIOD_S = 0.05


@dataclass
class Spectator:
    """One spectator socket on B; records the receive time of each progress frame in the window."""

    race_id: str
    ws: aiohttp.ClientWebSocketResponse
    seen: list[tuple[bytes, float]] = field(default_factory=list)
    frames: int = 0
    task: asyncio.Task[None] | None = None


@dataclass
class Window:
    start: float = float("inf")
    end: float = float("inf")

    def holds(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class Reference:
    """When the first of a race's players on A received each progress frame (in the window)."""

    first_seen: dict[bytes, float] = field(default_factory=dict)
    by_race: dict[str, set[bytes]] = field(default_factory=dict)


class TimedRaceGroup(RaceGroup):
    """A loadgen race whose first copy of each progress frame is timed: the reference."""

    def __init__(self, race_id: str, window: Window, reference: Reference) -> None:
        super().__init__(race_id)
        self.window = window
        self.reference = reference
        self.payloads = reference.by_race.setdefault(race_id, set())

    def on_progress(self, receiver: Player, payload: bytes) -> None:
        if payload != self.last_payload:  # the first copy of a frame (later ones are not decoded)
            now = time.monotonic()
            if self.window.holds(now):
                self.reference.first_seen.setdefault(payload, now)
                self.payloads.add(payload)
        super().on_progress(receiver, payload)


class TimedSwarm(Swarm):
    """The loadgen swarm with ``TimedRaceGroup`` races."""

    def __init__(
        self, host: str, port: int, window: Window, reference: Reference, *, follow_cadence: bool
    ) -> None:
        super().__init__(host, port, follow_cadence=follow_cadence)
        self.window = window
        self.reference = reference

    def new_group(self, race_id: str) -> RaceGroup:
        return TimedRaceGroup(race_id, self.window, self.reference)


@dataclass(frozen=True)
class Result:
    races: int
    players: int
    remote_spectators: int
    tick_hz: float | None
    window_s: float
    relayed_frames_per_s: float  # progress frames written to B's spectator sockets (received)
    distinct_frames_per_s: float  # distinct frames through pub/sub
    owner_frames_per_s: float  # distinct progress frames A's players received
    added_latency_ms: Percentiles
    lost: int  # frames A's players got (before the window's last second) that a B spectator missed
    unmatched: int  # frames a B spectator got that no player on A did in the window
    processes: dict[str, dict[str, float]]
    others_cpu_pct: float  # what processes outside this benchmark used in the window, % of a core
    generator: WorkerLoad
    verdict: Verdict


async def open_spectator(url: str, token: str, race_id: str, window: Window) -> Spectator:
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(url, autoping=True, max_msg_size=1 << 20)
    ws._fanout_http = http  # type: ignore[attr-defined]  # closed with the socket
    await ws.send_bytes(_bytes(encode(Hello(token=token), WireFormat.MSGPACK)))
    await ws.send_bytes(_bytes(encode(Spectate(race_id=race_id), WireFormat.MSGPACK)))
    spectator = Spectator(race_id, ws)
    spectator.task = asyncio.create_task(_read(spectator, window))
    return spectator


def _bytes(frame: bytes | str) -> bytes:
    assert isinstance(frame, bytes)
    return frame


async def _read(spectator: Spectator, window: Window) -> None:
    """Progress frames are recognised by their leading bytes: no decoding in the hot path."""
    async for msg in spectator.ws:
        if msg.type is not aiohttp.WSMsgType.BINARY:
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
                break
            continue
        data: bytes = msg.data
        if data[1 : 1 + len(_PROGRESS_T)] != _PROGRESS_T:
            continue
        now = time.monotonic()
        if window.holds(now):
            spectator.seen.append((data, now))
            spectator.frames += 1


async def close_spectator(spectator: Spectator) -> None:
    if spectator.task is not None:
        spectator.task.cancel()
        await asyncio.gather(spectator.task, return_exceptions=True)
    await spectator.ws.close()
    await spectator.ws._fanout_http.close()  # type: ignore[attr-defined]


async def probe_lag(lags: list[float], window: Window, stop: asyncio.Event) -> None:
    while not stop.is_set():
        expected = time.monotonic() + LAG_PERIOD_S
        await asyncio.sleep(LAG_PERIOD_S)
        now = time.monotonic()
        if window.holds(now):
            lags.append(max(0.0, (now - expected) * 1000.0))


def added_latencies(
    spectators: list[Spectator], reference: Reference, window_end: float
) -> tuple[list[float], int, int]:
    """(relay latencies ms, lost, unmatched): a B spectator's receive time minus the first
    receive by a player of the race on A, frames matched by their bytes."""
    latencies: list[float] = []
    lost = unmatched = 0
    for spectator in spectators:
        got = set()
        for payload, t in spectator.seen:
            got.add(payload)
            owner_t = reference.first_seen.get(payload)
            if owner_t is None:
                unmatched += 1
            else:
                latencies.append((t - owner_t) * 1000.0)
        sent = reference.by_race.get(spectator.race_id, set())
        lost += sum(1 for p in sent - got if reference.first_seen[p] < window_end - 1.0)
    return latencies, lost, unmatched


def node_env(node_id: str, port: int, redis_url: str, tick_hz: float | None, players: int) -> dict[str, str]:
    env = bench_node_env(
        node_id, redis_url, port, players, admin_token=ADMIN_TOKEN, token_secret=TOKEN_SECRET
    )
    env |= {"ARENA_RACE_COUNTDOWN_S": "2", "ARENA_RACE_WAIT_TIMEOUT_S": "120", "ARENA_LOG_LEVEL": "warning"}
    if tick_hz is not None:
        env["ARENA_RACE_TICK_HZ"] = str(tick_hz)
    return env


async def run(args: argparse.Namespace, redis: RedisServer | LocalRedisCluster, work: Path) -> Result:
    players = args.races * RACE_SIZE
    spectators_n = args.races * args.spectators
    ports = {"a": free_port(), "b": free_port()}
    nodes = {
        name: NodeProcess(
            ROOT, node_env(f"fanout-{name}", port, redis.url, args.tick_hz, players + spectators_n), None,
            work / f"node-{name}.log",
        )
        for name, port in ports.items()
    }  # fmt: skip
    for node in nodes.values():
        node.start()
    window = Window()
    reference = Reference()
    swarm = TimedSwarm(HOST, ports["a"], window, reference, follow_cadence=not args.ignore_cadence)
    spectators: list[Spectator] = []
    stop = asyncio.Event()
    lags: list[float] = []
    prober = asyncio.create_task(probe_lag(lags, window, stop))
    try:
        for node in nodes.values():
            await node.wait_ready(READY_TIMEOUT_S)
        seats: list[RaceSeats] = []
        async with AdminClient(nodes["a"].admin_url, ADMIN_TOKEN, race_type="marathon") as admin:

            async def make_race(index: int) -> RaceSeats:
                race = await admin.create_race([f"p{index}-{j}" for j in range(RACE_SIZE)])
                seats.append(race)
                return race

            swarm.start_timer()
            async with asyncio.timeout(args.ramp_timeout):
                await swarm.add_races(args.races, make_race, concurrency=20, join_timeout_s=30.0)
        if sum(swarm.connect_failures.values()):
            raise RuntimeError(f"players could not join: {dict(swarm.connect_failures)}")
        if not await swarm.wait_started(30.0):
            raise RuntimeError("not every race started within 30 s")
        signer = TokenSigner(TOKEN_SECRET.encode())
        url_b = f"ws://{HOST}:{ports['b']}/ws"
        n = 0
        for race in seats:
            for _ in range(args.spectators):
                n += 1
                token = signer.sign_player(PlayerId(f"pwatch{n}"), f"watch{n}", ttl_s=3600, guest=True)
                spectators.append(await open_spectator(url_b, token, race.race_id, window))
        # The owner learns a race is watched within a second; let everything settle.
        await asyncio.sleep(args.warmup)
        cpu0 = {name: process_cpu(node.pid).total_s for name, node in nodes.items()}
        redis_pids = _redis_pids(redis)
        cpu0 |= {name: process_cpu(pid).total_s for name, pid in redis_pids.items()}
        gen0 = self_cpu().total_s
        busy0, total0 = machine_busy()
        window.start = time.monotonic()
        window.end = window.start + args.window
        await asyncio.sleep(args.window)
        elapsed = time.monotonic() - window.start
        busy1, total1 = machine_busy()
        gen_cpu = 100.0 * (self_cpu().total_s - gen0) / elapsed
        pids = {name: node.pid for name, node in nodes.items()} | redis_pids
        processes = {
            name: {
                "cpu_pct": round(100.0 * (process_cpu(pid).total_s - cpu0[name]) / elapsed, 1),
                "rss_mb": round(process_rss_mb(pid), 1),
            }
            for name, pid in pids.items()
        }
        machine_pct = 100.0 * (os.cpu_count() or 1) * (busy1 - busy0) / max(1.0, total1 - total0)
        others = machine_pct - gen_cpu - sum(p["cpu_pct"] for p in processes.values())
        await asyncio.sleep(1.0)  # late frames of the window still arrive
    finally:
        stop.set()
        await prober
        swarm.close_all()
        await asyncio.gather(*(close_spectator(s) for s in spectators), return_exceptions=True)
        for node in nodes.values():
            node.stop()
    latencies, lost, unmatched = added_latencies(spectators, reference, window.end)
    generator = WorkerLoad(
        worker=0,
        pid=os.getpid(),
        cpu_pct_mean=round(gen_cpu, 1),
        cpu_pct_peak=round(gen_cpu, 1),
        loop_lag_p99_ms=percentiles(lags).p99,
    )
    return Result(
        races=args.races,
        players=players,
        remote_spectators=len(spectators),
        tick_hz=args.tick_hz,
        window_s=round(elapsed, 2),
        relayed_frames_per_s=round(sum(s.frames for s in spectators) / elapsed, 1),
        distinct_frames_per_s=round(len({p for s in spectators for p, _ in s.seen}) / elapsed, 1),
        owner_frames_per_s=round(len(reference.first_seen) / elapsed, 1),
        added_latency_ms=percentiles(latencies),
        lost=lost,
        unmatched=unmatched,
        processes=processes,
        others_cpu_pct=round(max(0.0, others), 1),
        generator=generator,
        verdict=judge([generator]),
    )


def format_result(r: Result) -> str:
    lat = r.added_latency_ms

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = []
    if r.verdict.saturated:
        lines += ["!" * 78, "!! THE GENERATOR WAS SATURATED: the figures below are not the nodes'."]
        lines += [f"!!   {reason}" for reason in r.verdict.reasons] + ["!" * 78]
    lines += [
        f"races on node A     {r.races} x {RACE_SIZE} players ({r.players}), tick "
        f"{'default' if r.tick_hz is None else f'{r.tick_hz:g} Hz'}",
        f"spectators on B     {r.remote_spectators} ({r.remote_spectators // max(1, r.races)} per race)",
        f"window              {r.window_s:.1f} s",
        f"frames/s            A's players got {r.owner_frames_per_s:.0f} distinct; through pub/sub "
        f"{r.distinct_frames_per_s:.0f} distinct; B relayed {r.relayed_frames_per_s:.0f} to its spectators",
        f"added latency       p50 {ms(lat.p50)}  p95 {ms(lat.p95)}  p99 {ms(lat.p99)}  max {ms(lat.max)} ms"
        f"  (B spectator minus A's first player, n={lat.count})",
        f"lost / unmatched    {r.lost} / {r.unmatched}",
    ]
    for name, p in r.processes.items():
        lines.append(f"  {name:<8} CPU {p['cpu_pct']:5.1f}% of a core   RSS {p['rss_mb']:6.1f} MB")
    lines.append(f"  others   CPU {r.others_cpu_pct:5.1f}% of a core (processes outside this benchmark)")
    g = r.generator
    lines.append(
        f"  generator CPU {g.cpu_pct_mean:5.1f}%, loop lag p99 {ms(g.loop_lag_p99_ms)} ms: "
        + ("SATURATED" if r.verdict.saturated else "not saturated")
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--races", type=int, default=40, help="races on the owner node (5 players each)")
    parser.add_argument(
        "--ignore-cadence",
        action="store_true",
        help="players keep phases of their own: about three times the frames per race",
    )
    parser.add_argument("--spectators", type=int, default=2, help="spectators per race on the other node")
    parser.add_argument("--window", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--ramp-timeout", type=float, default=60.0)
    parser.add_argument("--tick-hz", type=float, default=None, help="the nodes' tick (default: theirs)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON")
    parser.add_argument(
        "--redis-cluster", action="store_true", help="a Redis Cluster (3 masters, a replica each)"
    )
    args = parser.parse_args(argv)
    if args.races < 1 or args.spectators < 1 or args.window <= 0:
        parser.error("--races, --spectators and --window must be positive")
    return args


def _redis_pids(redis: RedisServer | LocalRedisCluster) -> dict[str, int]:
    """One Redis's pid as "redis", or a cluster's as "redis:PORT" (replicas too: they replay writes)."""
    if isinstance(redis, RedisServer):
        servers = [("redis", redis)]
    else:
        servers = [(f"redis:{n.port}", n) for n in redis.nodes]
    pids = {name: server.pid for name, server in servers}
    return {name: pid for name, pid in pids.items() if pid is not None}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="typogram-fanout-"))
    try:
        with LocalRedisCluster() if args.redis_cluster else RedisServer() as redis:
            result: Result = uvloop.run(run(args, redis, work))
    except KeyboardInterrupt:
        print("interrupted: nodes and Redis stopped", file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc} (node logs in {work})", file=sys.stderr)
        return 1
    print(format_result(result))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(result), indent=1))
    return 1 if result.verdict.saturated else 0


if __name__ == "__main__":
    sys.exit(main())
