"""How long a drain with move takes to hand a node's races to another node (issue 15, item 5;
docs/PERFORMANCE.md "Drain with move").

Two nodes in this process (their tick, heartbeat, reaper and mover tasks; no listeners) on a
real ``redis-server`` (started here on 127.0.0.1, stopped on exit). Node A gets ``--races``
running races of 5 racers, each racer ``--inputs`` inputs of 2 keys into the race (its journal
checkpointed by A's tick as usual, at most every 300 ms). Then A drains with move, and the
script measures from the drain until A holds no race (drained), and checks that B holds every
race with every racer's position and ``seq`` as A had them. Both nodes share one core here, so
the figure includes B's adoption work (replaying each checkpoint). Bounded: the drain is given
at most ``--timeout`` seconds.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/drain_move.py [--races 200] [--inputs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace

from arena.clock import now_ms
from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import RaceState, RaceType
from arena.redisutil import connect
from arena.settings import RedisSettings, SecretSettings
from arena.tokens import TokenSigner
from gameserver.metrics import NodeMetrics
from gameserver.node import Node, SeatRequest
from gameserver.passages import Corpus
from gameserver.settings import NodeSettings, RaceSettings
from ops.services import RedisServer

PLAYERS = 5
SECRET = b"bench-secret-0123456789-0123456789"
TEXT = "the quick brown fox jumps over the lazy dog " * 100  # room for 2,200 inputs of 2 keys


def settings_for(node_id: str, url: str) -> NodeSettings:
    race = RaceSettings(countdown_s=0.0, checkpoint_ms=300, custom_max_chars=len(TEXT))
    return NodeSettings(
        node_id=NodeId(node_id),
        port=0,
        admin_port=0,
        redis=RedisSettings(url=url),
        secrets=SecretSettings(token_secret=SECRET, admin_token="bench-admin-token-0123456789"),
        race=race,
    )


def racing(node: Node, n: int, inputs: int) -> list[RaceId]:
    """``n`` running custom races on ``node``, every racer ``inputs`` inputs in."""
    ids = []
    now = now_ms()
    for i in range(n):
        seats = [SeatRequest(PlayerId(f"p{i}-{k}"), f"player{k}") for k in range(PLAYERS)]
        race, _ = node.create_race(RaceType.CUSTOM, seats, custom_text=TEXT)
        for seat in seats:
            race.join(seat.player_id, seat.name, now)
        race.advance(now)
        assert race.state is RaceState.RUNNING, race.state
        for racer in race.racers.values():
            t = now
            for seq in range(1, inputs + 1):
                pos = racer.typing.position
                t += 250
                race.apply_input(racer, seq, TEXT[pos : pos + 2], [120, 250], t)
        ids.append(race.id)
    return ids


async def measure(url: str, args: argparse.Namespace) -> None:
    corpus = Corpus.load()
    signer = TokenSigner(SECRET)
    redis_a, redis_b = connect(RedisSettings(url=url)), connect(RedisSettings(url=url))
    a = Node(settings_for("bench-a", url), redis_a, corpus, signer, NodeMetrics())
    b = Node(settings_for("bench-b", url), redis_b, corpus, signer, NodeMetrics())
    a.settings = replace(a.settings, drain_move_wait_s=args.timeout)  # no take-back while we measure
    await a.start()
    await b.start()
    try:
        ids = racing(a, args.races, args.inputs)
        before = {
            rid: {p: (r.seq, r.typing.position) for p, r in a.rooms[rid].race.racers.items()} for rid in ids
        }
        await asyncio.sleep(1.0)  # the definitions and journals reach the checkpoints
        loop = asyncio.get_running_loop()
        cpu, began = time.process_time(), loop.time()
        await a.drain(move=True)
        try:
            await asyncio.wait_for(a.wait_drained(), args.timeout)
        except TimeoutError:
            pass  # reported below: races left on A
        took, cpu = loop.time() - began, time.process_time() - cpu
        kept = sum(
            1
            for rid in ids
            if (room := b.room(rid)) is not None
            and {p: (r.seq, r.typing.position) for p, r in room.race.racers.items()} == before[rid]
        )
        report = a.drain_report
        moved = report.moved if report is not None else 0
        print(
            f"{args.races} races of {PLAYERS} racers, {args.inputs} inputs each "
            f"({args.races * PLAYERS * args.inputs} inputs in the checkpoints)"
        )
        print(
            f"drain with move: A drained in {took:.2f} s ({moved} moved, {a.live_races()} left); "
            f"CPU of both nodes meanwhile {cpu:.2f} s"
        )
        print(f"B holds {kept}/{len(ids)} races with every racer's seq and position as on A")
    finally:
        for node in (a, b):
            await node.shutdown(write_s=5)
            await node.stop()
        await redis_a.aclose()
        await redis_b.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--races", type=int, default=200)
    parser.add_argument("--inputs", type=int, default=40, help="inputs per racer before the drain")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(measure(server.url, args))


if __name__ == "__main__":
    main()
