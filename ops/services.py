"""Real backing services on free loopback ports: Redis, PostgreSQL 15, a Kafka-protocol broker.

Used by the test fixtures (tests/conftest.py) and by the local-cluster launcher.
Each server runs as a child process with its data and its log file in one
directory (a fresh temp dir unless one is given). ``start()`` blocks until the
server answers a real request; ``stop()`` terminates it and removes the temp dir.

Debug with ``python -m ops.services --check``.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

DESCRIPTION = "Start Redis, PostgreSQL and a Kafka-protocol broker on free loopback ports."
HOST = "127.0.0.1"
LOG_TAIL_LINES = 40
POLL_INTERVAL = 0.05
PROBE_TIMEOUT = 1.0  # short: a hung probe delays noticing that the server died
PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)


class ServiceError(RuntimeError):
    """A backing service could not be found, started or reached."""


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_taken(port: int) -> bool:
    """True when something already listens on 127.0.0.1:port (a fixed port must not be shared)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """Last lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _shutdown(proc: subprocess.Popen[bytes], sig: int, timeout: float, remove: Path | None) -> None:
    """Signal a server, wait, SIGKILL after the deadline, then remove its temp dir.

    Module-level (not a method) so weakref.finalize can call it at interpreter
    exit without keeping the service object alive.
    """
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if remove is not None:
        shutil.rmtree(remove, ignore_errors=True)


@dataclass
class _Service:
    """Shared life cycle: temp dir, one child process, readiness polling, shutdown."""

    port: int = 0  # 0: pick a free port at start()
    data_dir: Path | None = None  # None: a fresh temp dir, removed at stop()
    keep: bool = False  # keep the temp dir after stop() (for post-mortems)
    start_timeout: float = 30.0
    stop_timeout: float = 10.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _finalizer: weakref.finalize[..., _Service] | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    name: ClassVar[str] = "service"
    stop_signal: ClassVar[int] = signal.SIGTERM

    # -- to be provided by each service ---------------------------------------
    def _command(self, data_dir: Path) -> list[str]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _prepare(self, data_dir: Path) -> None:
        """Work before the server starts (write config, initdb)."""

    def _after_ready(self) -> None:
        """Work once the server answers (create the database)."""

    def _run_as(self) -> str | None:
        """System user to run the server as, None for the current user."""
        return None

    # -- public API -----------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self._dir() / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the server and block until it serves requests."""
        if self._proc is not None:
            raise ServiceError(f"{self.name} already started")
        data_dir = self._make_dir()
        if self.port == 0:
            self.port = free_port()
        elif port_taken(self.port):
            # Otherwise the readiness probe would talk to whoever holds the port and call it ours.
            raise ServiceError(f"{self.name}: port {self.port} on {HOST} is already in use")
        try:
            self._prepare(data_dir)
            self._spawn(self._command(data_dir), data_dir)
            self._wait_ready()
            self._after_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (idempotent) and remove the temp dir unless keep=True."""
        if self._finalizer is not None:
            self._finalizer()  # runs _shutdown exactly once
        elif self._owns_dir and not self.keep and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)  # failed before spawning

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------
    def _dir(self) -> Path:
        if self.data_dir is None:
            raise ServiceError(f"{self.name} has no data dir before start()")
        return self.data_dir

    def _make_dir(self) -> Path:
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"typogram-{self.name}-"))
            self._owns_dir = True
        self.data_dir = self.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def _spawn(self, argv: list[str], data_dir: Path) -> None:
        user = self._run_as()
        with open(self.log_path, "ab") as log:
            # New session: a Ctrl-C in the terminal reaches the launcher only,
            # which then stops the services in order.
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=data_dir,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        remove = data_dir if self._owns_dir and not self.keep else None
        # Safety net: if a fixture or launcher never calls stop(), the server
        # still goes down when this interpreter exits normally.
        self._finalizer = weakref.finalize(
            self, _shutdown, self._proc, self.stop_signal, self.stop_timeout, remove
        )

    def _wait_ready(self) -> None:
        started = time.monotonic()
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                self._fail(f"exited with code {self._proc.returncode} during start-up")
            if self._is_ready():
                return
            if time.monotonic() - started > self.start_timeout:
                self._fail(f"not ready after {self.start_timeout:.0f}s")
            time.sleep(POLL_INTERVAL)

    def _fail(self, why: str) -> None:
        raise ServiceError(
            f"{self.name} on {HOST}:{self.port} {why}; log {self.log_path}:\n{log_tail(self.log_path)}"
        )


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks += chunk
    return bytes(chunks)


def _ask(port: int, request: bytes, check: Callable[[socket.socket], bool]) -> bool:
    """Send one request on a fresh connection; False on any socket error."""
    try:
        with socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(request)
            return check(sock)
    except OSError:
        return False


@dataclass
class RedisServer(_Service):
    """redis-server with a generated config. appendonly=True for a durable outbox.

    cluster=True makes it one node of a Redis Cluster (ops/rediscluster.py joins them);
    ``cluster_node_timeout_ms`` is how long a silent master goes before its replica takes over.
    """

    appendonly: bool = False
    cluster: bool = False
    cluster_node_timeout_ms: int = 15000  # Redis' own default
    cluster_port: int = 0  # the cluster bus; 0: a free port (Redis' port + 10000 may not exist)

    name: ClassVar[str] = "redis"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _prepare(self, data_dir: Path) -> None:
        config = [
            f"port {self.port}",
            f"bind {HOST}",
            "protected-mode no",
            "daemonize no",
            'logfile ""',  # stdout, which goes to our log file
            f'dir "{data_dir}"',
            'save ""',  # no RDB snapshots; durability comes from the AOF
            f"appendonly {'yes' if self.appendonly else 'no'}",
            "appendfsync everysec",
        ]
        if self.cluster:
            if self.cluster_port == 0:
                self.cluster_port = free_port()
            config += [
                "cluster-enabled yes",
                f"cluster-port {self.cluster_port}",
                f'cluster-config-file "{data_dir / "nodes.conf"}"',
                f"cluster-node-timeout {self.cluster_node_timeout_ms}",
                # A replica that lost touch with its master for a while may still take over: no
                # data is older than what a test wrote a moment ago.
                "cluster-replica-validity-factor 0",
                # Replicas sync over the socket at once, not through an RDB file after 5 s.
                "repl-diskless-sync yes",
                "repl-diskless-sync-delay 0",
            ]
        (data_dir / "redis.conf").write_text("\n".join(config) + "\n")

    def _command(self, data_dir: Path) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not found: run `make setup` (apt-get install redis-server)")
        return [binary, str(data_dir / "redis.conf")]

    def _is_ready(self) -> bool:
        # -LOADING while the AOF is replayed, so wait for a real +PONG.
        return _ask(
            self.port,
            b"*1\r\n$4\r\nPING\r\n",
            lambda s: s.recv(64).startswith(b"+PONG"),
        )


def pg_bin_dir() -> Path:
    """Directory holding initdb/postgres/psql (Debian keeps them off PATH)."""
    for candidate in PG_BIN_DIRS:
        if (candidate / "postgres").is_file():
            return candidate
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).parent
    raise ServiceError("PostgreSQL 15 not found: run `make setup` (apt-get install postgresql-15)")


@dataclass
class PostgresServer(_Service):
    """PostgreSQL 15 with trust auth on 127.0.0.1. As root it runs as the `postgres` user."""

    database: str = "typogram"
    user: str = "postgres"  # the superuser role initdb creates
    fsync: bool = True  # False only for tests: faster, unsafe on a crash
    system_user: str = "postgres"  # OS user when we are root (postgres refuses root)

    name: ClassVar[str] = "postgres"
    stop_signal: ClassVar[int] = signal.SIGINT  # "fast" shutdown; SIGTERM waits for clients

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{HOST}:{self.port}/{self.database}"

    def _run_as(self) -> str | None:
        return self.system_user if os.geteuid() == 0 else None

    def _pgdata(self) -> Path:
        return self._dir() / "pgdata"

    def _socket_dir(self) -> Path:
        return self._dir() / "sock"

    def _prepare(self, data_dir: Path) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.database):
            raise ServiceError(f"database name {self.database!r}: use [a-z_][a-z0-9_]*")
        self._socket_dir().mkdir(exist_ok=True)
        self.log_path.touch()
        self._chown(data_dir)
        if (self._pgdata() / "PG_VERSION").is_file():
            return  # existing cluster (launcher restart): keep its data
        initdb = [
            str(pg_bin_dir() / "initdb"),
            f"--pgdata={self._pgdata()}",
            f"--username={self.user}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self.fsync:
            initdb.append("--no-sync")
        self._run(initdb)
        # Trust only loopback TCP and our private socket dir.
        hba = self._pgdata() / "pg_hba.conf"
        hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
        self._chown(hba)

    def _command(self, data_dir: Path) -> list[str]:
        fsync = "on" if self.fsync else "off"
        settings = {
            "port": str(self.port),
            "listen_addresses": HOST,
            "unix_socket_directories": str(self._socket_dir()),
            "fsync": fsync,
            "synchronous_commit": fsync,
            "full_page_writes": fsync,
        }
        argv = [str(pg_bin_dir() / "postgres"), "-D", str(self._pgdata())]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _is_ready(self) -> bool:
        # A real query: pg_isready says "accepting" slightly before it is.
        return self._psql("SELECT 1", database="postgres").returncode == 0

    def _after_ready(self) -> None:
        exists = self._psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'",
            database="postgres",
        )
        if exists.stdout.strip() != b"1":
            created = self._psql(f'CREATE DATABASE "{self.database}"', database="postgres")
            if created.returncode != 0:
                self._fail(f"CREATE DATABASE failed: {created.stderr.decode(errors='replace')}")

    def _psql(self, sql: str, database: str) -> subprocess.CompletedProcess[bytes]:
        argv = [
            str(pg_bin_dir() / "psql"),
            "-X",  # ignore ~/.psqlrc
            "-qtA",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-c",
            sql,
        ]
        env = {**os.environ, "PGCONNECT_TIMEOUT": "2"}
        return subprocess.run(argv, capture_output=True, env=env, check=False)

    def _run(self, argv: list[str]) -> None:
        user = self._run_as()
        with open(self.log_path, "ab") as log:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir(),
                user=user,
                group=user,
                extra_groups=[] if user else None,
                check=False,
            )
        if result.returncode != 0:
            self._fail(f"{Path(argv[0]).name} exited with code {result.returncode}")

    def _chown(self, path: Path) -> None:
        user = self._run_as()
        if user is None:
            return
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise ServiceError(
                f"system user {user!r} missing: run `make setup` (apt-get install postgresql-15)"
            ) from None
        os.chown(path, entry.pw_uid, entry.pw_gid)
        if path.is_dir():
            for child in path.rglob("*"):
                os.chown(child, entry.pw_uid, entry.pw_gid)


def noida_binary() -> Path:
    """The broker binary shipped inside the noida-db wheel.

    Not .venv/bin/noida-db: that is a Python wrapper that runs the binary as a
    grandchild, so our signals would stop the wrapper and orphan the broker.
    NOIDA_DB_BIN overrides the lookup.
    """
    override = os.environ.get("NOIDA_DB_BIN")
    if override:
        return Path(override)
    try:
        binary = Path(str(files("noida_db").joinpath("noida-db")))
    except ModuleNotFoundError:
        raise ServiceError("noida-db not installed: run `make setup` (pip install noida-db)") from None
    if not binary.is_file():
        raise ServiceError(f"noida-db binary missing at {binary}")
    if not os.access(binary, os.X_OK):
        binary.chmod(0o755)  # the package's own wrapper does the same
    return binary


def _kafka_metadata_request() -> bytes:
    """Metadata v0 (all topics): the cheapest request that proves the broker serves Kafka."""
    client_id = b"typogram-probe"
    body = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def _kafka_metadata_ok(sock: socket.socket) -> bool:
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    payload = _recv_exact(sock, size)
    correlation_id: int
    brokers: int
    correlation_id, brokers = struct.unpack(">ii", payload[:8])
    return correlation_id == 1 and brokers >= 1


@dataclass
class KafkaBroker(_Service):
    """noida-db's Kafka-protocol broker (not Apache Kafka), single node."""

    name: ClassVar[str] = "kafka"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def _command(self, data_dir: Path) -> list[str]:
        return [
            str(noida_binary()),
            "start",
            "--data-dir",
            str(data_dir / "noida"),
            "--host",
            HOST,
            "--only",
            "kafka",
            "--kafka-port",
            str(self.port),
        ]

    def _is_ready(self) -> bool:
        return _ask(self.port, _kafka_metadata_request(), _kafka_metadata_ok)


def check() -> int:
    """Start every service, print its address and timings, stop it again."""
    redis = RedisServer()
    postgres = PostgresServer(fsync=False)
    kafka = KafkaBroker()
    services: list[tuple[_Service, Callable[[], str]]] = [
        (redis, lambda: redis.url),
        (postgres, lambda: postgres.dsn),
        (kafka, lambda: kafka.bootstrap),
    ]
    try:
        for service, address in services:
            began = time.monotonic()
            service.start()
            print(
                f"{service.name:<9} {address():<45} started in {time.monotonic() - began:.2f}s",
                flush=True,
            )
    finally:
        for service, _ in reversed(services):
            began = time.monotonic()
            service.stop()
            print(
                f"{service.name:<9} stopped in {time.monotonic() - began:.2f}s",
                flush=True,
            )
    return 0


def serve(redis_port: int, postgres_port: int, kafka_port: int) -> int:
    """Run Redis, PostgreSQL (migrated) and the broker until SIGINT or SIGTERM, for processes run by hand."""
    from persistence.migrate import main as migrate

    redis = RedisServer(port=redis_port, appendonly=True)
    postgres = PostgresServer(port=postgres_port)
    kafka = KafkaBroker(port=kafka_port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    started: list[_Service] = []
    services: tuple[_Service, ...] = (redis, postgres, kafka)
    try:
        for service in services:
            started.append(service.start())
        if migrate(["--dsn", postgres.dsn]) != 0:
            raise ServiceError("PostgreSQL migrations failed")
        print(
            "Services are up; paste these into the shells that run processes by hand (Ctrl-C stops them):\n"
            f"export ARENA_REDIS_URL={redis.url}\n"
            f"export ARENA_POSTGRES_DSN={postgres.dsn}\n"
            f"export ARENA_KAFKA_BOOTSTRAP={kafka.bootstrap}",
            flush=True,
        )
        stop.wait()
    except ServiceError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(started):
            service.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.services", description=DESCRIPTION)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="start all services, print addresses, stop them")
    mode.add_argument("--serve", action="store_true", help="run all services until Ctrl-C, print settings")
    parser.add_argument("--redis-port", type=int, default=6379, help="with --serve (default 6379; 0: free)")
    parser.add_argument("--postgres-port", type=int, default=5432, help="with --serve (default 5432)")
    parser.add_argument("--kafka-port", type=int, default=9092, help="with --serve (default 9092)")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.redis_port, args.postgres_port, args.kafka_port)
    return check()


if __name__ == "__main__":
    sys.exit(main())
