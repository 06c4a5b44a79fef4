"""Migrations: applied once, in order, safely twice and concurrently; edits to applied ones refused."""

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from ops.services import PostgresServer
from persistence.migrate import Migration, MigrationError, load, main, migrate, status
from tests.persistence.helpers import unique


@pytest.fixture
async def empty_dsn(postgres_server: PostgresServer) -> AsyncIterator[str]:
    name = unique("m").replace("-", "_")
    admin = await asyncpg.connect(postgres_server.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield postgres_server.dsn.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(postgres_server.dsn)
    await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    await admin.close()


def test_packaged_migrations_are_numbered_in_order() -> None:
    found = load()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "schema"


async def test_apply_then_nothing_the_second_time(empty_dsn: str) -> None:
    conn = await asyncpg.connect(empty_dsn)
    try:
        assert [m.version for m in await migrate(conn)] == [m.version for m in load()]
        assert await migrate(conn) == []
        assert all(applied for _, _, applied in await status(conn))
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        assert {
            "players",
            "races",
            "race_participants",
            "rating_history",
            "tournaments",
            "tournament_participants",
        } <= tables
    finally:
        await conn.close()


async def test_concurrent_runs_apply_each_migration_once(empty_dsn: str) -> None:
    conns = [await asyncpg.connect(empty_dsn) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r) for r in results) == [0, 0, len(load())]
    finally:
        for c in conns:
            await c.close()


async def test_an_applied_migration_that_changed_is_refused(empty_dsn: str) -> None:
    conn = await asyncpg.connect(empty_dsn)
    try:
        await migrate(conn)
        first = load()[0]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(conn, [Migration(first.version, first.name, first.sql + "\n-- edited")])
        # A failing migration leaves nothing behind: its transaction rolls back.
        with pytest.raises(asyncpg.PostgresError):
            await migrate(conn, [*load(), Migration(99, "broken", "CREATE TABLE x (id int); SELECT nope;")])
        assert await conn.fetchval("SELECT to_regclass('x')") is None
        assert 99 not in {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    finally:
        await conn.close()


def test_command_line(
    empty_dsn: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("persistence.migrate.configure_logging", lambda settings: None)
    assert main(["--dsn", empty_dsn, "--status"]) == 0
    assert "0001_schema  pending" in capsys.readouterr().out
    assert main(["--dsn", empty_dsn]) == 0
    assert f"applied {len(load())} migration(s)" in capsys.readouterr().out
    assert main(["--dsn", empty_dsn]) == 0
    assert "applied 0 migration(s)" in capsys.readouterr().out
