"""The floor under a node: what one small socket write and one socket read cost on this machine.

A node's work per player is mostly system calls: every progress frame is one ``write`` on a
TCP loopback socket (the kernel delivers it to the reader inside that call, on the writer's
CPU time), every input one read. This script measures those two costs with nothing else in
the way: a uvloop process pinned to one core writes (then reads) small frames across many
connections at a fixed rate, while a peer process on the other core does the opposite side.

    .venv/bin/python benchmarks/loopback_cost.py                      # 5,000 sockets, 30k writes/s
    .venv/bin/python benchmarks/loopback_cost.py --sockets 10000 --rate 60000 --seconds 10

It prints CPU microseconds per write and per read of the measuring process (user + system),
and the implied ceiling for a node: players per core at a given frames/s and inputs/s per player.
Everything is on 127.0.0.1, bounded by --seconds, and the peer process is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time

import uvloop

HOST = "127.0.0.1"
FRAME = b"\x82\x3c" + b"x" * 60  # a progress frame's size: 62 bytes


class Sink(asyncio.Protocol):
    """Counts what arrives; writes on demand."""

    def __init__(self, counter: list[int]) -> None:
        self.counter = counter
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.counter[0] += 1


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def pump(conns: list[Sink], rate: int, seconds: float) -> tuple[int, float]:
    """Write FRAME round-robin at ``rate`` per second for ``seconds``; (writes, CPU seconds)."""
    slot = 0.005
    per_slot = max(1, int(rate * slot))
    loop = asyncio.get_running_loop()
    writes, i, n = 0, 0, len(conns)
    cpu0, end = cpu_s(), loop.time() + seconds
    next_at = loop.time()
    while loop.time() < end:
        for _ in range(per_slot):
            transport = conns[i].transport
            if transport is not None:
                transport.write(FRAME)
                writes += 1
            i = (i + 1) % n
        next_at += slot
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    return writes, cpu_s() - cpu0


async def run_peer(port: int, sockets: int, rate: int, seconds: float, mode: str) -> None:
    """The other side: connect, then either only read (mode 'read') or write at ``rate``."""
    loop = asyncio.get_running_loop()
    counter = [0]
    conns = []
    for _ in range(sockets):
        _, proto = await loop.create_connection(lambda: Sink(counter), HOST, port)
        conns.append(proto)
    print("connected", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)  # the measurer says when
    if mode == "write" and line.strip() == "go":
        await pump(conns, rate, seconds)
    else:
        await asyncio.sleep(seconds + 1)


async def measure(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    counter = [0]
    accepted: list[Sink] = []

    def factory() -> Sink:
        sink = Sink(counter)
        accepted.append(sink)
        return sink

    server = await loop.create_server(factory, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    results = {}
    for mode in ("write", "read"):
        peer_mode = "read" if mode == "write" else "write"
        accepted.clear()
        peer = subprocess.Popen(  # noqa: ASYNC220 - started once per direction, before measuring
            [
                "taskset",
                "-c",
                str(args.peer_core),
                sys.executable,
                __file__,
                "--peer",
                str(port),
                "--sockets",
                str(args.sockets),
                "--rate",
                str(args.rate),
                "--seconds",
                str(args.seconds),
                "--mode",
                peer_mode,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert peer.stdout is not None and peer.stdin is not None
            await loop.run_in_executor(None, peer.stdout.readline)
            while len(accepted) < args.sockets:  # noqa: ASYNC110 - polling a count, once
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            peer.stdin.write("go\n")
            peer.stdin.flush()
            if mode == "write":
                writes, cpu = await pump(accepted, args.rate, args.seconds)
                results["write"] = (writes, cpu)
            else:
                counter[0] = 0
                cpu0 = cpu_s()
                await asyncio.sleep(args.seconds)
                results["read"] = (counter[0], cpu_s() - cpu0)
        finally:
            with contextlib.suppress(OSError):
                peer.stdin.close()  # type: ignore[union-attr]
            peer.terminate()
            peer.wait(timeout=10)
        for sink in accepted:
            if sink.transport is not None:
                sink.transport.close()
    server.close()
    w_n, w_cpu = results["write"]
    r_n, r_cpu = results["read"]
    w_us, r_us = w_cpu / w_n * 1e6, r_cpu / max(r_n, 1) * 1e6
    print(f"{args.sockets} sockets, {args.seconds:.0f} s each way, measuring process on core {args.core}")
    w_core, r_core = w_cpu / args.seconds * 100, r_cpu / args.seconds * 100
    print(f"write: {w_n / args.seconds:,.0f}/s, {w_us:.2f} us CPU per write ({w_core:.0f}% core)")
    print(f"read:  {r_n / args.seconds:,.0f}/s, {r_us:.2f} us CPU per read ({r_core:.0f}% core)")
    per_player = args.frames_per_player * w_us + args.inputs_per_player * r_us
    print(
        f"floor for a node at {args.frames_per_player} frames and {args.inputs_per_player} inputs per player "
        f"per second: {per_player:.0f} us per player-second in system calls alone, "
        f"so at most {1e6 / per_player:,.0f} players per core before any Python runs"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sockets", type=int, default=5000)
    ap.add_argument("--rate", type=int, default=30000, help="writes per second")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--peer-core", type=int, default=1)
    ap.add_argument("--frames-per-player", type=float, default=5.7, help="measured by node_capacity.py")
    ap.add_argument("--inputs-per-player", type=float, default=2.0)
    ap.add_argument("--peer", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="read", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.seconds = min(args.seconds, 60.0)  # bounded whatever is asked
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.peer:
        uvloop.run(run_peer(args.peer, args.sockets, args.rate, args.seconds, args.mode))
        return
    os.sched_setaffinity(0, {args.core})
    started = time.monotonic()
    uvloop.run(measure(args))
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
