"""``python -m lobby``: starts from the environment, serves, and stops cleanly on SIGTERM."""

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp

from ops.services import free_port

ROOT = Path(__file__).resolve().parents[2]



async def wait_ready(http: aiohttp.ClientSession, base: str) -> None:
    """Poll the lobby's /readyz for up to 30 s (a busy machine takes seconds to start a process)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            async with http.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)

async def test_process_serves_and_stops_on_sigterm(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = os.environ | {
        "ARENA_LOBBY_PORT": str(port),
        "ARENA_REDIS_URL": redis_url,
        "ARENA_LOBBY_SCRYPT_N": "256",
    }
    with (tmp_path / "lobby.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lobby", env=env, cwd=ROOT, stdout=log, stderr=log
        )
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"http://127.0.0.1:{port}")
            async with http.post(f"http://127.0.0.1:{port}/v1/guests", json={"name": "ada"}) as resp:
                assert resp.status == 201
            # The collector was tuned after start-up: its first full collection was timed.
            async with http.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert 'arena_lobby_gc_pause_seconds_count{generation="2"}' in await resp.text()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    logged = (tmp_path / "lobby.log").read_text()
    assert "lobby_listening" in logged and "lobby_stopping" in logged and "lobby_stopped" in logged


async def test_shutdown_grace_cuts_long_polls_in_flight(redis_url: str, tmp_path: Path) -> None:
    """ARENA_LOBBY_SHUTDOWN_GRACE_S bounds the stop; by default it waits for the longest long-poll."""
    port = free_port()
    env = os.environ | {
        "ARENA_LOBBY_PORT": str(port),
        "ARENA_REDIS_URL": redis_url,
        "ARENA_LOBBY_SCRYPT_N": "256",
        "ARENA_LOBBY_SHUTDOWN_GRACE_S": "0.5",
    }
    with (tmp_path / "lobby.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lobby", env=env, cwd=ROOT, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, base)
            async with http.post(f"{base}/v1/guests", json={"name": "ada"}) as resp:
                auth = {"Authorization": f"Bearer {(await resp.json())['token']}"}
            ticket = {"race_type": "quick", "region": "local"}
            async with http.post(f"{base}/v1/tickets", json=ticket, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
                ticket_id = (await resp.json())["ticket_id"]
            poll = asyncio.ensure_future(http.get(f"{base}/v1/tickets/{ticket_id}?wait=20", headers=auth))
            await asyncio.sleep(0.3)  # the long-poll is in flight (nothing matches it: no matchmaker)
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
            assert time.monotonic() - began < 3.0  # not the 20 s long-poll
            poll.cancel()
            await asyncio.gather(poll, return_exceptions=True)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "lobby_stopped" in (tmp_path / "lobby.log").read_text()
