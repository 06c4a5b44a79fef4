"""``python -m ops.deadletters``: list, replay and drop, against a real Redis."""

from __future__ import annotations

import asyncio
import io

import pytest
import redis

from arena.keys import DEAD_STREAM, OUTBOX_STREAM
from ops.deadletters import main
from persistence.deadletters import DeadLetters
from persistence.entries import Entry


async def _bury(url: str, n: int) -> list[str]:
    """n entries appended to the outbox, delivered to the group, then buried as a consumer would."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        await client.xgroup_create(OUTBOX_STREAM, "persistence", id="0", mkstream=True)
        ids: list[bytes | str] = []
        for i in range(n):
            ids.append(await client.xadd(OUTBOX_STREAM, {"id": f"r{i}", "kind": "race", "data": b"\x00bad"}))
        await client.xreadgroup("persistence", "c1", {OUTBOX_STREAM: ">"})
        dead = DeadLetters(client)
        return [
            await dead.bury(
                Entry(
                    str(entry_id, "ascii") if isinstance(entry_id, bytes) else entry_id,
                    {b"id": f"r{k}".encode(), b"kind": b"race", b"data": b"\x00bad"},
                    3,
                ),
                group="persistence",
                consumer="c1",
                reason=f"undecodable msgpack #{k}",
            )
            for k, entry_id in enumerate(ids)
        ]
    finally:
        await client.aclose()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_list_shows_reason_and_counts(redis_url: str) -> None:
    dead_ids = asyncio.run(_bury(redis_url, 3))
    code, text = run("--redis-url", redis_url, "list")
    assert code == 0
    lines = text.splitlines()
    assert lines[0] == "3 dead letter(s); showing 3"
    assert [line.split("\t")[0] for line in lines[2:]] == dead_ids
    assert lines[2].split("\t")[-1] == "undecodable msgpack #0"
    code, text = run("--redis-url", redis_url, "list", "--after", dead_ids[0], "--limit", "1")
    assert text.splitlines()[2].startswith(dead_ids[1])


def test_replay_moves_the_original_entry_back_to_the_outbox(redis_url: str) -> None:
    dead_ids = asyncio.run(_bury(redis_url, 2))
    client = redis.Redis.from_url(redis_url)
    try:
        before = client.xlen(OUTBOX_STREAM)
        code, text = run("--redis-url", redis_url, "replay", dead_ids[0])
        assert code == 0 and "replayed as outbox entry" in text
        assert client.xlen(OUTBOX_STREAM) == before + 1
        assert client.xlen(DEAD_STREAM) == 1
        [(_, fields)] = client.xrevrange(OUTBOX_STREAM, count=1) or []
        assert fields == {b"id": b"r0", b"kind": b"race", b"data": b"\x00bad"}
        code, _ = run("--redis-url", redis_url, "replay", "--all")
        assert code == 0 and client.xlen(DEAD_STREAM) == 0
    finally:
        client.close()


def test_unknown_ids_fail_and_drop_deletes(redis_url: str) -> None:
    dead_ids = asyncio.run(_bury(redis_url, 1))
    assert run("--redis-url", redis_url, "replay", "1-1")[0] == 1
    assert run("--redis-url", redis_url, "drop", dead_ids[0]) == (0, f"{dead_ids[0]}: dropped\n")
    assert run("--redis-url", redis_url, "drop", dead_ids[0])[0] == 1
    with pytest.raises(SystemExit):
        run("--redis-url", redis_url, "replay")
