"""``make run``: a whole local cluster on loopback, started by the project's own code.

Order: Redis (AOF on, for the durable outbox), PostgreSQL, the Kafka-protocol broker, then the
Arena processes (two gameserver nodes, matchmaker, lobby with the page, persistence, the
tournament director), bots that keep racing (live races to watch), and house bots that wait in
every matchmaking queue so a person alone gets a race within seconds (``simulators.house``).
Everything stops in reverse order on Ctrl-C or SIGTERM. Data lives under
``.run/`` and is reused by the next run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from arena.backoff import Backoff, BackoffSettings
from ops.services import KafkaBroker, PostgresServer, RedisServer, ServiceError, free_port

ROOT = Path(__file__).resolve().parent.parent
DEV_ADMIN_TOKEN = "dev-admin-token"
DEV_SECRET = "dev-secret-change-me-please"
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


@dataclass
class Supervised:
    """An Arena process; restarted when it exits unless the cluster is stopping, after a delay
    that grows while it keeps exiting soon after its start (no crash loop)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    restart: bool = True
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    backoff: Backoff = field(default_factory=lambda: Backoff(RESTART_BACKOFF))
    started_at: float = 0.0
    restart_at: float | None = None  # monotonic; set while an exited process waits to restart

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
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

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Cluster:
    run_dir: Path
    bots: int
    house_per_queue: int = 4  # max_players - 1: with one person, a full race at once
    node_ports: list[int] = field(default_factory=lambda: [free_port(), free_port()])
    ports: dict[str, int] = field(
        default_factory=lambda: {
            name: free_port() for name in ("lobby", "matchmaker", "persistence", "tournaments")
        }
    )
    services: list[RedisServer | PostgresServer | KafkaBroker] = field(default_factory=list)
    processes: list[Supervised] = field(default_factory=list)

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        redis = RedisServer(data_dir=self.run_dir / "redis", appendonly=True).start()
        self.services.append(redis)
        postgres = PostgresServer(data_dir=self.run_dir / "postgres").start()
        self.services.append(postgres)
        kafka = KafkaBroker(data_dir=self.run_dir / "kafka").start()
        self.services.append(kafka)
        env = self._arena_env(redis.url, postgres.dsn, kafka.bootstrap)
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
        self._print_banner(redis.url, postgres.dsn, kafka.bootstrap, logs)

    def _arena_processes(self, env: dict[str, str], logs: Path) -> list[Supervised]:
        """Two nodes, a matchmaker, the lobby, persistence, and bots (in start order)."""
        py = sys.executable
        procs = []
        for i, port in enumerate(self.node_ports, start=1):
            node_env = env | {"ARENA_NODE_ID": f"node-{i}", "ARENA_NODE_PORT": str(port)}
            procs.append(Supervised(f"node-{i}", [py, "-m", "gameserver"], node_env, logs / f"node-{i}.log"))
        for name, port_var in SERVICES.items():
            proc_env = env | {port_var: str(self.ports[name])}
            procs.append(Supervised(name, [py, "-m", name], proc_env, logs / f"{name}.log"))
        if self.bots:
            nodes = [arg for port in self.node_ports for arg in ("--node", f"http://127.0.0.1:{port}")]
            bots_argv = [
                py, "-m", "simulators", *nodes,  # a draining node's races go to the other one
                "--admin-token", DEV_ADMIN_TOKEN, "--bots", str(self.bots), "--timeout", "180",
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
            "ARENA_REDIS_URL": redis_url,
            "ARENA_POSTGRES_DSN": dsn,
            "ARENA_KAFKA_BOOTSTRAP": bootstrap,
            "ARENA_ADMIN_TOKEN": os.environ.get("ARENA_ADMIN_TOKEN", DEV_ADMIN_TOKEN),
            # Every local client is 127.0.0.1 (the page, bots, house bots): a per-IP limit would
            # only make them share one budget. The per-player limit stays.
            "ARENA_LOBBY_RATE_PER_IP": os.environ.get("ARENA_LOBBY_RATE_PER_IP", "0"),
            "ARENA_TOKEN_SECRET": os.environ.get("ARENA_TOKEN_SECRET", DEV_SECRET),
            "PYTHONUNBUFFERED": "1",
        }

    def _print_banner(self, redis_url: str, dsn: str, bootstrap: str, logs: Path) -> None:
        nodes = "\n".join(
            f"  node-{i}      ws://127.0.0.1:{port}/ws  (metrics http://127.0.0.1:{port}/metrics)"
            for i, port in enumerate(self.node_ports, start=1)
        )
        print(
            "\nTypogram Arena is running (Ctrl-C stops everything)\n"
            f"  PLAY        http://127.0.0.1:{self.ports['lobby']}/  (the page: open it in a browser)\n"
            f"  lobby       http://127.0.0.1:{self.ports['lobby']}/v1  (docs/API.md)\n"
            f"{nodes}\n"
            f"  matchmaker  http://127.0.0.1:{self.ports['matchmaker']}/metrics\n"
            f"  persistence http://127.0.0.1:{self.ports['persistence']}/metrics\n"
            f"  tournaments http://127.0.0.1:{self.ports['tournaments']}/metrics  (the director)\n"
            f"  admin       ARENA_REDIS_URL={redis_url} python -m ops.admin status\n"
            f"  redis       {redis_url}\n"
            f"  postgres    {dsn}\n"
            f"  kafka       {bootstrap}  (noida-db, a Kafka-protocol broker)\n"
            f"  logs        {logs}/\n",
            flush=True,
        )

    def supervise(self, stop_flag: list[bool]) -> None:
        while not stop_flag:
            for proc in self.processes:
                proc.poll()
            time.sleep(0.5)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.restart = False
            proc.stop()
        for service in reversed(self.services):
            service.stop()


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
    parser = argparse.ArgumentParser(description="Run a local Typogram Arena cluster on 127.0.0.1")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run")
    parser.add_argument("--bots", type=int, default=4, help="bots that keep racing (0: none)")
    parser.add_argument(
        "--house-bots",
        type=int,
        default=4,
        help="house bots per race type and region, waiting for people (0: none)",
    )
    parser.add_argument("--check", action="store_true", help="start, wait a few seconds, stop (smoke test)")
    args = parser.parse_args(argv)
    cluster = Cluster(run_dir=args.run_dir, bots=args.bots, house_per_queue=args.house_bots)
    stop_flag: list[bool] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop_flag:  # a second signal: stop waiting politely
            raise KeyboardInterrupt
        stop_flag.append(True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
        if args.check:
            time.sleep(5)
            return 0 if all(p.proc and p.proc.poll() is None for p in cluster.processes) else 1
        cluster.supervise(stop_flag)
        return 0
    except ServiceError as exc:
        print(f"could not start a service: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping...", flush=True)
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
