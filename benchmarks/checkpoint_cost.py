"""What race checkpoints cost a node's CPU, measured in-process (issue 15; docs/PERFORMANCE.md).

Races of 5 on a real ``redis-server`` (started here on 127.0.0.1, stopped on exit): each round,
every racer applies ``--inputs`` inputs of 2 keys through ``Race.apply_input`` (so the journal
entries are the real ones), then one pipelined round trip carries each race's roster HSET (what
the tick sends anyway) with or without the checkpoint appends (``node.Checkpoints.write``).
The difference in ``time.process_time`` per append is the node's cost of a checkpoint append;
encoding, redis-py's packing and the reply parsing included. Off and on alternate, ``--repeat``
times each. Bounded: ``--rounds`` rounds of ``--races`` races.

    .venv/bin/python benchmarks/checkpoint_cost.py [--races 400] [--inputs 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import redis.asyncio as aioredis

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import RaceType
from gameserver.checkpoint import definition_of, encode_definition
from gameserver.fairplay import FairPlayLimits
from gameserver.journal import Journal
from gameserver.metrics import NodeMetrics
from gameserver.mirror import roster_json
from gameserver.node import Checkpoints
from gameserver.passages import Passage, PassageKind
from gameserver.race import Race
from gameserver.room import RaceRoom
from gameserver.scoring import ScoringLimits
from gameserver.settings import RaceSettings
from ops.services import RedisServer

TEXT = "the quick brown fox jumps over the lazy dog " * 40
PLAYERS = 5


def bench_race(i: int, text: str = TEXT, fairplay: FairPlayLimits | None = None) -> Race:
    """Race ``i`` of a benchmark: a marathon on ``text`` with PLAYERS seats, no countdown."""
    return Race(
        race_id=RaceId(f"r{i:05d}bench000000"),
        node_id=NodeId("bench"),
        race_type=RaceType.MARATHON,
        passage=Passage(id="bench", kind=PassageKind.MARATHON, text=text, source="bench"),
        seats={PlayerId(f"p{i}-{k}") for k in range(PLAYERS)},
        now=0,
        settings=RaceSettings(countdown_s=0),
        scoring=ScoringLimits(),
        fairplay=fairplay or FairPlayLimits(),
    )


def make_rooms(n: int, metrics: NodeMetrics) -> list[RaceRoom]:
    rooms = []
    for i in range(n):
        race = bench_race(i)
        race.journal = Journal()
        for k in range(PLAYERS):
            race.join(PlayerId(f"p{i}-{k}"), f"player{k}", 0)
        race.advance(1)
        room = RaceRoom(race, metrics)
        room.checkpoint_def = encode_definition(definition_of(race, "bench"))
        room.checkpointed = True
        rooms.append(room)
    return rooms


def type_round(rooms: list[RaceRoom], inputs: int, t: int) -> int:
    for room in rooms:
        race = room.race
        for racer in race.racers.values():
            for _ in range(inputs):
                pos = racer.typing.position
                t += 250
                race.apply_input(racer, racer.seq + 1, TEXT[pos : pos + 2], [t - 120, t], t + 30)
    return t


async def measure(url: str, args: argparse.Namespace) -> None:
    redis = aioredis.Redis.from_url(url)
    rooms = make_rooms(args.races, NodeMetrics())
    t = 1000
    while True:  # the definitions and joins first, in as many ticks as the per-tick bound needs
        ckpt = Checkpoints(0, 100)
        for room in rooms:
            ckpt.collect(room)
        if not ckpt.appends:
            break
        async with redis.pipeline(transaction=False) as pipe:
            ckpt.write(pipe, "bench", "bench")
            await pipe.execute()
        ckpt.written()
    per_append: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for on in (False, True):
            spent = 0.0
            for _ in range(args.rounds):
                t = type_round(rooms, args.inputs, t)
                started = time.process_time()
                ckpt = Checkpoints(t, 0)
                if on:
                    for room in rooms:
                        ckpt.collect(room)
                async with redis.pipeline(transaction=False) as pipe:
                    for room in rooms:
                        pipe.hset(f"race:{{{room.race.id}}}:state", "roster", roster_json(room.race, t))
                    ckpt.write(pipe, "bench", "bench")
                    await pipe.execute()
                ckpt.written()
                spent += time.process_time() - started
                for room in rooms:  # off: what the journals held goes unwritten
                    if room.race.journal:
                        room.race.journal.take()
            per_append[on].append(spent / args.rounds / len(rooms) * 1e6)
    await redis.aclose()
    off, on = statistics.median(per_append[False]), statistics.median(per_append[True])
    entries = args.inputs * PLAYERS
    rounds = args.rounds * args.repeat
    print(f"{args.races} races of {PLAYERS}, {entries} journal entries per append, {rounds} rounds each way")
    print(f"per race and round: without appends {off:.1f} µs, with {on:.1f} µs (medians)")
    print(f"=> one checkpoint append of {entries} entries costs the node ≈ {on - off:.1f} µs of CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--races", type=int, default=400)
    parser.add_argument("--inputs", type=int, default=2, help="inputs per racer between appends")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with RedisServer() as server:
        asyncio.run(measure(server.url, args))


if __name__ == "__main__":
    main()
