"""schemathesis against a real lobby with docs/openapi.yaml: no 5xx, and every answer as the spec says.

The lobby runs in a thread with its own event loop (schemathesis calls are synchronous), with
rate limits off and a bounded, derandomized number of examples per operation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.transport import Response

from lobby.app import build_app
from ops.services import PostgresServer, RedisServer
from persistence.migrate import migrate
from persistence.settings import PostgresSettings
from tests.lobby.conftest import lobby_settings
from tournaments.settings import ApiSettings

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
EXAMPLES_PER_OPERATION = 12
DATABASE = "openapi_conformance"

schema = schemathesis.openapi.from_path(SPEC)
# Names are any printable text (str.isprintable, which no JSON Schema pattern can say exactly);
# ASCII strings let the spec's pattern (no control characters, not blank) be exact.
schema.config.generation.update(codec="ascii", allow_x00=False)
# A daily attempt places a race, so without a node a valid request can only answer 503 no_node:
# tests/lobby/test_daily.py runs it against a real node instead.
schema = schema.exclude(method="POST", path="/v1/daily/attempts")


class LobbyThread:
    """A real lobby app served from a thread's own event loop."""

    def __init__(self, redis_url: str, postgres_dsn: str) -> None:
        settings = lobby_settings(redis_url, rate_per_player=0, rate_per_ip=0, login_attempts=0)
        tournaments = ApiSettings(redis=settings.redis, secrets=settings.secrets)
        self._server_dsn = postgres_dsn
        history_dsn = postgres_dsn.rsplit("/", 1)[0] + f"/{DATABASE}"
        self.settings = dataclasses.replace(
            settings, tournaments=tournaments, postgres=PostgresSettings(dsn=history_dsn)
        )
        self.url = f"http://127.0.0.1:{self.settings.port}"
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="lobby", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=20)

    async def _serve(self) -> None:
        admin = await asyncpg.connect(self._server_dsn)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
            await admin.execute(f"CREATE DATABASE {DATABASE}")
        finally:
            await admin.close()
        history = await asyncpg.connect(self.settings.postgres.dsn)
        try:
            await migrate(history)
        finally:
            await history.close()
        self._runner = web.AppRunner(build_app(self.settings), handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.settings.port).start()

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(scope="module")
def lobby_url(redis_server: RedisServer, postgres_server: PostgresServer) -> Iterator[str]:
    lobby = LobbyThread(redis_server.url, postgres_server.dsn)
    lobby.start()
    try:
        yield lobby.url
    finally:
        lobby.stop()


@pytest.fixture(scope="module")
def bearer(lobby_url: str) -> dict[str, str]:
    reply = requests.post(f"{lobby_url}/v1/guests", json={"name": "fuzz"}, timeout=10)
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['token']}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_lobby_answers_as_its_spec_says(
    case: schemathesis.Case, lobby_url: str, bearer: dict[str, str]
) -> None:
    headers = bearer if case.headers is None or "Authorization" not in case.headers else None
    if case.operation.label in NO_NODE_BY_DESIGN:
        case.call_and_validate(
            base_url=lobby_url,
            headers=headers,
            excluded_checks=[not_a_server_error],
            additional_checks=[_only_no_node],
        )
        return
    case.call_and_validate(base_url=lobby_url, headers=headers)


# No gameserver node runs here: placing a typing test answers 503 no_node (documented), by design.
NO_NODE_BY_DESIGN = frozenset({"POST /v1/tests"})


def _only_no_node(ctx: CheckContext, response: Response, case: schemathesis.Case) -> bool | None:
    if response.status_code >= 500:
        body = response.json()
        assert (response.status_code, body.get("error")) == (503, "no_node"), (response.status_code, body)
    return None
