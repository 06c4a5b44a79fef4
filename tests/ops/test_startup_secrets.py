"""Outside development every process refuses to start without usable secrets: one error line
naming the variable, exit 2, no traceback, and nothing served. Likewise a node that cannot
listen where its admin listener should (exit 1)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ops.services import free_port

ROOT = Path(__file__).resolve().parents[2]
SECRET = "x" * 40
ADMIN = "y" * 30


def production_env(**extra: str) -> dict[str, str]:
    """The test's environment without any ARENA_* setting, in production mode with JSON logs on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARENA_")}
    port = str(free_port())  # nothing listens there: a process that got past its settings would fail later
    return env | {
        "ARENA_ENV": "production",
        "ARENA_LOG_JSON": "1",
        "ARENA_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        **extra,
    }


@pytest.mark.parametrize(
    ("argv", "extra", "variable"),
    [
        (["gameserver"], {}, "ARENA_TOKEN_SECRET is not set"),
        (["gameserver"], {"ARENA_TOKEN_SECRET": SECRET}, "ARENA_ADMIN_TOKEN is not set"),
        (["gameserver"], {"ARENA_TOKEN_SECRET": SECRET, "ARENA_ADMIN_TOKEN": "dev-admin-token"},
         "ARENA_ADMIN_TOKEN is the public development default"),
        (["lobby"], {}, "ARENA_TOKEN_SECRET is not set"),
        (["lobby"], {"ARENA_TOKEN_SECRET": "dev-secret-change-me-please", "ARENA_ADMIN_TOKEN": ADMIN},
         "ARENA_TOKEN_SECRET is the public development default"),
        (["lobby"], {"ARENA_TOKEN_SECRET": SECRET}, "ARENA_ADMIN_TOKEN is not set"),  # private races
        (["matchmaker"], {}, "ARENA_ADMIN_TOKEN is not set"),
        (["matchmaker"], {"ARENA_ADMIN_TOKEN": "short-token"}, "ARENA_ADMIN_TOKEN is 11 characters"),
        (["tournaments"], {}, "ARENA_ADMIN_TOKEN is not set"),
        # persistence reads no secret; a bad setting of its own ends the same way
        (["persistence"], {"ARENA_PERSIST_PORT": "eighty"}, "ARENA_PERSIST_PORT must be an integer"),
        (["gameserver"], {"ARENA_ENV": "prod"}, "ARENA_ENV must be 'production'"),
        # a section's own ValueError ends the same way, in development too
        (["gameserver"], {"ARENA_ENV": "development", "ARENA_RACE_INPUT_CADENCE_MS": "5000"},
         "ARENA_RACE_INPUT_CADENCE_MS must be between"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else None,
)  # fmt: skip
def test_a_process_without_usable_secrets_refuses_to_start(
    argv: list[str], extra: dict[str, str], variable: str
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", *argv], env=production_env(**extra), cwd=ROOT, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr and run.stdout == "", run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 1, lines
    event = json.loads(lines[0])  # JSON logs on, as in production
    assert event["event"] == "settings_invalid" and event["level"] == "error"
    assert event["error"].startswith(variable), event


@pytest.mark.parametrize("command", [["drain", "node-a"], ["undrain", "node-a"]])
def test_ops_admin_refuses_to_send_an_unusable_admin_token(command: list[str]) -> None:
    for extra, args, problem in [
        ({}, [], "ARENA_ADMIN_TOKEN is not set"),
        ({"ARENA_ADMIN_TOKEN": "dev-admin-token"}, [], "ARENA_ADMIN_TOKEN is the public development default"),
        ({}, ["--admin-token", "too-short"], "ARENA_ADMIN_TOKEN is 9 characters"),
    ]:
        run = subprocess.run(
            [sys.executable, "-m", "ops.admin", *args, *command], env=production_env(**extra), cwd=ROOT,
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert run.returncode == 2, (run.returncode, run.stderr)
        assert run.stderr.splitlines() == [run.stderr.strip()] and run.stderr.startswith(f"error: {problem}")


def test_a_node_whose_admin_port_is_taken_exits_with_one_line() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env = production_env(
            ARENA_TOKEN_SECRET=SECRET,
            ARENA_ADMIN_TOKEN=ADMIN,
            ARENA_NODE_PORT=str(free_port()),
            ARENA_NODE_ADMIN_PORT=str(squatter.getsockname()[1]),
        )
        run = subprocess.run(
            [sys.executable, "-m", "gameserver"], env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=30,
        )  # fmt: skip
    assert run.returncode == 1, run.stderr
    (line,) = run.stderr.splitlines()
    event = json.loads(line)
    assert event["event"] == "listen_failed" and "ARENA_NODE_ADMIN_PORT" in event["error"], event
