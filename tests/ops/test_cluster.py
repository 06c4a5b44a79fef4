"""`make run`'s launcher brings the whole local cluster up and down cleanly."""

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from arena.backoff import Backoff, BackoffSettings
from arena.settings import SecretSettings, SettingsError
from ops.cluster import PORT_OFFSETS, ClusterSettings, Supervised, fixed_ports, local_secrets, taken_ports

STOPPED_EVENTS = {  # each process's last word when it stops cleanly
    "house.log": "house_bots_stopped",
    "bots.log": "bots_stopped",
    "matchmaker.log": "matchmaker_stopped",
    "tournaments.log": "director_stopped",
    "lobby.log": "lobby_stopped",
    "node-1.log": "gameserver_stopped",
    "node-2.log": "gameserver_stopped",
    "persistence.log": "persistence_stopped",
}
# What `stopping in order` must print, stage by stage (within a stage, any order).
STOP_STAGES = [
    {"house", "bots", "matchmaker", "tournaments"},
    {"lobby"},
    {"node-1", "node-2"},
    {"outbox"},
    {"persistence"},
    {"kafka"},
    {"postgres"},
    {"redis"},
]
LOG_LINE = re.compile(r"^(\S+Z) \[\w+\s*\] (\w+)")


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Not under pytest's 0700 tmp: PostgreSQL runs as its own user and must reach it."""
    path = Path(tempfile.mkdtemp(prefix="arena-cluster-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def cluster_env() -> dict[str, str]:
    """The test's environment without the developer's ARENA_* settings (a port base, graces)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("ARENA_")}


def free_port_base() -> int:
    """A base below the ephemeral range whose ports are all free (nobody else picks them)."""
    for base in range(21000, 30000, 37):
        if not taken_ports(fixed_ports(base)):
            return base
    raise AssertionError("no free port base")


def event_times(log: str) -> dict[str, datetime]:
    """First time each event was logged."""
    times: dict[str, datetime] = {}
    for line in log.splitlines():
        match = LOG_LINE.match(line)
        if match:
            times.setdefault(match.group(2), datetime.fromisoformat(match.group(1)))
    return times


@pytest.mark.parametrize("ctrl_c", [1, 2], ids=["one-ctrl-c", "two-ctrl-c"])
def test_ctrl_c_stops_everything_in_order_quickly(run_dir: Path, ctrl_c: int) -> None:
    """What a terminal does: SIGINT to the launcher's whole process group, once or twice.

    Also: every process started (and the banner's commands work), logs stay quiet.
    """
    port_base = free_port_base() if ctrl_c == 2 else 0  # fixed ports once: the page at the base
    argv = [sys.executable, "-m", "ops.cluster", "--bots", "2", "--run-dir", str(run_dir)]
    if port_base:
        argv += ["--port-base", str(port_base)]
    out_path = run_dir / "cluster.out"
    with out_path.open("wb") as out:
        cluster = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=cluster_env(), start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while "Typogram Arena is running" not in out_path.read_text() and time.monotonic() < deadline:
            assert cluster.poll() is None, out_path.read_text()
            time.sleep(0.1)
        banner = out_path.read_text()
        if port_base:
            assert f"PLAY        http://127.0.0.1:{port_base}/" in banner
        # The banner's admin command works pasted into a shell without the venv, from anywhere.
        admin = re.search(r"^  admin +(.+)$", banner, re.M)
        assert admin is not None, banner
        shell = ["bash", "-c", admin.group(1)]
        status = subprocess.run(shell, cwd="/", env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
        assert status.returncode == 0 and "2 nodes" in status.stdout, status.stdout + status.stderr
        time.sleep(1.0)  # house bots queue meanwhile: routine lobby traffic
        began = time.monotonic()
        for _ in range(ctrl_c):
            os.killpg(cluster.pid, signal.SIGINT)
            time.sleep(0.3)
        code = cluster.wait(30)
        took = time.monotonic() - began
    finally:
        if cluster.poll() is None:
            cluster.kill()
            cluster.wait()
    out = out_path.read_text()
    assert code == 0, out
    assert took < 15.0, out
    assert "SIGKILL" not in out
    assert ("already stopping" in out) == (ctrl_c == 2)

    # The launcher's own account: one stage after the other.
    steps = re.findall(r"^  (?:stopped (\S+)|(outbox) flushed)", out[out.index("stopping in order") :], re.M)
    order = [stopped or outbox for stopped, outbox in steps]
    stages = [next(i for i, names in enumerate(STOP_STAGES) if name in names) for name in order]
    assert stages == sorted(stages) and set(order) == set().union(*STOP_STAGES), order
    for name in STOPPED_EVENTS:
        assert f"stopped {name.removesuffix('.log'):<12} exit 0 " in out, out

    # Each process's own log: its stopped event, no forced exit, and the times agree with the order.
    logs = run_dir / "logs"
    texts = {name: (logs / name).read_text() for name in STOPPED_EVENTS}
    for name in ("node-1.log", "node-2.log", "matchmaker.log", "lobby.log", "persistence.log"):
        assert re.search(r"\] \w+_listening", texts[name]), name
    for name, event in STOPPED_EVENTS.items():
        tail = (name, texts[name][-2000:])
        assert event in texts[name], tail
        assert "stop_forced" not in texts[name] and "Traceback" not in texts[name], tail
    times = {name: event_times(text) for name, text in texts.items()}
    placers_done = max(
        times["house.log"]["house_bots_stopped"],
        times["matchmaker.log"]["matchmaker_stopped"],
        times["tournaments.log"]["director_stopped"],
    )
    assert placers_done < times["lobby.log"]["lobby_stopping"]
    for node in ("node-1.log", "node-2.log"):
        assert times["lobby.log"]["lobby_stopped"] < times[node]["node_draining"]
        assert times[node]["gameserver_stopped"] < times["persistence.log"]["persistence_stopping"]
    # The bots' race was cut: aborted, its result in the outbox, which persistence drained first.
    assert "state=aborted" in texts["node-1.log"]
    # Quiet by default: no access log or ticket churn, though the house bots kept queueing.
    queued = re.search(r"house_bots_stopped +queued=(\d+)", texts["house.log"])
    assert queued is not None and int(queued.group(1)) > 0
    assert "ticket_created" not in texts["lobby.log"] and "HTTP/1.1" not in texts["lobby.log"]
    assert len(texts["lobby.log"]) < 2000, texts["lobby.log"]
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(run_dir) not in ps


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


def test_fixed_ports_that_are_taken_fail_clearly_before_anything_starts(run_dir: Path) -> None:
    base = free_port_base()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT left by another test
        squatter.bind(("127.0.0.1", base + PORT_OFFSETS["lobby"]))
        squatter.listen()
        run = subprocess.run(
            [sys.executable, "-m", "ops.cluster", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            env=cluster_env() | {"ARENA_CLUSTER_PORT_BASE": str(base)},
        )
    assert run.returncode == 1
    assert f"lobby :{base}" in run.stderr and "ARENA_CLUSTER_PORT_BASE" in run.stderr, run.stderr
    assert not (run_dir / "redis").exists()  # failed before starting anything


def test_cluster_settings() -> None:
    assert ClusterSettings.from_env({}).port_base == 0
    assert ClusterSettings.from_env({"ARENA_CLUSTER_PORT_BASE": "8300"}).port_base == 8300
    assert fixed_ports(8300)["lobby"] == 8300 and len(set(fixed_ports(8300).values())) == len(PORT_OFFSETS)
    for bad in ("80", "65530", "x"):
        with pytest.raises(SettingsError):
            ClusterSettings.from_env({"ARENA_CLUSTER_PORT_BASE": bad})


def test_local_secrets_are_random_strong_kept_private_and_reused(tmp_path: Path) -> None:
    made = local_secrets(tmp_path, {})
    assert set(made) == {"ARENA_TOKEN_SECRET", "ARENA_ADMIN_TOKEN"}
    assert made["ARENA_TOKEN_SECRET"] != made["ARENA_ADMIN_TOKEN"]
    SecretSettings.from_env({"ARENA_ENV": "production", **made})  # good enough for production too
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert local_secrets(tmp_path, {}) == made  # the next run: the page's sessions still hold
    assert local_secrets(tmp_path, {"ARENA_ADMIN_TOKEN": "mine"})["ARENA_ADMIN_TOKEN"] == "mine"
    (tmp_path / "secrets.json").write_text("{not json")
    again = local_secrets(tmp_path, {})
    assert again != made and len(again["ARENA_TOKEN_SECRET"]) >= 32
