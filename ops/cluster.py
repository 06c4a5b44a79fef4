"""``make run``: a whole local cluster on loopback, started by the project's own code.

Order: Redis (AOF on, for the durable outbox), PostgreSQL, the Kafka-protocol broker, then the
Arena processes (two gameserver nodes, matchmaker, lobby with the page, persistence, the
tournament director), bots that keep racing (live races to watch), and house bots that wait in
every matchmaking queue so a person alone gets a race within seconds (``simulators.house``).
Data lives under ``.run/`` and is reused by the next run.

Ctrl-C (SIGINT), SIGTERM or SIGHUP stops everything in order, with one SIGTERM per process:
whatever places races first (house bots, racing bots, the matchmaker, the tournament
director), then the lobby, then the nodes (they abort what still runs after a short grace,
results to the outbox), then persistence once it has drained the outbox, then the backing
services. Every child runs in its own session, so a terminal's Ctrl-C reaches this launcher
only and it alone decides the order; a second Ctrl-C changes nothing.

Ports are free ones picked at each run, or fixed from ``ARENA_CLUSTER_PORT_BASE`` (``--port-base``):
the page at the base, then the nodes, the services and the backing servers (``PORT_OFFSETS``).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import redis

from arena import keys
from arena.backoff import Backoff, BackoffSettings
from arena.settings import SettingsError, env_int
from ops.services import HOST, KafkaBroker, PostgresServer, RedisServer, ServiceError, free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET_NAMES = ("ARENA_TOKEN_SECRET", "ARENA_ADMIN_TOKEN")
# The Arena processes besides the nodes: module name -> the setting that gives its HTTP port.
SERVICES = {
    "matchmaker": "ARENA_MM_PORT",
    "lobby": "ARENA_LOBBY_PORT",
    "persistence": "ARENA_PERSIST_PORT",
    "tournaments": "ARENA_TOURNAMENT_PORT",
}
# A process that exits is restarted after 1 s, doubling up to 60 s while it keeps exiting;
# one that ran HEALTHY_RUN_S first is restarted after the base delay again.
RESTART_BACKOFF = BackoffSettings(base_s=1.0, cap_s=60.0, jitter=0.5)
HEALTHY_RUN_S = 30.0
# Fixed ports (ARENA_CLUSTER_PORT_BASE): the page first, so its address is the base itself.
PORT_OFFSETS = {
    "lobby": 0,
    "node-1": 1,
    "node-2": 2,
    "matchmaker": 3,
    "persistence": 4,
    "tournaments": 5,
    "redis": 6,
    "postgres": 7,
    "kafka": 8,
    "node-1-admin": 9,  # the nodes' admin listeners (/admin/*, /metrics)
    "node-2-admin": 10,
}
# Stop stages, in order: nothing new is placed, no new tickets, no races, results persisted.
STAGE_PLACERS = 0  # house bots, racing bots, matchmaker, tournament director
STAGE_LOBBY = 1
STAGE_NODES = 2
STAGE_PERSISTENCE = 3
# Shutdown graces the cluster gives its processes unless the environment sets them. Nodes: once
# the bots are gone nobody finishes a race, so waiting long only delays the abort (whose results
# still go to the outbox). Lobby: a page's long-poll to a cluster going down needs no answer.
LOCAL_GRACES = {"ARENA_NODE_SHUTDOWN_GRACE_S": "1", "ARENA_LOBBY_SHUTDOWN_GRACE_S": "1"}
STOP_TIMEOUT_S = 15.0  # a process still running this long after its SIGTERM is killed (and reported)
FREE_PORTS_HINT = "  ports       new at each run; ARENA_CLUSTER_PORT_BASE=8300 fixes them (page at :8300)\n"
OUTBOX_FLUSH_TIMEOUT_S = 10.0  # persistence stops after this even with outbox entries left (kept in Redis)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    # ARENA_CLUSTER_PORT_BASE: 0 = free ports picked at each run; else fixed ports from it (the
    # page at the base itself, the others after it, see PORT_OFFSETS), so a bookmark keeps working.
    port_base: int = 0

    def __post_init__(self) -> None:
        top = 65535 - max(PORT_OFFSETS.values())
        if self.port_base != 0 and not 1024 <= self.port_base <= top:
            raise SettingsError(f"ARENA_CLUSTER_PORT_BASE must be 0 (free ports) or 1024 to {top}")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClusterSettings:
        return cls(port_base=env_int(env, "ARENA_CLUSTER_PORT_BASE", cls().port_base))


def local_secrets(run_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``ARENA_TOKEN_SECRET`` and ``ARENA_ADMIN_TOKEN`` for the cluster's processes: the
    environment's where set, else random ones made by the first run and kept in
    ``<run_dir>/secrets.json`` (mode 0600), so the next run still accepts the page's sessions.
    Never the public development defaults, though the cluster runs with ``ARENA_ENV=development``."""
    path = run_dir / "secrets.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = None
    if not isinstance(kept, dict) or not all(isinstance(kept.get(n), str) and kept[n] for n in SECRET_NAMES):
        kept = {name: secrets.token_urlsafe(32) for name in SECRET_NAMES}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(kept, out)
    return {name: env.get(name) or kept[name] for name in SECRET_NAMES}


def fixed_ports(base: int) -> dict[str, int]:
    return {name: base + offset for name, offset in PORT_OFFSETS.items()}


def taken_ports(ports: Mapping[str, int]) -> list[str]:
    """The ones something already listens on (or cannot be bound), as ``name :port``."""
    taken = []
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers bind (reuse_address): a previous run's TIME_WAIT is no conflict.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((HOST, port))
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
                taken.append(f"{name} :{port}")
    return taken


@dataclass
class Supervised:
    """An Arena process; restarted when it exits unless the cluster is stopping, after a delay
    that grows while it keeps exiting soon after its start (no crash loop)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    stage: int = STAGE_PLACERS  # when it stops (STAGE_*)
    restart: bool = True
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART_BACKOFF))
    started_at: float = 0.0
    restart_at: float | None = None  # monotonic; set while an exited process waits to restart
    _terminated_at: float = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # Its own session: a terminal's Ctrl-C reaches the launcher only, which stops
            # everything in order with one SIGTERM each.
            self.proc = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=ROOT, start_new_session=True,
            )  # fmt: skip
        self.starts += 1
        self.started_at, self.restart_at = time.monotonic(), None

    def poll(self) -> None:
        if self.proc is None or self.proc.poll() is None or not self.restart:
            return
        now = time.monotonic()
        if self.restart_at is None:
            if now - self.started_at >= HEALTHY_RUN_S:
                self.backoff.reset()
            delay = self.backoff.next_delay()
            self.restart_at = now + delay
            code = self.proc.returncode
            with self.log_path.open("a") as log:  # the process's own log says why it waits
                log.write(f"[cluster] {self.name} exited ({code}); restart in {delay:.1f} s\n")
        if now >= self.restart_at:
            self.start()

    def terminate(self) -> None:
        """Send the one SIGTERM (no restart from now on)."""
        self.restart = False
        self._terminated_at = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def report_exit(self) -> None:
        if self.proc is not None:
            took = time.monotonic() - self._terminated_at
            print(f"  stopped {self.name:<12} exit {self.proc.returncode:<3} {took:5.1f}s", flush=True)

    def kill(self, timeout_s: float) -> None:
        """The last resort, loud: it ignored its SIGTERM for ``timeout_s``."""
        if self.proc is not None:
            print(f"  {self.name} still running {timeout_s:.0f}s after SIGTERM: SIGKILL", flush=True)
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> bool:
        """Stop this process alone: one SIGTERM, a SIGKILL after ``timeout_s``."""
        return stop_together([self], timeout_s)


def stop_together(procs: Sequence[Supervised], timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """One SIGTERM each, then wait for all, reporting each exit as it comes; False if any was killed."""
    for proc in procs:
        proc.terminate()
    waiting = list(procs)
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        for proc in [p for p in waiting if p.exited()]:
            proc.report_exit()
            waiting.remove(proc)
        if waiting:
            time.sleep(0.02)
    for proc in waiting:
        proc.kill(timeout_s)
    return not waiting


@dataclass
class Cluster:
    run_dir: Path
    bots: int
    house_per_queue: int = 4  # max_players - 1: with one person, a full race at once
    port_base: int = 0  # 0: free ports; else fixed ones from here (ClusterSettings.port_base)
    node_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    node_admin_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    ports: dict[str, int] = field(
        default_factory=lambda: {
            name: free_port() for name in ("lobby", "matchmaker", "persistence", "tournaments")
        }
    )
    # Redis, PostgreSQL, the broker: 0 picks a free port when each starts.
    service_ports: dict[str, int] = field(default_factory=lambda: {"redis": 0, "postgres": 0, "kafka": 0})
    services: list[RedisServer | PostgresServer | KafkaBroker] = field(default_factory=list)
    processes: list[Supervised] = field(default_factory=list)
    redis_url: str = ""
    persist_group: str = "persistence"  # the outbox's consumer group persistence reads with
    arena_secrets: dict[str, str] = field(default_factory=dict)  # SECRET_NAMES -> value (local_secrets)
    # Extra environment for one node ("node-2" -> {KEY: VALUE}), over the cluster's: lets a
    # benchmark run one node changed beside one as shipped, under the same load at the same time.
    node_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.port_base:
            fixed = fixed_ports(self.port_base)
            self.node_ports = [fixed["node-1"], fixed["node-2"]]
            self.node_admin_ports = [fixed["node-1-admin"], fixed["node-2-admin"]]
            self.ports = {name: fixed[name] for name in self.ports}
            self.service_ports = {name: fixed[name] for name in self.service_ports}

    def start(self) -> None:
        if self.port_base:
            taken = taken_ports(fixed_ports(self.port_base))
            if taken:
                raise ServiceError(
                    f"fixed ports from {self.port_base} (ARENA_CLUSTER_PORT_BASE or --port-base) are "
                    f"taken: {', '.join(taken)}. Is another cluster running? Stop it, pick another "
                    "base, or leave it unset for free ports."
                )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.arena_secrets = local_secrets(self.run_dir, os.environ)
        redis_server = RedisServer(
            port=self.service_ports["redis"], data_dir=self.run_dir / "redis", appendonly=True
        ).start()
        self.services.append(redis_server)
        self.redis_url = redis_server.url
        postgres = PostgresServer(
            port=self.service_ports["postgres"], data_dir=self.run_dir / "postgres"
        ).start()
        self.services.append(postgres)
        kafka = KafkaBroker(port=self.service_ports["kafka"], data_dir=self.run_dir / "kafka").start()
        self.services.append(kafka)
        env = self._arena_env(redis_server.url, postgres.dsn, kafka.bootstrap)
        self.persist_group = env.get("ARENA_PERSIST_GROUP") or self.persist_group
        logs = self.run_dir / "logs"
        logs.mkdir(exist_ok=True)
        migrate = subprocess.run(
            [sys.executable, "-m", "persistence.migrate"], env=env, cwd=ROOT, capture_output=True, text=True
        )
        if migrate.returncode != 0:
            raise ServiceError(f"migrations failed: {migrate.stderr[-2000:]}")
        self.processes = self._arena_processes(env, logs)
        for proc in self.processes:
            if proc.name in ("bots", "house"):  # bots come once the nodes and the lobby answer
                for port in (*self.node_ports, self.ports["lobby"]):
                    wait_healthy(f"http://127.0.0.1:{port}/healthz")
            proc.start()
        self._print_banner(redis_server.url, postgres.dsn, kafka.bootstrap, logs)

    def _arena_processes(self, env: dict[str, str], logs: Path) -> list[Supervised]:
        """Two nodes, a matchmaker, the lobby, persistence, and bots (in start order)."""
        py = sys.executable
        procs = []
        listeners = zip(self.node_ports, self.node_admin_ports, strict=True)  # players', admin
        for i, (port, admin_port) in enumerate(listeners, start=1):
            node_env = env | {
                "ARENA_NODE_ID": f"node-{i}",
                "ARENA_NODE_PORT": str(port),
                "ARENA_NODE_ADMIN_PORT": str(admin_port),
            } | self.node_env.get(f"node-{i}", {})
            argv, log_path = [py, "-m", "gameserver"], logs / f"node-{i}.log"
            procs.append(Supervised(f"node-{i}", argv, node_env, log_path, stage=STAGE_NODES))
        stages = {"lobby": STAGE_LOBBY, "persistence": STAGE_PERSISTENCE}
        for name, port_var in SERVICES.items():
            proc_env = env | {port_var: str(self.ports[name])}
            stage = stages.get(name, STAGE_PLACERS)
            procs.append(Supervised(name, [py, "-m", name], proc_env, logs / f"{name}.log", stage=stage))
        if self.bots:
            # Races are created on the nodes' admin listeners.
            nodes = [arg for port in self.node_admin_ports for arg in ("--node", f"http://127.0.0.1:{port}")]
            bots_argv = [
                py, "-m", "simulators", *nodes,  # a draining node's races go to the other one
                "--bots", str(self.bots), "--timeout", "180",  # the admin token: ARENA_ADMIN_TOKEN
            ]  # fmt: skip
            procs.append(Supervised("bots", bots_argv, env, logs / "bots.log"))
        if self.house_per_queue:
            house_argv = [
                py, "-m", "simulators.house", "--lobby", f"http://127.0.0.1:{self.ports['lobby']}",
                "--per-queue", str(self.house_per_queue),
            ]  # fmt: skip
            procs.append(Supervised("house", house_argv, env, logs / "house.log"))
        return procs

    def _arena_env(self, redis_url: str, dsn: str, bootstrap: str) -> dict[str, str]:
        return dict(os.environ) | {
            # Development, explicitly: the processes refuse to start in production (the default)
            # without strong secrets. The cluster's own secrets are strong anyway (local_secrets).
            "ARENA_ENV": "development",
            "ARENA_REDIS_URL": redis_url,
            "ARENA_POSTGRES_DSN": dsn,
            "ARENA_KAFKA_BOOTSTRAP": bootstrap,
            **self.arena_secrets,
            # Every local client is 127.0.0.1 (the page, bots, house bots): a per-IP limit would
            # only make them share one budget. The per-player limit stays.
            "ARENA_LOBBY_RATE_PER_IP": os.environ.get("ARENA_LOBBY_RATE_PER_IP", "0"),
            "PYTHONUNBUFFERED": "1",
            **{name: os.environ.get(name, grace) for name, grace in LOCAL_GRACES.items()},
        }

    def admin_command(self, redis_url: str) -> str:
        """``ops.admin status`` as a shell command that works pasted anywhere (no venv needed); with
        the admin token, so ``status`` can become ``drain node-1``."""
        env = {
            "ARENA_REDIS_URL": redis_url,
            "ARENA_ADMIN_TOKEN": self.arena_secrets["ARENA_ADMIN_TOKEN"],
            "PYTHONPATH": str(ROOT),  # this checkout's code, whatever the shell's directory
        }
        assigns = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
        return f"{assigns} {shlex.quote(sys.executable)} -m ops.admin status"

    def _print_banner(self, redis_url: str, dsn: str, bootstrap: str, logs: Path) -> None:
        ports = "" if self.port_base else FREE_PORTS_HINT
        nodes = "\n".join(
            f"  node-{i}      ws://127.0.0.1:{port}/ws  (admin and metrics http://127.0.0.1:{admin}/metrics)"
            for i, (port, admin) in enumerate(zip(self.node_ports, self.node_admin_ports, strict=True), 1)
        )
        print(
            "\nTypogram Arena is running (Ctrl-C stops everything, in order, in a few seconds)\n"
            f"  PLAY        http://127.0.0.1:{self.ports['lobby']}/  (the page: open it in a browser)\n"
            f"  lobby       http://127.0.0.1:{self.ports['lobby']}/v1  (docs/API.md)\n"
            f"{nodes}\n"
            f"  matchmaker  http://127.0.0.1:{self.ports['matchmaker']}/metrics\n"
            f"  persistence http://127.0.0.1:{self.ports['persistence']}/metrics\n"
            f"  tournaments http://127.0.0.1:{self.ports['tournaments']}/metrics  (the director)\n"
            f"  admin       {self.admin_command(redis_url)}\n"
            f"  redis       {redis_url}\n"
            f"  postgres    {dsn}\n"
            f"  kafka       {bootstrap}  (noida-db, a Kafka-protocol broker)\n"
            f"  logs        {logs}/\n"
            f"{ports}",
            flush=True,
        )

    def supervise(self, stop_flag: list[bool]) -> None:
        while not stop_flag:
            for proc in self.processes:
                proc.poll()
            time.sleep(0.5)

    def stop(self) -> bool:
        """Stop everything in order (module docstring); False when something had to be killed."""
        if not self.processes and not self.services:
            return True  # nothing started
        began = time.monotonic()
        print("stopping in order...", flush=True)
        clean = True
        for proc in self.processes:
            proc.restart = False
        for stage in sorted({proc.stage for proc in self.processes}):
            if stage == STAGE_PERSISTENCE:
                self._wait_outbox_flushed()
            clean = stop_together([proc for proc in self.processes if proc.stage == stage]) and clean
        for service in reversed(self.services):
            service_began = time.monotonic()
            service.stop()
            took = time.monotonic() - service_began
            print(f"  stopped {service.name:<12} {'':<8} {took:5.1f}s", flush=True)
        print(f"stopped in {time.monotonic() - began:.1f}s", flush=True)
        return clean

    def _wait_outbox_flushed(self) -> None:
        """Wait until persistence has read and acknowledged every outbox entry (bounded)."""
        if not self.redis_url:
            return
        began = time.monotonic()
        left: int | None = None
        with redis.Redis.from_url(self.redis_url, socket_timeout=2.0) as client:
            while time.monotonic() - began < OUTBOX_FLUSH_TIMEOUT_S:
                try:
                    left = outbox_backlog(client, self.persist_group)
                except redis.RedisError as exc:
                    print(f"  outbox not checked ({exc}): stopping persistence anyway", flush=True)
                    return
                if left == 0:
                    print(f"  outbox flushed {'':<11} {time.monotonic() - began:5.1f}s", flush=True)
                    return
                time.sleep(0.1)
        print(f"  outbox: {left} entries not yet persisted (kept in Redis for the next run)", flush=True)


def _stream_id(raw: str) -> tuple[int, int]:
    ms, _, seq = raw.partition("-")
    return int(ms), int(seq or 0)


def outbox_backlog(client: redis.Redis, group: str) -> int:
    """Outbox entries the consumer group has not yet read and acknowledged."""
    if not client.exists(keys.OUTBOX_STREAM):
        return 0
    stream = client.xinfo_stream(keys.OUTBOX_STREAM)
    info = next((g for g in client.xinfo_groups(keys.OUTBOX_STREAM) if _text(g["name"]) == group), None)
    if info is None:
        return int(stream["length"])
    lag = info.get("lag")
    if lag is None:  # Redis cannot tell after deletions: compare the ids instead
        behind = _stream_id(_text(info["last-delivered-id"])) < _stream_id(_text(stream["last-generated-id"]))
        lag = 1 if behind else 0
    return int(info["pending"]) + int(lag)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise ServiceError(f"{url} did not answer within {timeout_s:.0f}s (see .run/logs/)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ops.cluster", description="Run a local Typogram Arena cluster on 127.0.0.1"
    )
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run")
    parser.add_argument("--bots", type=int, default=4, help="bots that keep racing (0: none)")
    parser.add_argument(
        "--house-bots",
        type=int,
        default=4,
        help="house bots per race type and region, waiting for people (0: none)",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=None,
        help="fixed ports from here, the page's at this one (default: $ARENA_CLUSTER_PORT_BASE, else free)",
    )
    parser.add_argument("--check", action="store_true", help="start, wait a few seconds, stop (smoke test)")
    args = parser.parse_args(argv)
    try:
        settings = ClusterSettings.from_env(os.environ)
        if args.port_base is not None:
            settings = ClusterSettings(port_base=args.port_base)
    except SettingsError as exc:
        parser.error(str(exc))
    cluster = Cluster(
        run_dir=args.run_dir, bots=args.bots, house_per_queue=args.house_bots, port_base=settings.port_base
    )
    stop_flag: list[bool] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop_flag:  # the stop is under way and bounded: a second Ctrl-C changes nothing
            os.write(1, b"already stopping, in order (a few seconds)\n")  # print() is not reentrant
            return
        stop_flag.append(True)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    ok = True
    try:
        cluster.start()
        if args.check:
            time.sleep(5)
            ok = all(p.proc and p.proc.poll() is None for p in cluster.processes)
        else:
            cluster.supervise(stop_flag)
    except ServiceError as exc:
        print(f"could not start the cluster: {exc}", file=sys.stderr, flush=True)
        ok = False
    finally:
        ok = cluster.stop() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
