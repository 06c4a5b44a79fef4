"""`make run`'s launcher brings the whole local cluster up and down cleanly."""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


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
