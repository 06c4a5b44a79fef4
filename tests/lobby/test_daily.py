"""The daily challenge: the day's passage (pure), and an attempt from the lobby through a real node
and real persistence (PostgreSQL, Kafka) onto the day's board."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from arena.clock import now_ms
from arena.protocol import Hello, Join, Joined, Results, Welcome
from gameserver.passages import Corpus, Passage, PassageKind
from lobby import daily, replay
from lobby.daily import daily_passage, day_end_ms, parse_day, today
from lobby.errors import ApiError
from persistence.settings import PostgresSettings
from tests.conftest import NodeFactory
from tests.gameserver.test_race_flow import human_times, type_text, wait_start
from tests.gameserver.wsclient import RawClient
from tests.lobby.conftest import LobbyFactory
from tests.persistence.conftest import ServiceFactory, env, pg_dsn, pg_template, start_service  # noqa: F401
from tests.persistence.helpers import Env

# A short passage, so an honest attempt takes seconds: the test's day has it as its challenge.
TEXT = "a quiet river bends past the old mill and on toward the sea"
SHORT = Passage(id="dtest", kind=PassageKind.QUICK, text=TEXT, source="test")


def test_the_days_passage_is_the_same_for_everyone_and_changes_with_the_day() -> None:
    corpus = Corpus.load()
    day = date(2026, 12, 6)
    assert daily_passage(day, corpus) == daily_passage(day, Corpus.load())
    month = {daily_passage(day + timedelta(days=n), corpus).id for n in range(30)}
    assert len(month) >= 20  # a month of days hardly repeats
    assert all(corpus.by_id(pid).kind == PassageKind.QUICK for pid in month)


def test_days_and_their_ends() -> None:
    noon = int(datetime(2026, 12, 6, 12, tzinfo=UTC).timestamp() * 1000)
    assert today(noon) == date(2026, 12, 6)
    assert day_end_ms(date(2026, 12, 6)) == int(datetime(2026, 12, 7, tzinfo=UTC).timestamp() * 1000)
    assert parse_day("2026-12-05", noon) == date(2026, 12, 5)
    assert parse_day("2026-12-06", noon) == date(2026, 12, 6)
    for bad in ("2026-12-07", "2026-2-01", "2026-02-30", "x" * 10, "", "2026-12-06T00"):
        with pytest.raises(ApiError) as err:
            parse_day(bad, noon)
        assert (err.value.status, err.value.code) == (404, "daily_not_found")


@pytest.fixture
def short_daily(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Today's challenge is SHORT, on the lobby and on every node started from now on."""
    packaged = Corpus.load()
    with_short = Corpus([*packaged, SHORT])
    monkeypatch.setattr(Corpus, "load", classmethod(lambda cls, path=None: with_short))
    monkeypatch.setattr(daily, "daily_passage", lambda day, corpus: SHORT)
    replay._corpus.cache_clear()  # the ghost of the day's leader needs the passage's text
    yield
    replay._corpus.cache_clear()
    daily.corpus.cache_clear()


async def test_an_attempt_reaches_the_board_and_the_leader_can_be_raced(
    short_daily: None,
    lobby_factory: LobbyFactory,
    node_factory: NodeFactory,
    env: Env,  # noqa: F811
    start_service: ServiceFactory,  # noqa: F811
) -> None:
    """1. today's challenge, an empty board; 2. a player attempts it and types it on the node;
    3. persistence stores the result and puts it on the board; 4. the board ranks the player;
    5. another player races the day's leader as a ghost."""
    await start_service(env.settings())
    node = await node_factory(node_id="node-d")
    api = (await lobby_factory(postgres=PostgresSettings(dsn=env.dsn))).api
    me, other = await api.guest("me"), await api.guest("other")
    day = today(now_ms()).isoformat()

    view = (await api.call("GET", "/v1/daily", token=me["token"])).ok()
    wanted = (day, "dtest", SHORT.text, "quick")
    assert (view["day"], view["passage_id"], view["passage"], view["race_type"]) == wanted
    assert 0 < view["seconds_left"] <= 86_400 and view["ends_at"] == day_end_ms(date.fromisoformat(day))
    assert (view["players"], view["board"], view["you"]) == (0, [], None)

    attempt = (await api.call("POST", "/v1/daily/attempts", token=me["token"])).ok(201)
    assert (attempt["day"], attempt["passage_id"]) == (day, "dtest")
    seat = attempt["assignment"]
    assert seat["url"] == node.ws_url
    client = await RawClient.connect(seat["url"])
    try:
        await client.send(Hello(token=seat["player_token"]))
        await client.recv_until(Welcome)
        await client.send(Join(ticket=seat["ticket"]))
        joined = await client.recv_until(Joined)
        assert isinstance(joined, Joined) and joined.passage == SHORT.text
        start_at = await wait_start(client)
        await type_text(client, SHORT.text, start_at, human_times(len(SHORT.text), 0, 80, random.Random(6)))
        results = await client.recv_until(Results, timeout=10)
        assert isinstance(results, Results)
    finally:
        await client.close()
        await client.http.close()
    (row,) = results.results
    assert row.status == "finished" and not row.flags

    deadline = time.monotonic() + 10
    while True:
        board = (await api.call("GET", "/v1/daily?limit=5", token=me["token"])).ok()
        if board["you"] is not None or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert board["players"] == 1
    assert [(e["rank"], e["player_id"], e["name"], e["wpm"]) for e in board["board"]] == [
        (1, me["player_id"], "me", row.wpm)
    ]
    assert board["you"]["rank"] == 1
    assert (await api.call("GET", f"/v1/daily/{day}", token=other["token"])).ok()["you"] is None
    yesterday = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
    assert (await api.call("GET", f"/v1/daily/{yesterday}")).ok()["board"] == []
    tomorrow = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    assert (await api.call("GET", f"/v1/daily/{tomorrow}")).status == 404
    assert (await api.call("GET", "/v1/daily?limit=0")).body["error"] == "bad_limit"

    leader = (await api.call("POST", "/v1/ghost-races", token=other["token"], body={"daily": day})).ok(201)
    assert (leader["ghost"]["player_id"], leader["passage_id"]) == (me["player_id"], "dtest")
    # Any player on the board, by id (the page's "Race ghost" on each board row).
    body = {"daily": day, "player_id": me["player_id"]}
    row_ghost = (await api.call("POST", "/v1/ghost-races", token=other["token"], body=body)).ok(201)
    assert row_ghost["ghost"]["race_id"] == leader["ghost"]["race_id"]
    nobody = {**body, "player_id": "nobody"}
    off_board = await api.call("POST", "/v1/ghost-races", token=me["token"], body=nobody)
    assert (off_board.status, off_board.body["error"]) == (404, "ghost_not_found")
