"""A tiny swarm through the real path: real Redis, lobby, matchmaker and node on free loopback
ports (in this process), 16 bots in 2 worker processes; the report must say races were
matched and finished, with latencies, and its files must parse."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena import keys
from arena.backoff import BackoffSettings
from arena.ids import NodeId
from arena.placement import NodePlacer
from arena.registry import NodeRegistry
from arena.settings import RedisSettings, SecretSettings
from arena.tickets import TicketStore
from gameserver.app import build_app as build_node_app
from gameserver.settings import NodeSettings
from lobby.app import build_app as build_lobby_app
from matchmaker.metrics import MatchmakerMetrics
from matchmaker.service import Matchmaker
from ops.services import RedisServer, free_port
from simulators.swarm.__main__ import main as swarm_main
from simulators.swarm.plan import Arrival, WorkerPlan
from simulators.swarm.player import SEED_ATTEMPTS
from simulators.swarm.run import SwarmError, SwarmSettings, run_swarm
from simulators.swarm.scenario import TypingMix, load_scenario, parse_scenario
from simulators.swarm.worker import run_worker
from tests.conftest import ADMIN
from tests.lobby.conftest import SECRET, lobby_settings
from tests.matchmaker.conftest import FAST_MM, RACE, SHORT_CORPUS

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "simulators" / "scenarios" / "smoke.toml"
MM = replace(
    FAST_MM,
    matchmaker_id="mm-swarm",
    regions=("local",),
    neighbours={},
    max_wait_s=3.0,
    secrets=SecretSettings(admin_token=ADMIN),
)


@pytest.fixture
async def cluster(redis_url: str) -> AsyncIterator[str]:
    """A node, a matchmaker and a lobby sharing one secret; yields the lobby's URL."""
    node_settings = NodeSettings(
        node_id=NodeId("swarm-node"),
        port=free_port(),
        admin_port=0,  # any free port: the registry carries it to the matchmaker
        region="local",
        capacity=1000,
        heartbeat_s=0.2,
        redis=RedisSettings(url=redis_url),
        secrets=SecretSettings(token_secret=SECRET, admin_token=ADMIN),
        race=RACE,
    )
    node = web.AppRunner(build_node_app(node_settings, SHORT_CORPUS), handle_signals=False)
    await node.setup()
    await web.TCPSite(node, "127.0.0.1", node_settings.port).start()
    # The lobby's per-IP limit would count every bot as one client (all come from 127.0.0.1).
    settings = lobby_settings(redis_url, regions=("local",), rate_per_ip=0)
    lobby = web.AppRunner(build_lobby_app(settings), handle_signals=False)
    await lobby.setup()
    await web.TCPSite(lobby, "127.0.0.1", settings.port).start()
    client = aioredis.Redis.from_url(redis_url)
    store = TicketStore(client)
    metrics = MatchmakerMetrics()
    async with aiohttp.ClientSession() as http:
        placer = NodePlacer(
            NodeRegistry(client, stale_after_ms=1000), http, ADMIN, timeout_s=1.0, attempts=3, refresh_s=0.2
        )
        mm = Matchmaker(MM, client, store, placer, metrics)
        await mm.start()
        try:
            yield f"http://127.0.0.1:{settings.port}"
        finally:
            await mm.stop(deadline_s=1.0)
            await store.aclose()
            await client.aclose()
            await lobby.cleanup()
            await node.cleanup()


@pytest.mark.timeout(90)
async def test_a_tiny_swarm_races_through_lobby_matchmaker_and_node(
    cluster: str, redis_url: str, tmp_path: Path
) -> None:
    scenario = load_scenario(SMOKE)
    report = await run_swarm(
        scenario, SwarmSettings(lobby_url=cluster, out_dir=tmp_path, redis_url=redis_url)
    )

    assert report.players["arrived"] == scenario.players
    assert report.players["matched"] == scenario.players, report.errors
    assert report.players["finished"] >= scenario.players - 1, report.errors
    assert report.races >= 4  # at most 5 to a race
    assert report.time_to_match_s.count == scenario.players and report.time_to_match_s.p95 is not None
    assert report.join_latency_ms.count >= scenario.players - 1
    assert report.input_to_broadcast_ms.count > 50
    assert 0 < (report.input_to_broadcast_ms.p50 or 0) < 1000
    assert max(report.series.connections) >= 2 and max(report.series.races) >= 1
    assert report.inputs_per_s["peak"] > 0 and report.frames_per_s["peak"] > 0
    assert {w.worker for w in report.workers} == {0, 1}
    assert {p.name for p in report.processes} == {"worker-0", "worker-1"}
    assert not [k for k in report.errors if not k.endswith("_expected")], report.errors

    data = json.loads((tmp_path / "report.json").read_text())
    assert data["players"]["finished"] == report.players["finished"]
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "time to match" in (tmp_path / "report.txt").read_text()


def test_the_cli_refuses_a_bad_scenario_and_a_remote_lobby(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI configures structlog globally; here it must keep the test session's logging.
    monkeypatch.setattr("simulators.swarm.__main__.configure_logging", lambda settings: None)
    bad = tmp_path / "bad.toml"
    bad.write_text("[swarm]\nplayers = 0\n")
    assert swarm_main(["--scenario", str(bad), "--lobby", "http://127.0.0.1:9"]) == 2
    assert "swarm.players must be in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        swarm_main(["--scenario", str(SMOKE), "--lobby", "http://example.com"])
    assert "loopback" in capsys.readouterr().err


async def test_a_region_the_lobby_does_not_offer_stops_the_run_before_it_starts(
    cluster: str, tmp_path: Path
) -> None:
    scenario = parse_scenario(
        {"swarm": {"players": 2, "arrival_rate": 1.0, "duration_s": 2}, "regions": {"mars": 1}}
    )
    with pytest.raises(SwarmError, match=r"does not offer region\(s\) \['mars'\]; it offers \['local'\]"):
        await run_swarm(scenario, SwarmSettings(lobby_url=cluster, out_dir=tmp_path))
    assert not _files(tmp_path)  # no worker was started
    with pytest.raises(SwarmError, match="does not answer"):
        await run_swarm(scenario, SwarmSettings(lobby_url="http://127.0.0.1:9", out_dir=tmp_path))


def _files(path: Path) -> list[Path]:
    return list(path.iterdir())


async def test_a_worker_whose_redis_is_down_during_rating_seeding_counts_errors_and_its_bots_carry_on(
    cluster: str,
) -> None:
    """The seeding Redis (its own server here, so the lobby's stays up) is down when the first
    two players arrive, and back before the last two: every player races (one race of four),
    the first two with their seeding failures counted, the last two seeded."""
    seed_server = RedisServer(port=free_port())
    now = time.monotonic()
    arrivals = [
        Arrival(index=i, at_s=at, race_type="quick", region="local", rating=1500.0 + i, seed=i)
        for i, at in enumerate([0.0, 0.05, 0.9, 0.95])
    ]
    plan = WorkerPlan(
        worker=0,
        lobby_url=cluster,
        t0=now,
        stop_at=now + 25,
        typing=TypingMix(mean_wpm=140, sd_wpm=5),
        redis_url=seed_server.url,
        arrivals=arrivals,
    )
    # Seeding gives up after 0.05 + 0.1 + 0.1 s of retries: before Redis is back.
    worker = asyncio.create_task(run_worker(plan, retry=BackoffSettings(base_s=0.05, cap_s=0.1, jitter=0.0)))
    try:
        await asyncio.sleep(0.4)
        await asyncio.to_thread(seed_server.start)
        assert time.monotonic() - now < 0.9, "Redis came back too late for this test's plan"
        result = await asyncio.wait_for(worker, 30)
        seeded = aioredis.Redis.from_url(seed_server.url)
        try:
            ratings = [await seeded.hget(keys.player_rating(r.player_id or ""), "r") for r in result.records]
        finally:
            await seeded.aclose()
    finally:
        worker.cancel()
        seed_server.stop()
    first, second, third, fourth = result.records
    for record in (first, second):
        assert record.errors == ["redis_seed_ConnectionError"] * SEED_ATTEMPTS
    for record in (third, fourth):
        assert record.errors == []
    assert all(r.finished and r.wpm for r in result.records), [(r.index, r.errors) for r in result.records]
    assert ratings == [None, None, b"1502.0", b"1503.0"]
    assert [r.seeded for r in result.records] == [False, False, True, True]
