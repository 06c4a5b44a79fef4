"""What one input and one tick's checkpoint work cost the node's CPU, in-process (no sockets, no Redis).

Deterministic and CPU-time based (``time.process_time``: what a busy machine disturbs least), so
two runs on a shared machine agree within a few per cent. Races of 5 racers on a marathon text:

* **per input**: ``Race.apply_input`` of a 2-key batch at the input cadence (250 ms), in three
  variants: fair play v2's arrival evidence and the checkpoint journal both on (the node's
  default), without the journal (``ARENA_RACE_CHECKPOINT=0``), and without the arrival record
  either (``ArrivalLog.record`` a no-op: what the input cost before fair play v2);
* **per tick and race** with checkpoints on: ``node.Checkpoints`` collecting the races due,
  putting their journals into the tick's pipeline (redis-py's command packing included, as
  ``execute`` would do it, nothing sent) and dropping what the append carried, for a race
  appended every ``ARENA_RACE_CHECKPOINT_MS`` (2 s: 8 inputs per racer, 40 entries). The
  journal packs each entry as it is journalled (``gameserver/journal.py``): that part of the
  encoding is in the per-input figure, not in this one.

Medians of ``--repeat`` runs; bounded by ``--races`` x ``--inputs``.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/input_cost.py [--races 400] [--inputs 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks.checkpoint_cost

from arena.ids import PlayerId
from benchmarks.checkpoint_cost import bench_race
from gameserver.arrivals import ArrivalLog
from gameserver.checkpoint import definition_of, encode_definition
from gameserver.fairplay import FairPlayLimits
from gameserver.journal import Journal
from gameserver.metrics import NodeMetrics
from gameserver.node import Checkpoints
from gameserver.race import Race
from gameserver.room import RaceRoom

TEXT = "the quick brown fox jumps over the lazy dog " * 60
PLAYERS = 5
CADENCE_MS = 250
ENTRIES_PER_APPEND = 8  # inputs per racer in ARENA_RACE_CHECKPOINT_MS (2 s) at the cadence


class _NoArrivals(ArrivalLog):
    """The arrival record switched off: the input's cost before fair play v2."""

    __slots__ = ()

    def record(self, times: Sequence[int], arrival_ms: int, window_ms: int, cumulative: int) -> None:
        return None


def make_races(n: int, *, journal: bool, arrivals: bool) -> list[Race]:
    races = []
    fairplay = FairPlayLimits()
    for i in range(n):
        race = bench_race(i, TEXT, fairplay)
        race.journal = Journal() if journal else None
        for k in range(PLAYERS):
            racer, _ = race.join(PlayerId(f"p{i}-{k}"), f"player{k}", 0)
            racer.round_trips.expect(0)
            racer.round_trips.answer(0, 60)  # a measured round trip, as on a live node
            if not arrivals:
                racer.arrivals = _NoArrivals(fairplay)
        race.advance(1)
        races.append(race)
    return races


def input_cost_us(races: list[Race], inputs: int) -> float:
    """CPU µs per ``apply_input`` over ``inputs`` batches per racer (journals emptied as a tick would)."""
    spent = 0.0
    applied = 0
    t = 1000
    for _ in range(inputs):
        t += CADENCE_MS
        started = time.process_time()
        for race in races:
            for racer in race.racers.values():
                pos = racer.typing.position
                race.apply_input(racer, racer.seq + 1, TEXT[pos : pos + 2], [t - 120, t], t + 30)
        spent += time.process_time() - started
        applied += len(races) * PLAYERS
        for race in races:  # what a checkpoint append takes away, outside the measurement
            if race.journal is not None and len(race.journal) > PLAYERS * ENTRIES_PER_APPEND:
                race.journal.take()
    return spent / applied * 1e6


def checkpoint_cost_us(rooms: list[RaceRoom], rounds: int) -> float:
    """CPU µs per race of one tick's checkpoint work, every race due with 2 s of journal."""
    client = aioredis.Redis()  # never connects: its connection packs the commands
    conn = client.connection_pool.make_connection()
    spent = 0.0
    t = 1000
    for _ in range(rounds):
        for room in rooms:  # 2 s of typing journalled (outside the measurement)
            race = room.race
            for _ in range(ENTRIES_PER_APPEND):
                t += 1
                for racer in race.racers.values():
                    pos = racer.typing.position
                    race.apply_input(racer, racer.seq + 1, TEXT[pos : pos + 2], [t - 120, t], t + 30)
        t += 2000
        started = time.process_time()
        ckpt = Checkpoints(t, 2000)
        for room in rooms:
            ckpt.collect(room)
        pipe = client.pipeline(transaction=False)
        ckpt.write(pipe, "bench", "bench")
        conn.pack_commands([c[0] for c in pipe.command_stack])
        ckpt.written()
        spent += time.process_time() - started
    return spent / rounds / len(rooms) * 1e6


def make_rooms(n: int) -> list[RaceRoom]:
    metrics = NodeMetrics()
    rooms = []
    for race in make_races(n, journal=True, arrivals=True):
        room = RaceRoom(race, metrics)
        room.checkpoint_def = encode_definition(definition_of(race, "bench"))
        room.checkpointed = True
        rooms.append(room)
    ckpt = Checkpoints(0, 2000)  # the definitions and joins: the first append, not measured
    for room in rooms:
        ckpt.collect(room)
    ckpt.written()
    return rooms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--races", type=int, default=400)
    parser.add_argument("--inputs", type=int, default=40, help="inputs per racer per run")
    parser.add_argument("--rounds", type=int, default=10, help="checkpoint ticks per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    gc.set_threshold(50_000, 20, 100)  # the node's collector settings (gameserver/__main__.py)
    variants = {
        "arrivals + journal (default)": (True, True),
        "arrivals, no journal (checkpoints off)": (False, True),
        "neither (before fair play v2)": (False, False),
    }
    runs: dict[str, list[float]] = {name: [] for name in variants}
    ticks: list[float] = []
    for _ in range(args.repeat):  # variants in turn: a disturbance hits them all alike
        for name, (journal, arrivals) in variants.items():
            races = make_races(args.races, journal=journal, arrivals=arrivals)
            runs[name].append(input_cost_us(races, args.inputs))
        ticks.append(checkpoint_cost_us(make_rooms(args.races), args.rounds))
    print(f"{args.races} races of {PLAYERS}, {args.inputs} inputs per racer, median of {args.repeat} runs")
    for name, values in runs.items():
        print(f"apply_input, {name:40s} {statistics.median(values):6.2f} µs per input")
    entries = PLAYERS * ENTRIES_PER_APPEND
    print(f"checkpoint append of {entries} entries, per race (collect, encode, pack, drop) "
          f"{statistics.median(ticks):6.1f} µs")


if __name__ == "__main__":
    main()
