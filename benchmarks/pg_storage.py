"""PostgreSQL storage per result: bytes on disk per race participant row, and what 300M a day takes.

    .venv/bin/python benchmarks/pg_storage.py                     # 20,000 races of 2-5, 250 keys each
    .venv/bin/python benchmarks/pg_storage.py --matches 50000 --keys 600

Starts its own PostgreSQL 15 (``ops/services.py``, fsync on), applies the migrations, and writes
``--matches`` synthetic races (``persistence/synthetic.py``: 2-5 players, ``--keys`` keystrokes
each: a quick race is ~250, a standard one ~600) through persistence's own ``PostgresStore`` in
batches of ``--batch``, spread over ``--days`` days (one monthly partition or two). Then, after a
``VACUUM ANALYZE``, it reads the size of every table from the catalog — heap, TOAST (the keystroke
logs, ``race_participants.keylog``, are ``bytea``) and indexes, partitions summed — and prints
bytes per participant row and per race, and what the seeds' 300M results a day (seed 002:
3,472/s on average) makes per day, per month (one partition) and per year. Also printed: the
rows/s one writer reached (a by-product; ``persistence_throughput.py`` measures throughput).

Bounded: a fixed number of rows; everything it starts is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from arena.clock import now_ms  # noqa: E402
from ops.services import PostgresServer  # noqa: E402
from persistence import synthetic  # noqa: E402
from persistence.migrate import migrate  # noqa: E402
from persistence.store import PostgresStore  # noqa: E402

RESULTS_PER_DAY = 300_000_000  # seed 002
DAY_MS = 86_400_000

# Every table persistence writes per race, partitions summed (pg_partition_tree).
SIZES_SQL = """
SELECT t.relname AS table_name,
       sum(pg_relation_size(p.relid))::bigint AS heap,
       sum(coalesce(pg_total_relation_size(c.reltoastrelid), 0))::bigint AS toast,
       sum(pg_indexes_size(p.relid))::bigint AS indexes
FROM pg_class t
CROSS JOIN LATERAL (SELECT relid FROM pg_partition_tree(t.oid) UNION SELECT t.oid) p
JOIN pg_class c ON c.oid = p.relid
WHERE t.relname = ANY($1::text[]) AND t.relnamespace = 'public'::regnamespace
GROUP BY t.relname
"""
TABLES = ["races", "race_participants", "players"]


@dataclass(frozen=True, slots=True)
class TableSize:
    name: str
    heap: int
    toast: int
    indexes: int

    @property
    def total(self) -> int:
        return self.heap + self.toast + self.indexes


def per_row(sizes: list[TableSize], rows: int) -> float:
    return sum(s.total for s in sizes) / rows


def projection(bytes_per_result: float) -> dict[str, float]:
    """Bytes for the seeds' 300M results a day: a day, a month (one partition), a year."""
    day = bytes_per_result * RESULTS_PER_DAY
    return {"day": day, "month": day * 30, "year": day * 365}


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


async def run(args: argparse.Namespace, dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    rng = random.Random(args.seed)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert pool is not None
    try:
        store = PostgresStore(pool)
        players = [f"p{i:06d}" for i in range(max(10, args.matches // 4))]
        end = now_ms()
        rows = 0
        started = time.monotonic()
        for i in range(0, args.matches, args.batch):
            batch = [
                synthetic.match(
                    rng,
                    ended_at=end - rng.randint(0, args.days * DAY_MS),
                    players=rng.sample(players, rng.randint(2, 5)),
                    keys=args.keys,
                )
                for _ in range(min(args.batch, args.matches - i))
            ]
            result = await store.write(batch)
            rows += result.participant_rows
        seconds = time.monotonic() - started
        async with pool.acquire() as c:
            await c.execute("VACUUM ANALYZE")
            records = await c.fetch(SIZES_SQL, TABLES)
            keylog = await c.fetchval("SELECT avg(octet_length(keylog)) FROM race_participants")
    finally:
        await pool.close()
    sizes = [TableSize(r["table_name"], r["heap"], r["toast"], r["indexes"]) for r in records]
    print(f"{args.matches:,} races, {rows:,} participant rows ({args.keys} keys each) written in "
          f"{seconds:.1f}s by one writer ({rows / seconds:,.0f} rows/s)")  # fmt: skip
    print(f"{'table':<20} {'heap':>12} {'toast':>12} {'indexes':>12} {'bytes/row':>10}")
    for s in sorted(sizes, key=lambda s: s.name):
        print(
            f"{s.name:<20} {human(s.heap):>12} {human(s.toast):>12} {human(s.indexes):>12}"
            f" {s.total / rows:>10,.0f}"
        )
    b = per_row(sizes, rows)
    print(f"keystroke log: {keylog:,.0f} bytes per row on average (msgpack, before PostgreSQL compresses it)")
    print(f"all tables: {b:,.0f} bytes per participant row ({b * rows / args.matches:,.0f} per race)")
    p = projection(b)
    print(f"at 300M results a day: {human(p['day'])} a day, {human(p['month'])} a month "
          f"(one partition), {human(p['year'])} a year")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--matches", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=250, help="keystrokes per participant")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument(
        "--days", type=int, default=20, help="the races' end times spread over this many days"
    )
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    if not 1 <= args.matches <= 1_000_000 or not 1 <= args.keys <= 10_000:
        parser.error("--matches 1..1,000,000, --keys 1..10,000")
    work = Path(tempfile.mkdtemp(prefix="typogram-bench-pgstorage-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user when we are root: it must reach its dir
    postgres = PostgresServer(data_dir=work / "postgres")
    try:
        postgres.start()
        return asyncio.run(run(args, postgres.dsn))
    finally:
        postgres.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
