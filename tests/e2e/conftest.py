"""End-to-end fixtures: a lobby serving the page, a real node with short passages, a matchmaker,
persistence (its own migrated PostgreSQL database, the session's Kafka broker) draining the
node's outbox from the same Redis, and a headless Chromium (Debian's ``chromium`` +
``chromedriver``; nothing is downloaded).

The browser is blocking (Selenium), so tests drive it in a thread (``asyncio.to_thread``) while
the servers keep running on the test's event loop. Screenshots go to ``artifacts/e2e/``; every
one is taken at phone width (390 px) and checks that the page does not scroll sideways and that
each control it shows has an accessible name. ``second_browser`` starts another Chromium (its
own session) for two-player tests; ``director_factory`` runs a tournament director.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from arena.ids import NodeId
from arena.placement import NodePlacer
from arena.registry import NodeRegistry
from arena.settings import RedisSettings, SecretSettings
from arena.tickets import TicketStore
from gameserver.app import build_app as build_node_app
from gameserver.settings import NodeSettings, RaceSettings
from lobby import static
from matchmaker.service import Matchmaker
from ops.services import KafkaBroker, PostgresServer, free_port
from persistence.app import PersistenceService
from persistence.migrate import migrate
from persistence.settings import PostgresSettings
from tests.conftest import ADMIN
from tests.lobby.conftest import SECRET, LobbyFactory, RunningLobby, lobby_factory
from tests.matchmaker.conftest import FAST_MM, SHORT_CORPUS
from tests.persistence.helpers import Env, unique
from tests.tournaments.conftest import director_factory
from tournaments.settings import ApiSettings

__all__ = ["director_factory", "lobby_factory"]  # re-exported fixtures

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"
RACE = RaceSettings(countdown_s=2.0, wait_timeout_s=3.0, grace_s=5.0, tick_hz=20.0, ping_interval_s=1.0)
PHONE_WIDTH = 390  # CSS pixels: an ordinary phone held upright


def browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        return "Debian's chromium and chromium-driver are not installed"
    if not (static.MSGPACK_ROOT / "index.mjs").exists():
        return "node_modules/@msgpack/msgpack is missing (npm ci)"
    return None


def start_browser() -> tuple[Any, str]:
    """A headless Chromium at phone width with its own throw-away profile."""
    reason = browser_missing()
    # `make setup` installs all of it: a missing piece is a broken set-up, never a skip.
    assert reason is None, f"{reason}: run `make setup`"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="arena-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=500,900",
        f"--user-data-dir={profile}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(10)
    # A window cannot be narrower than 500 px: emulate the phone's viewport instead.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PHONE_WIDTH, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    return driver, profile


@pytest.fixture
def browser() -> Iterator[Any]:
    driver, profile = start_browser()
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def second_browser() -> Iterator[Callable[[], Any]]:
    """Another browser (its own session and storage), started only when the test asks."""
    started: list[tuple[Any, str]] = []

    def start() -> Any:
        started.append(start_browser())
        return started[-1][0]

    try:
        yield start
    finally:
        for driver, profile in started:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


# Shown form controls without a name for screen readers (no <label>, aria-label(ledby) or text).
UNLABELLED_JS = """
return [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => el.offsetParent !== null)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
    && !el.getAttribute('aria-labelledby') && !el.textContent.trim())
  .map((el) => el.id || el.outerHTML.slice(0, 80));
"""


def shot(driver: Any, name: str) -> None:
    """Save a screenshot, and check the screen: it fits the phone-width window (no sideways
    scroll) and every control it shows has a name for screen readers."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    widths = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[1] <= PHONE_WIDTH and widths[0] <= widths[1], f"{name}: horizontal overflow {widths}"
    unlabelled = driver.execute_script(UNLABELLED_JS)
    assert not unlabelled, f"{name}: controls without a label: {unlabelled}"


@pytest.fixture
async def e2e_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh database for this test, migrated with ``persistence.migrate``; dropped after."""
    name = unique("e2e").replace("-", "_")
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = postgres_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    yield dsn
    admin = await asyncpg.connect(postgres_server.dsn)
    try:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def persistence(
    redis_url: str, e2e_dsn: str, kafka_broker: KafkaBroker
) -> AsyncIterator[PersistenceService]:
    """Persistence in-process, as tests/persistence runs it (small batches, fast retries): it
    drains the outbox of the test's Redis into ``e2e_dsn`` and publishes to unique topics."""
    env = Env(
        redis_url,
        e2e_dsn,
        kafka_broker.bootstrap,
        unique("race-events"),
        unique("tournament-scores"),
        unique("players"),
    )
    service = PersistenceService(env.settings())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def page_lobby(
    lobby_factory: LobbyFactory, redis_url: str, persistence: PersistenceService, **changes: Any
) -> RunningLobby:
    """A lobby serving the page, reading persistence's database, with the tournament API."""
    return await lobby_factory(
        app_hook=static.setup,
        regions=("local",),
        postgres=PostgresSettings(dsn=persistence.settings.postgres.dsn),
        tournaments=ApiSettings(
            redis=RedisSettings(url=redis_url), secrets=SecretSettings(token_secret=SECRET, admin_token=ADMIN)
        ),
        **changes,
    )


@pytest.fixture
async def cluster(
    redis_url: str, lobby_factory: LobbyFactory, persistence: PersistenceService
) -> AsyncIterator[RunningLobby]:
    """Lobby with the page + one node (region local, short passages) + a matchmaker that starts
    a lone player's race after half a second, all on the same Redis as ``persistence``, which
    stores the node's finished races."""
    port = free_port()
    settings = NodeSettings(
        node_id=NodeId("node-e2e"),
        port=port,
        admin_port=0,  # any free port: the registry carries it to the matchmaker and lobby
        region="local",
        capacity=100,
        heartbeat_s=0.2,
        redis=RedisSettings(url=redis_url),
        secrets=SecretSettings(token_secret=SECRET, admin_token=ADMIN),
        race=RACE,
    )
    runner = web.AppRunner(build_node_app(settings, SHORT_CORPUS), handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    lobby = await page_lobby(lobby_factory, redis_url, persistence)
    client = aioredis.Redis.from_url(redis_url)
    store = TicketStore(client)
    http = aiohttp.ClientSession()
    mm_settings = replace(
        FAST_MM,
        matchmaker_id="mm-e2e",
        regions=("local",),
        neighbours={},
        fallback_wait_s=0.2,
        neighbour_wait_s=0.3,
        max_wait_s=0.5,
        secrets=SecretSettings(admin_token=ADMIN),
    )
    placer = NodePlacer(NodeRegistry(client, stale_after_ms=2000), http, ADMIN, timeout_s=2.0, attempts=2)
    mm = Matchmaker(mm_settings, client, store, placer)
    await mm.start()
    try:
        yield lobby
    finally:
        await mm.stop(deadline_s=1.0)
        await store.aclose()
        await http.close()
        await client.aclose()
        await runner.cleanup()
