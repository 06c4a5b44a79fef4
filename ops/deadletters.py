"""``python -m ops.deadletters``: list, replay and drop outbox entries that persistence gave up on.

    python -m ops.deadletters list [--limit N] [--after DEAD_ID]
    python -m ops.deadletters replay DEAD_ID... | --all
    python -m ops.deadletters drop DEAD_ID...

Replay appends the original entry to the outbox again once its cause is fixed (a migration,
a configuration, a deploy); storing is idempotent on match id, so a replay never duplicates.
The Redis URL comes from ``--redis-url`` or ``ARENA_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from redis.exceptions import RedisError

from arena.redisutil import connect
from arena.settings import RedisSettings, environ
from persistence.deadletters import DeadLetter, DeadLetters

PAGE = 500


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def format_line(d: DeadLetter) -> str:
    return "\t".join(
        [
            d.dead_id,
            _when(d.failed_at),
            str(d.deliveries),
            d.match_id or "-",
            d.kind or "-",
            d.entry_id,
            d.reason,
        ]
    )


async def _list(dead: DeadLetters, limit: int, after: str, out: TextIO) -> int:
    letters = await dead.read(count=limit, after=after)
    total = await dead.count()
    print(f"{total} dead letter(s); showing {len(letters)}", file=out)
    if letters:
        print("dead_id\tfailed_at\tdeliveries\tmatch_id\tkind\tentry_id\treason", file=out)
    for d in letters:
        print(format_line(d), file=out)
    return 0


async def _replay(dead: DeadLetters, ids: Sequence[str], replay_all: bool, out: TextIO) -> int:
    if replay_all:
        ids = []
        after = "-"
        while page := await dead.read(count=PAGE, after=after):
            ids += [d.dead_id for d in page]
            after = page[-1].dead_id
    missing = 0
    for dead_id in ids:
        new_id = await dead.replay(dead_id)
        if new_id is None:
            print(f"{dead_id}: no such dead letter", file=out)
            missing += 1
        else:
            print(f"{dead_id}: replayed as outbox entry {new_id}", file=out)
    return 1 if missing else 0


async def _drop(dead: DeadLetters, ids: Sequence[str], out: TextIO) -> int:
    missing = 0
    for dead_id in ids:
        if await dead.drop(dead_id):
            print(f"{dead_id}: dropped", file=out)
        else:
            print(f"{dead_id}: no such dead letter", file=out)
            missing += 1
    return 1 if missing else 0


async def run(args: argparse.Namespace, out: TextIO) -> int:
    redis = connect(RedisSettings(url=args.redis_url))
    try:
        dead = DeadLetters(redis)
        if args.command == "list":
            return await _list(dead, args.limit, args.after, out)
        if args.command == "replay":
            return await _replay(dead, args.ids, args.all, out)
        return await _drop(dead, args.ids, out)
    finally:
        await redis.aclose()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops.deadletters", description=__doc__.splitlines()[0])
    p.add_argument(
        "--redis-url", default=RedisSettings.from_env(environ()).url, help="default: ARENA_REDIS_URL"
    )
    sub = p.add_subparsers(dest="command", required=True)
    show = sub.add_parser("list", help="dead letters, oldest first")
    show.add_argument("--limit", type=int, default=100)
    show.add_argument("--after", default="-", help="page on: list those after this dead letter id")
    replay = sub.add_parser("replay", help="append dead letters to the outbox again")
    replay.add_argument("ids", nargs="*", metavar="DEAD_ID")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    drop = sub.add_parser("drop", help="delete dead letters for good")
    drop.add_argument("ids", nargs="+", metavar="DEAD_ID")
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "replay" and not args.ids and not args.all:
        p.error("replay needs dead letter ids or --all")
    try:
        return asyncio.run(run(args, out))
    except (RedisError, OSError) as exc:
        print(f"deadletters: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
