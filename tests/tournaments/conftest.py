"""Tournament fixtures: the API on a tiny app, in-process or subprocess directors, bot players.

Players are real: each ``play`` agent long-polls its heat through the API and races every seat
it gets with a ``Bot`` over the real protocol, on real in-process nodes (``node_factory``).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.ids import PlayerId
from arena.placement import NodePlacer
from arena.registry import NodeRegistry
from arena.settings import RedisSettings, SecretSettings
from arena.tokens import TokenSigner
from ops.services import KafkaBroker, PostgresServer, free_port
from persistence.app import PersistenceService
from persistence.migrate import migrate
from persistence.settings import (
    ConsumerSettings,
    KafkaSettings,
    PersistenceSettings,
    PostgresSettings,
    ReadSideSettings,
)
from simulators.bot import Bot, BotReport, RaceGone
from simulators.typing import TypingProfile
from tests.conftest import ADMIN, FAST_RACE, redis_client
from tournaments import api as tournament_api
from tournaments.director import Director
from tournaments.settings import ApiSettings, DirectorSettings

ROOT = Path(__file__).resolve().parents[2]
SECRET = b"test-secret-0123456789"  # the test nodes' secret: lobby tokens work on both
# Short enough that a heat takes a few seconds at bot speeds.
TEXT = "Quiet rivers carve deep valleys over many patient years."

FAST_DIRECTOR = DirectorSettings(
    director_id="td-test",
    tick_s=0.1,
    lease_ttl_s=2.0,
    lease_renew_s=0.5,
    node_stale_ms=3000,
    node_timeout_s=2.0,
    claim_idle_ms=1000,
    intake_block_ms=100,
    dead_node_grace_s=1.0,
    secrets=SecretSettings(token_secret=SECRET, admin_token=ADMIN),
    race=FAST_RACE,
)


# ---- the API --------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any

    def ok(self, status: int = 200) -> Any:
        assert self.status == status, (self.status, self.body)
        return self.body


class Client:
    """A small JSON client of the tournament API."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.signer = TokenSigner(SECRET)

    def token(self, player_id: str, name: str | None = None) -> str:
        return self.signer.sign_player(PlayerId(player_id), name or player_id, ttl_s=3600, guest=True)

    async def call(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as resp:
            return Reply(resp.status, await resp.json())

    async def create(self, token: str, **spec: Any) -> dict[str, Any]:
        body = {
            "name": "test cup",
            "type": "instant",
            "race_type": "custom",
            "custom_text": TEXT,
            "heat_size": 5,
            "advancement": {"rule": "top_k", "advance": 2},
            **spec,
        }
        created: dict[str, Any] = (await self.call("POST", "/v1/tournaments", token=token, body=body)).ok(201)
        return created

    async def register(self, tid: str, token: str, **body: Any) -> Reply:
        return await self.call("POST", f"/v1/tournaments/{tid}/registration", token=token, body=body or None)

    async def get(self, tid: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.call("GET", f"/v1/tournaments/{tid}")).ok()
        return body

    async def heat(self, tid: str, token: str, *, wait: float = 0, since: str = "") -> dict[str, Any]:
        path = f"/v1/tournaments/{tid}/heat?wait={wait}&since={since}"
        body: dict[str, Any] = (await self.call("GET", path, token=token)).ok()
        return body

    async def wait_state(self, tid: str, states: set[str], timeout_s: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            t = await self.get(tid)
            if t["state"] in states:
                return t
            assert loop.time() < deadline, f"tournament still {t['state']} after {timeout_s}s"
            await asyncio.sleep(0.1)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = redis_client(redis_url)
    # Connected before the test: a cluster client's first command also learns the slot map,
    # which would eat into the short leases some tests time.
    await client.ping()
    yield client
    await client.aclose()


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    """The tournament routes on a bare app (the lobby mounts the same with ``setup``)."""
    app = web.Application()
    settings = ApiSettings(redis=RedisSettings(redis_url), secrets=SecretSettings(token_secret=SECRET))
    tournament_api.setup(app, settings)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as http:
        yield Client(http, f"http://127.0.0.1:{port}")
    await runner.cleanup()


# ---- directors -------------------------------------------------------------------------

DirectorFactory = Callable[..., Awaitable[Director]]


@pytest.fixture
async def director_factory(redis_url: str) -> AsyncIterator[DirectorFactory]:
    started: list[tuple[Director, aiohttp.ClientSession, aioredis.Redis]] = []

    async def start(placer_class: type[NodePlacer] = NodePlacer, **changes: Any) -> Director:
        settings = replace(FAST_DIRECTOR, redis=RedisSettings(redis_url), **changes)
        redis = redis_client(redis_url)
        http = aiohttp.ClientSession()
        placer = placer_class(NodeRegistry(redis, stale_after_ms=settings.node_stale_ms), http, ADMIN)
        director = Director(settings, redis, placer)
        await director.start()
        started.append((director, http, redis))
        return director

    yield start
    for director, http, redis in reversed(started):
        await director.stop()
        assert director.tasks_alive() == []
        await http.close()
        await redis.aclose()


def director_env(redis_url: str, director_id: str, **extra: str) -> dict[str, str]:
    """``python -m tournaments`` with the fast settings above."""
    return {
        **os.environ,
        "ARENA_REDIS_URL": redis_url,
        "ARENA_ADMIN_TOKEN": ADMIN,
        "ARENA_TOKEN_SECRET": SECRET.decode(),
        "ARENA_TOURNAMENT_DIRECTOR_ID": director_id,
        "ARENA_TOURNAMENT_PORT": str(free_port()),
        "ARENA_TOURNAMENT_TICK_S": "0.1",
        "ARENA_TOURNAMENT_LEASE_TTL_S": "2",
        "ARENA_TOURNAMENT_LEASE_RENEW_S": "0.5",
        "ARENA_TOURNAMENT_CLAIM_IDLE_MS": "1000",
        "ARENA_TOURNAMENT_INTAKE_BLOCK_MS": "100",
        "ARENA_RACE_COUNTDOWN_S": str(FAST_RACE.countdown_s),
        "ARENA_RACE_WAIT_TIMEOUT_S": str(FAST_RACE.wait_timeout_s),
        "ARENA_RACE_GRACE_S": str(FAST_RACE.grace_s),
        "ARENA_LOG_LEVEL": "warning",
        **extra,
    }


@pytest.fixture
async def spawned() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Processes a test starts; killed at the end if still running (only these, by pid)."""
    procs: list[asyncio.subprocess.Process] = []
    yield procs
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)


async def spawn(
    procs: list[asyncio.subprocess.Process], module: str, env: dict[str, str]
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", module, env=env, cwd=ROOT)
    procs.append(proc)
    return proc


@dataclass
class NodeProcess:
    proc: asyncio.subprocess.Process
    node_id: str
    port: int


async def start_node_process(
    procs: list[asyncio.subprocess.Process], redis_url: str, node_id: str, *, capacity: int = 10000
) -> NodeProcess:
    """A gameserver node as its own process (so a test can SIGKILL it), heartbeating every 0.5 s."""
    port = free_port()
    env = {
        **os.environ,
        "ARENA_REDIS_URL": redis_url,
        "ARENA_NODE_ID": node_id,
        "ARENA_NODE_PORT": str(port),
        "ARENA_NODE_ADMIN_PORT": "0",  # any free port: the registry carries it to the director
        "ARENA_NODE_CAPACITY": str(capacity),
        "ARENA_NODE_HEARTBEAT_S": "0.5",
        "ARENA_ADMIN_TOKEN": ADMIN,
        "ARENA_TOKEN_SECRET": SECRET.decode(),
        "ARENA_RACE_COUNTDOWN_S": str(FAST_RACE.countdown_s),
        "ARENA_RACE_WAIT_TIMEOUT_S": str(FAST_RACE.wait_timeout_s),
        "ARENA_RACE_GRACE_S": str(FAST_RACE.grace_s),
        "ARENA_LOG_LEVEL": "warning",
    }
    proc = await spawn(procs, "gameserver", env)
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return NodeProcess(proc, node_id, port)
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"node {node_id} did not come up")


# ---- persistence -----------------------------------------------------------------------


@pytest.fixture
async def persisted(
    redis_url: str, postgres_server: PostgresServer, kafka_broker: KafkaBroker
) -> AsyncIterator[str]:
    """The persistence service on a fresh database; yields its DSN. No trimming, so the test
    can read the outbox afterwards."""
    name = f"tourn_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_server.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = postgres_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(dsn)
    await migrate(conn)
    await conn.close()
    settings = PersistenceSettings(
        redis=RedisSettings(redis_url),
        postgres=PostgresSettings(dsn=dsn, pool_size=4, command_timeout_s=10.0),
        kafka=KafkaSettings(
            bootstrap=kafka_broker.bootstrap,
            race_topic=f"race-events-{name}",
            heat_topic=f"tournament-scores-{name}",
            publish_timeout_s=3.0,
        ),
        consumer=ConsumerSettings(
            consumer="test", workers=1, batch_size=50, block_ms=100, claim_idle_ms=400, trim=False
        ),
        readside=ReadSideSettings(review_provisional_max_s=0),  # placement off: every player is new
    )
    service = PersistenceService(settings)
    await service.start()
    yield dsn
    await service.stop()
    admin = await asyncpg.connect(postgres_server.dsn)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


# ---- players ---------------------------------------------------------------------------


def profile(wpm: float) -> TypingProfile:
    return TypingProfile(wpm=wpm, error_rate=0.01, jitter_cv=0.4, notice_delay_chars=1, pause_chance=0.0)


@dataclass
class PlayerRun:
    player_id: str
    races: list[str] = field(default_factory=list)  # race ids this player was seated in
    reports: list[BotReport] = field(default_factory=list)
    final: dict[str, Any] | None = None  # the last heat answer (eliminated / finished)


async def play(client: Client, tid: str, player_id: str, wpm: float, *, timeout_s: float = 90.0) -> PlayerRun:
    """Follow one player's heats until eliminated or the end, racing every seat with a bot."""
    token = client.token(player_id)
    run = PlayerRun(player_id)
    bot: asyncio.Task[BotReport] | None = None
    since = ""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while loop.time() < deadline:
            answer = await client.heat(tid, token, wait=10, since=since)
            since = answer["key"]
            if answer["status"] in ("eliminated", "finished", "cancelled"):
                run.final = answer
                break
            if answer["status"] == "racing" and answer["race_id"] not in run.races:
                run.races.append(answer["race_id"])
                if bot is not None and not bot.done():
                    bot.cancel()  # a re-run replaces a race whose node died
                rng = random.Random(f"{player_id}-{len(run.races)}")

                async def locate(race_id: str = answer["race_id"]) -> str | None:
                    """Where the heat's race is now (adopted after its node died: moved)."""
                    now = await client.heat(tid, token)
                    if now["status"] != "racing" or now.get("race_id") != race_id:
                        raise RaceGone(f"the heat is {now['status']}")  # re-run or decided
                    return str(now["url"])

                b = Bot(
                    answer["url"],
                    answer["player_token"],
                    answer["ticket"],
                    profile(wpm),
                    rng,
                    name=player_id,
                    reconnect_s=15.0,
                    locate=locate,
                )
                bot = asyncio.create_task(b.run(timeout_s=40))
                bot.add_done_callback(lambda t: run.reports.append(t.result()) if not t.cancelled() else None)
    finally:
        if bot is not None and not bot.done():
            try:
                await asyncio.wait_for(bot, 15)
            except (TimeoutError, asyncio.CancelledError):
                pass
    return run


def speeds(n: int, seed: int = 1) -> list[float]:
    """Distinct bot speeds, so places follow speed and results are easy to check."""
    rng = random.Random(seed)
    return [round(rng.uniform(120.0, 190.0), 1) for _ in range(n)]
