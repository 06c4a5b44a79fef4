"""`make run`'s launcher brings the whole local cluster up and down cleanly."""

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from arena.backoff import Backoff, BackoffSettings
from ops.cluster import Supervised


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Not under pytest's 0700 tmp: PostgreSQL runs as its own user and must reach it."""
    path = Path(tempfile.mkdtemp(prefix="arena-cluster-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_cluster_starts_every_process_and_stops(run_dir: Path) -> None:
    tmp_path = run_dir
    run = subprocess.run(
        [sys.executable, "-m", "ops.cluster", "--check", "--bots", "2", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Typogram Arena is running" in run.stdout
    assert "PLAY        http://127.0.0.1:" in run.stdout  # the page's address
    logs = tmp_path / "logs"
    expected = {
        "node-1.log": "gameserver_listening",
        "node-2.log": "gameserver_listening",
        "matchmaker.log": "matchmaker_listening",
        "lobby.log": "lobby_listening",
        "persistence.log": "persistence_stopped",
        "house.log": "house_bots_started",
    }
    for name, event in expected.items():
        assert event in (logs / name).read_text(), name
    for name in ("node-1.log", "node-2.log"):
        assert "gameserver_stopped" in (logs / name).read_text()
    # nothing left running from this run
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps


def test_a_process_that_keeps_exiting_is_restarted_with_growing_delays(tmp_path: Path) -> None:
    flaky = Supervised(
        "flaky",
        [sys.executable, "-c", "raise SystemExit(3)"],
        dict(os.environ),
        tmp_path / "flaky.log",
        backoff=Backoff(BackoffSettings(base_s=0.2, cap_s=0.4, jitter=0.0)),
    )
    flaky.start()
    restarts: list[float] = []
    deadline = time.monotonic() + 1.6
    try:
        while time.monotonic() < deadline:
            before = flaky.starts
            flaky.poll()  # the supervisor's loop, polling far more often than it does
            if flaky.starts > before:
                restarts.append(time.monotonic())
            time.sleep(0.01)
    finally:
        flaky.restart = False
        flaky.stop()
    # Exits at once each time: restarted after 0.2, 0.4, 0.4, 0.4 s (capped), not at every poll.
    assert 3 <= len(restarts) <= 4, restarts
    gaps = [b - a for a, b in itertools.pairwise(restarts)]
    assert all(gap >= 0.4 for gap in gaps), gaps
    logged = (tmp_path / "flaky.log").read_text()
    assert "flaky exited (3); restart in 0.2 s" in logged and "restart in 0.4 s" in logged
