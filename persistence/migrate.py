"""Versioned schema migrations: ``python -m persistence.migrate`` (``--status`` lists them).

Migrations are the ``NNNN_name.sql`` files in ``persistence/migrations``, applied in order,
each in its own transaction together with its row in ``schema_migrations``. Running twice
applies nothing the second time; running concurrently is safe because the whole run holds a
session advisory lock. An applied file whose text changed is an error: add a new migration.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files

import asyncpg
import structlog

from arena.logs import configure_logging
from arena.settings import LogSettings, environ
from persistence.settings import PostgresSettings

log = structlog.get_logger(__name__)

LOCK_KEY = 0x7479_706F  # "typo": the advisory lock every migration run takes
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migration files and the database disagree."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load() -> list[Migration]:
    """The packaged migrations, in version order."""
    found = []
    for item in files("persistence").joinpath("migrations").iterdir():
        match = _NAME.match(item.name)
        if match:
            found.append(Migration(int(match[1]), match[2], item.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions in {versions}")
    return found


async def migrate(conn: asyncpg.Connection, migrations: Sequence[Migration] | None = None) -> list[Migration]:
    """Apply what is missing; returns the migrations this call applied."""
    todo = load() if migrations is None else list(migrations)
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(_CREATE_TABLE)
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        applied = {row["version"]: row["checksum"] for row in rows}
        done = []
        for m in todo:
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise MigrationError(f"migration {m.version:04d}_{m.name} changed after it was applied")
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            log.info("migration_applied", version=m.version, name=m.name)
            done.append(m)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def status(conn: asyncpg.Connection) -> list[tuple[int, str, bool]]:
    """(version, name, applied) for every packaged migration."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = set()
    if exists:
        applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
    return [(m.version, m.name, m.version in applied) for m in load()]


async def _run(dsn: str, show_status: bool) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        if show_status:
            for version, name, applied in await status(conn):
                print(f"{version:04d}_{name}  {'applied' if applied else 'pending'}")
            return 0
        done = await migrate(conn)
        print(f"applied {len(done)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in done))
        return 0
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    env = environ()
    parser = argparse.ArgumentParser(
        prog="python -m persistence.migrate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--dsn", default=PostgresSettings.from_env(env).dsn, help="default: ARENA_POSTGRES_DSN"
    )
    parser.add_argument("--status", action="store_true", help="list migrations and whether they are applied")
    args = parser.parse_args(argv)
    configure_logging(LogSettings.from_env(env))
    try:
        return asyncio.run(_run(args.dsn, args.status))
    except (MigrationError, OSError, asyncpg.PostgresError) as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
