"""GET /v1/races/{race_id}/replay on a real lobby, real Redis and real PostgreSQL.

Races are stored the way persistence stores them (``PostgresStore``), then read back over HTTP.
"""

from __future__ import annotations

import dataclasses
import gzip
import random
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from arena.results import MatchRecord
from gameserver.passages import Corpus
from lobby.replay import Encoded, ReplayCache
from lobby.replay_text import BACKSPACE_KEY, ReplayKey, text_at
from ops.services import free_port
from persistence import synthetic
from persistence.review import ReviewDecisionRecord
from persistence.settings import PostgresSettings
from persistence.store import PostgresStore
from tests.lobby.conftest import LobbyFactory, RunningLobby
from tests.persistence.conftest import pg_dsn, pg_template  # noqa: F401  (fixtures)
from tests.persistence.test_queries import NOON

PASSAGE = Corpus.load().by_id("q001").text  # synthetic races type q001


@pytest.fixture
async def pool(pg_dsn: str) -> AsyncIterator[asyncpg.Pool]:  # noqa: F811
    p = await asyncpg.create_pool(pg_dsn, min_size=1, max_size=2)
    yield p
    await p.close()


@pytest.fixture
async def lobby(lobby_factory: LobbyFactory, pg_dsn: str) -> RunningLobby:  # noqa: F811
    return await lobby_factory(postgres=PostgresSettings(dsn=pg_dsn))


def a_race(**changes: object) -> MatchRecord:
    """Ada types "Thx", deletes the x and goes on; Bob is flagged."""
    race = synthetic.match(random.Random(16), ended_at=NOON, players=["ada", "bob"], race_type="quick")
    ada, bob = race.participants
    ada = dataclasses.replace(ada, keys="Thx\be", key_times=[180, 300, 420, 700, 950])
    bob = dataclasses.replace(bob, valid=False, flags=["too_fast"], place=None)
    return dataclasses.replace(race, participants=[ada, bob], **changes)  # type: ignore[arg-type]


async def get(lobby: RunningLobby, path: str, **headers: str) -> aiohttp.ClientResponse:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(lobby.url + path, headers=headers)
        await resp.read()
        return resp


async def test_replay_of_a_stored_race(lobby: RunningLobby, pool: asyncpg.Pool) -> None:
    race = a_race()
    await PostgresStore(pool).write([race])
    resp = await get(lobby, f"/v1/races/{race.match_id}/replay")
    assert resp.status == 200
    body = await resp.json()
    assert (body["format"], body["race_id"], body["race_type"], body["state"]) == (
        1,
        race.match_id,
        "quick",
        "finished",
    )
    assert body["passage"] == {"id": "q001", "text": PASSAGE, "chars": race.passage_chars}
    assert (body["started_at"], body["ended_at"]) == (race.started_at, race.ended_at)
    ada, bob = body["players"]
    assert (ada["name"], ada["place"], ada["flagged"], ada["wpm"]) == (
        race.participants[0].name,
        1,
        False,
        race.participants[0].wpm,
    )
    assert (bob["player_id"], bob["place"], bob["flagged"], bob["flags"]) == ("bob", None, True, ["too_fast"])
    assert ada["review"] == bob["review"] == "clear"
    assert ada["keys"][:4] == [
        {"t_ms": 180, "key": "T"},
        {"t_ms": 300, "key": "h"},
        {"t_ms": 420, "key": "x"},
        {"t_ms": 700, "key": BACKSPACE_KEY},
    ]
    assert body["duration_ms"] == max(950, race.participants[1].key_times[-1])
    # The viewer's model over the served keys: the deleted "x" shows while it was there.
    keys = [ReplayKey(**k) for k in ada["keys"]]
    assert text_at(keys, 500, PASSAGE).text == "Thx"
    assert text_at(keys, 1000, PASSAGE).text == "The"


async def test_replay_is_cacheable_and_compressed(lobby: RunningLobby, pool: asyncpg.Pool) -> None:
    race = a_race()
    await PostgresStore(pool).write([race])
    path = f"/v1/races/{race.match_id}/replay"
    first = await get(lobby, path)
    etag = first.headers["ETag"]
    assert etag.startswith('W/"') and first.headers["Cache-Control"] == "public, max-age=86400, immutable"
    assert first.headers["Content-Encoding"] == "gzip"  # aiohttp's client asks for it
    plain = await get(lobby, path, **{"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and (await plain.json())["format"] == 1
    refused = await get(lobby, path, **{"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refused.headers
    again = await get(lobby, path, **{"If-None-Match": etag})
    assert (again.status, await again.read(), again.headers["ETag"]) == (304, b"", etag)
    strong = await get(lobby, path, **{"If-None-Match": etag.removeprefix("W/")})
    assert strong.status == 304
    for other in ('"0123"', "garbage", 'W/"', "*x"):
        assert (await get(lobby, path, **{"If-None-Match": other})).status == 200, other
    assert (await get(lobby, path, **{"If-None-Match": "*"})).status == 304
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.get(lobby.url + path, headers={"Accept-Encoding": "gzip"}) as raw,
    ):
        packed = await raw.read()
    assert gzip.decompress(packed).startswith(b'{"format":1,')


async def test_a_held_result_is_marked_and_revalidated_until_rejected(
    lobby: RunningLobby, pool: asyncpg.Pool
) -> None:
    """Ada's 250 WPM is held: the replay says so and is not cached; once rejected, she has no
    place (no win), and the answer is immutable again."""
    race = a_race()
    ada = dataclasses.replace(race.participants[0], wpm=250.0)
    race = dataclasses.replace(race, participants=[ada, race.participants[1]])
    await PostgresStore(pool).write([race])
    path = f"/v1/races/{race.match_id}/replay"
    held = await get(lobby, path)
    assert held.headers["Cache-Control"] == "public, no-cache"
    ada_json, bob_json = (await held.json())["players"]
    assert (ada_json["review"], ada_json["place"], bob_json["review"]) == ("held", 1, "clear")
    decision = ReviewDecisionRecord.of(race.match_id, "ada", "rejected", "pasted", NOON)
    await PostgresStore(pool).write([decision])
    rejected = await get(lobby, path)  # not served from the lobby's cache: held ones are not kept
    assert rejected.headers["ETag"] != held.headers["ETag"]
    assert rejected.headers["Cache-Control"] == "public, max-age=86400, immutable"
    ada_json = (await rejected.json())["players"][0]
    assert (ada_json["review"], ada_json["place"], ada_json["wpm"]) == ("rejected", None, 250.0)
    page = await get(lobby, "/v1/players/ada/races")
    [line] = (await page.json())["races"]
    assert (line["race_id"], line["review"], line["place"]) == (race.match_id, "rejected", None)


async def test_custom_race_has_no_passage_text(lobby: RunningLobby, pool: asyncpg.Pool) -> None:
    race = a_race(race_type="custom", passage_id="custom-0123456789ab")
    await PostgresStore(pool).write([race])
    body = await (await get(lobby, f"/v1/races/{race.match_id}/replay")).json()
    assert body["passage"]["text"] is None and body["passage"]["id"] == "custom-0123456789ab"


@pytest.mark.parametrize(
    "race_id",
    ["rnope", "r" * 65, "r%00x", "r.x", "r%20x", "%C3%A9", "r'--"],
)
async def test_unknown_or_malformed_id_is_a_json_404(lobby: RunningLobby, race_id: str) -> None:
    resp = await get(lobby, f"/v1/races/{race_id}/replay")
    assert resp.status == 404
    assert (await resp.json())["error"] in {"race_not_found", "not_found"}


async def test_corrupt_keylog_is_a_json_500_for_that_race_only(
    lobby: RunningLobby, pool: asyncpg.Pool
) -> None:
    broken, fine = a_race(), a_race(match_id="rgood")
    await PostgresStore(pool).write([broken, fine])
    corrupt = "UPDATE race_participants SET keylog = '\\x00'::bytea WHERE race_id = $1"
    await pool.execute(corrupt, broken.match_id)
    resp = await get(lobby, f"/v1/races/{broken.match_id}/replay")
    assert (resp.status, (await resp.json())["error"]) == (500, "replay_corrupt")
    assert (await get(lobby, "/v1/races/rgood/replay")).status == 200


async def test_postgres_down_is_a_503(lobby_factory: LobbyFactory) -> None:
    down = await lobby_factory(
        postgres=PostgresSettings(dsn=f"postgresql://arena@127.0.0.1:{free_port()}/none")
    )
    resp = await get(down, "/v1/races/rabc/replay")
    assert (resp.status, (await resp.json())["error"]) == (503, "history_unavailable")


async def test_a_served_replay_is_kept_in_the_lobby(lobby: RunningLobby, pool: asyncpg.Pool) -> None:
    race = a_race()
    await PostgresStore(pool).write([race])
    path = f"/v1/races/{race.match_id}/replay"
    first = await (await get(lobby, path)).read()
    await pool.execute("DELETE FROM race_participants WHERE race_id = $1", race.match_id)
    await pool.execute("DELETE FROM races WHERE race_id = $1", race.match_id)
    second = await get(lobby, path)
    assert (second.status, await second.read()) == (200, first)  # from the cache, not PostgreSQL
    metrics = await (await get(lobby, "/metrics")).text()
    assert 'arena_lobby_replay_cache_lookups_total{result="hit"} 1.0' in metrics
    assert 'arena_lobby_replay_cache_lookups_total{result="miss"} 1.0' in metrics


def test_replay_cache_keeps_the_latest_within_its_bytes() -> None:
    a, b, c = (Encoded("e", body, b"") for body in (b"1234", b"5678", b"90ab"))
    cache = ReplayCache(max_bytes=10)
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") == a  # now the most recent
    cache.put("c", c)  # 12 bytes: the least recently used (b) goes
    assert (cache.get("b"), cache.get("a"), cache.get("c")) == (None, a, c)
    cache.put("big", Encoded("e", b"x" * 6, b"y" * 5))  # larger than the whole cache: not kept
    assert cache.get("big") is None and cache.get("a") is not None
