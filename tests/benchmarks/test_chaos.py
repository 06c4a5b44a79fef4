"""The chaos benchmark's pure parts: the tally of races, who was hit by a kill, the killer's
schedule against stand-in processes (the run itself is a script, not a test)."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import pytest

from benchmarks.chaos import Kill, Killer, hit_by_kill, parse_args, render, tally
from ops.cluster import Supervised


def test_tally_sorts_races_by_what_became_of_them() -> None:
    started = {"r1": "node-1", "r2": "node-1", "r3": "node-2", "r4": "node-2", "r5": "node-3"}
    rows = {
        "r1": ("finished", "all_finished", "node-1"),  # on its first node
        "r2": ("finished", "all_finished", "node-2"),  # adopted
        "r3": ("aborted", "node lost", "node-1"),  # reaped from its checkpoint
        "r4": ("aborted", "time limit", "node-2"),
    }
    t = tally(started, rows)
    assert (t.started, t.finished_first_node, t.adopted) == (5, 1, 1)
    assert t.aborted == {"node lost": 1, "time limit": 1} and t.lost == ["r5"]
    text = render(t, [Kill("node-1", 20.0, 26.0)], [], 0.0)
    assert "lost 1" in text and "adopted and finished elsewhere 1" in text


def test_a_player_is_hit_when_its_node_dies_while_its_race_runs() -> None:
    kills = [Kill("node-1", 30.0, 36.0)]
    record = {"started": 25.0, "results": 50.0, "node_id": "node-1"}
    assert hit_by_kill(record, kills, 0.0)
    assert not hit_by_kill({**record, "node_id": "node-2"}, kills, 0.0)
    assert not hit_by_kill({**record, "results": 29.0}, kills, 0.0)  # over before the kill
    assert hit_by_kill({**record, "results": None}, kills, 0.0)  # never got results
    assert not hit_by_kill(record, kills, 30.0)  # the killer's clock started 30 s after the swarm's


def test_the_killer_never_kills_the_last_node_and_starts_each_again(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    nodes = [Supervised(f"node-{i}", argv, {}, tmp_path / f"n{i}.log") for i in (1, 2)]
    for n in nodes:
        n.start()
    killer = Killer(nodes, every_s=0.6, down_s=0.3, warmup_s=0.1, max_kills=3, rng=random.Random(1))
    try:
        killer.start()
        deadline = time.monotonic() + 10
        while len(killer.kills) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        killer.stop()
        assert len(killer.kills) == 3 and all(k.back_at is not None for k in killer.kills)
        assert all(n.proc is not None and n.proc.poll() is None for n in nodes)  # both running again
        assert all(n.starts >= 1 for n in nodes) and sum(n.starts for n in nodes) == 2 + 3
    finally:
        killer.stop()
        for n in nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.kill()
                n.proc.wait()


def test_arguments_are_checked() -> None:
    assert parse_args([]).nodes == 3
    for bad in (["--nodes", "1"], ["--every-s", "5", "--down-s", "6"], ["--env", "FOO=1"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
