"""A real Redis Cluster on loopback ports: masters with a replica each, for tests and benchmarks.

Each node is a ``RedisServer(cluster=True)`` (ops/services.py) in its own temp dir; ``start()``
joins them with ``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes`` and waits
until every node says ``cluster_state:ok`` and every replica has synced; ``stop()`` stops every
node and removes its dir. ``url`` is the ``redis+cluster://`` URL that makes
``arena.redisutil.connect`` use redis-py's cluster client (docs/DEPLOY.md, "Redis Cluster").

``kill_master()`` kills a master with SIGKILL (the failover test); its replica takes over after
``node_timeout_ms`` and a vote.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from ops.services import HOST, RedisServer, ServiceError

CREATE_TIMEOUT_S = 60.0
POLL_S = 0.05


@dataclass
class LocalRedisCluster:
    masters: int = 3
    replicas_per_master: int = 1
    node_timeout_ms: int = 1000  # small: a killed master's replica takes over within ~2 s
    start_timeout_s: float = 30.0
    nodes: list[RedisServer] = field(default_factory=list, init=False)

    @property
    def url(self) -> str:
        """Any live node is a way in: the client learns the others (CLUSTER SLOTS)."""
        return f"redis+cluster://{HOST}:{self.live_nodes()[0].port}"

    def live_nodes(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.running]

    def start(self) -> Self:
        try:
            for _ in range(self.masters * (1 + self.replicas_per_master)):
                node = RedisServer(cluster=True, cluster_node_timeout_ms=self.node_timeout_ms)
                self.nodes.append(node.start())
            self._create()
            self._wait(self._settled, "cluster_state:ok on every node, replicas in sync")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def cli(self, port: int, *args: str) -> str:
        """One redis-cli command against one node; its output as text."""
        done = subprocess.run(
            [_redis_cli(), "-h", HOST, "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def master_of(self, key: str) -> RedisServer:
        """The live node that holds ``key``'s slot as a master."""
        slot = int(self.cli(self.live_nodes()[0].port, "CLUSTER", "KEYSLOT", key))
        for node in self.live_nodes():
            if _serves(self.cli(node.port, "CLUSTER", "NODES"), slot):
                return node
        raise ServiceError(f"no live master serves slot {slot}")

    def kill(self, node: RedisServer) -> None:
        """SIGKILL, no goodbye: the others notice only by its silence (node_timeout_ms)."""
        if node.pid is not None:
            try:
                os.kill(node.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.stop()  # reaps it and removes its dir

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Until every live node says cluster_state:ok again (after a failover)."""
        self._wait(self._all_ok, "cluster_state:ok on every live node", timeout_s)

    # -- helpers ----------------------------------------------------------------
    def _create(self) -> None:
        addresses = [f"{HOST}:{n.port}" for n in self.nodes]
        argv = [_redis_cli(), "--cluster", "create", *addresses]
        argv += ["--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=CREATE_TIMEOUT_S)
        if done.returncode != 0 or "[OK] All 16384 slots covered" not in done.stdout:
            raise ServiceError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")

    def _all_ok(self) -> bool:
        return all("cluster_state:ok" in self.cli(n.port, "CLUSTER", "INFO") for n in self.live_nodes())

    def _settled(self) -> bool:
        if not self._all_ok():
            return False
        for node in self.live_nodes():
            info = self.cli(node.port, "INFO", "replication")
            if "role:slave" in info and "master_link_status:up" not in info:
                return False
        return True

    def _wait(self, ready: Callable[[], bool], what: str, timeout_s: float | None = None) -> None:
        limit = timeout_s or self.start_timeout_s
        deadline = time.monotonic() + limit
        while not ready():
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis Cluster: no {what} after {limit:.0f}s")
            time.sleep(POLL_S)


def _serves(nodes_output: str, slot: int) -> bool:
    """Whether the ``myself`` line of CLUSTER NODES is a master holding ``slot``."""
    for line in nodes_output.splitlines():
        fields = line.split()
        if len(fields) < 8 or "myself" not in fields[2] or "master" not in fields[2]:
            continue
        for part in fields[8:]:
            if part.startswith("["):
                continue  # a slot being migrated
            first, _, last = part.partition("-")
            if int(first) <= slot <= int(last or first):
                return True
    return False


def _redis_cli() -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        raise ServiceError("redis-cli not found: run `make setup` (apt-get install redis-server)")
    return binary
