"""``python -m ops.review``: results held for review; release or reject them.

    python -m ops.review list [--limit N] [--provisional]
    python -m ops.review release RACE_ID PLAYER_ID [--reason TEXT]
    python -m ops.review reject RACE_ID PLAYER_ID --reason TEXT

``list`` reads PostgreSQL directly (``--dsn`` or ``ARENA_POSTGRES_DSN``): every held result, oldest
first, with why it was held (``reason``: ``wpm``, ``pb``, ``pairs_history`` or ``pairs_population``,
persistence/review.py ``HoldReason``) and its keystroke statistics from the stored keystroke log.
A decision is appended to the outbox (``--redis-url`` or ``ARENA_REDIS_URL``) as a ``review_decision``
entry, once per result;
persistence stores it, moves the result out of 'held', puts a released one on its leaderboards and
publishes the decision to Kafka (docs/FAIRPLAY.md, "Held for review"). ``list --provisional`` lists
the provisional results instead (new accounts' results waiting for placement, docs/FAIRPLAY.md
"Placement"): nothing to decide, persistence settles them.

Exit codes: 0 done (a decision already taken the same way is done too), 1 no such result or a
different decision already taken, 2 PostgreSQL or Redis unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

import asyncpg
from redis.exceptions import RedisError

from arena.clock import now_ms
from arena.outbox import OutboxWriter
from arena.redisutil import connect
from arena.settings import RedisSettings, environ
from persistence import keylog
from persistence.review import MAX_REASON, ReviewDecisionRecord, ReviewState, keystroke_stats
from persistence.settings import PostgresSettings

_HELD = """
SELECT p.race_id, p.player_id, p.name, r.race_type, p.review_reason, p.wpm, p.accuracy, p.flags,
       p.created_at, p.keylog
FROM race_participants p JOIN races r ON r.race_id = p.race_id
WHERE p.review_state = $2
ORDER BY p.created_at, p.race_id, p.player_id
LIMIT $1
"""
_STATE = """
SELECT p.review_state, r.tournament_id
FROM race_participants p JOIN races r ON r.race_id = p.race_id
WHERE p.race_id = $1 AND p.player_id = $2
"""

COLUMNS = (
    "race_id", "player_id", "name", "race_type", "reason", "ended_at", "wpm", "accuracy", "flags",
    "keys", "backspaces", "gap_mean_ms", "gap_sd_ms", "gap_skew", "gap_min_ms",
)  # fmt: skip


async def _list(conn: asyncpg.Connection, limit: int, out: TextIO, state: str = ReviewState.HELD) -> int:
    rows = await conn.fetch(_HELD, limit, state)
    print(f"{len(rows)} {state} result(s)", file=out)
    if rows:
        print("\t".join(COLUMNS), file=out)
    for r in rows:
        stats: list[object]
        try:
            keys, times = keylog.decode(r["keylog"])
            s = keystroke_stats(keys, times)
            stats = [
                s.keys,
                s.backspaces,
                s.interval_mean_ms,
                s.interval_sd_ms,
                s.interval_skew,
                s.interval_min_ms,
            ]
        except keylog.KeylogError:  # one unreadable log does not hide the rest
            stats = ["?"] * 6
        fields = [
            r["race_id"], r["player_id"], r["name"], r["race_type"],
            # "?": held before the reason was stored (migration 0007); "-": provisional, no reason
            r["review_reason"] or ("?" if state == ReviewState.HELD else "-"),
            r["created_at"].isoformat(timespec="seconds"),
            f"{r['wpm']:.2f}", f"{r['accuracy']:.2f}", ",".join(r["flags"]) or "-", *stats,
        ]  # fmt: skip
        print("\t".join(str(f) for f in fields), file=out)
    return 0


async def _decide(
    conn: asyncpg.Connection, writer: OutboxWriter, args: argparse.Namespace, out: TextIO
) -> int:
    decision = ReviewState.RELEASED if args.command == "release" else ReviewState.REJECTED
    what = f"{args.race_id} {args.player_id}"
    row = await conn.fetchrow(_STATE, args.race_id, args.player_id)
    if row is None:
        print(f"{what}: no such result (unknown race or player)", file=out)
        return 1
    state = row["review_state"]
    if state == decision:
        print(f"{what}: already {state}; nothing to do", file=out)
        return 0
    if state != ReviewState.HELD:
        print(f"{what}: not held for review (it is {state})", file=out)
        return 1
    record = ReviewDecisionRecord.of(
        args.race_id, args.player_id, decision.value, args.reason, now_ms(), row["tournament_id"]
    )
    if await writer.append(record):
        print(f"{what}: {decision.value} (appended to the outbox)", file=out)
    else:
        print(f"{what}: a decision is already in the outbox; nothing appended", file=out)
    return 0


async def run(args: argparse.Namespace, out: TextIO) -> int:
    conn = await asyncpg.connect(args.dsn, timeout=10)
    try:
        if args.command == "list":
            state = ReviewState.PROVISIONAL if args.provisional else ReviewState.HELD
            return await _list(conn, args.limit, out, state.value)
        redis = connect(RedisSettings(url=args.redis_url))
        try:
            return await _decide(conn, OutboxWriter(redis), args, out)
        finally:
            await redis.aclose()
    finally:
        await conn.close()


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError("must be between 1 and 10000")
    return value


def _reason(text: str) -> str:
    if len(text) > MAX_REASON:
        raise argparse.ArgumentTypeError(f"at most {MAX_REASON} characters")
    return text


def parser() -> argparse.ArgumentParser:
    env = environ()
    p = argparse.ArgumentParser(prog="python -m ops.review", description=__doc__.splitlines()[0])
    p.add_argument("--dsn", default=PostgresSettings.from_env(env).dsn, help="default: ARENA_POSTGRES_DSN")
    p.add_argument("--redis-url", default=RedisSettings.from_env(env).url, help="default: ARENA_REDIS_URL")
    sub = p.add_subparsers(dest="command", required=True)
    show = sub.add_parser("list", help="held results, oldest first, with keystroke statistics")
    show.add_argument("--limit", type=_limit, default=100)
    show.add_argument("--provisional", action="store_true", help="provisional results (placement) instead")
    release = sub.add_parser("release", help="rank a held result")
    reject = sub.add_parser("reject", help="keep a held result off the leaderboards for good")
    for cmd in (release, reject):
        cmd.add_argument("race_id", metavar="RACE_ID")
        cmd.add_argument("player_id", metavar="PLAYER_ID")
    release.add_argument("--reason", type=_reason, default="")
    reject.add_argument("--reason", type=_reason, required=True)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.command == "reject" and not args.reason.strip():
        p.error("reject needs a non-empty --reason")
    try:
        return asyncio.run(run(args, out))
    except (RedisError, OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"review: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
