"""The daily challenge section and ghost races in headless Chromium, against the e2e cluster (a real
node, lobby, persistence): the countdown and the board; "Race ghost" on a recent race, the ghost's
lane moving while the player types, the ghost in the results; the daily attempt and "race the
leader" and "Race ghost" on a board row opening races on the day's passage."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from arena.clock import now_ms
from arena.results import MatchRecord
from gameserver.passages import Corpus
from lobby import daily, replay
from persistence import synthetic
from persistence.app import PersistenceService
from tests.e2e import pages
from tests.e2e.conftest import shot
from tests.lobby.conftest import RunningLobby
from tests.matchmaker.conftest import SHORT_CORPUS
from tests.persistence.test_queries import NOON, persist

pytestmark = pytest.mark.timeout(90)

DAILY = SHORT_CORPUS.by_id("t0")  # the test's challenge of the day, a passage the e2e node has


@pytest.fixture
def short_passages(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The lobby knows the e2e node's short passages (ghosts need their text), and today's
    challenge is one of them."""
    both = Corpus([*Corpus.load(), *SHORT_CORPUS])
    monkeypatch.setattr(Corpus, "load", classmethod(lambda cls, path=None: both))
    monkeypatch.setattr(daily, "daily_passage", lambda day, corpus: DAILY)
    replay._corpus.cache_clear()
    yield
    replay._corpus.cache_clear()
    daily.corpus.cache_clear()


@pytest.fixture
async def stores(
    redis_url: str, persistence: PersistenceService
) -> AsyncIterator[tuple[asyncpg.Pool, aioredis.Redis]]:
    pool = await asyncpg.create_pool(persistence.settings.postgres.dsn, min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(redis_url)
    yield pool, redis
    await redis.aclose()
    await pool.close()


def past_attempt(player_id: str) -> MatchRecord:
    """The player's earlier daily attempt: the day's passage at 200 ms a key (slower than the test
    types), so its ghost is still typing when the player finishes; Bob's was flagged."""
    race = synthetic.match(random.Random(8), ended_at=NOON, players=[player_id, "bob"], race_type="quick")
    me, bob = race.participants
    times = [200 * (i + 1) for i in range(len(DAILY.text))]
    me = dataclasses.replace(
        me, name="ada", status="finished", valid=True, flags=[], keys=DAILY.text, key_times=times, wpm=60.0
    )
    bob = dataclasses.replace(bob, valid=False, flags=["too_fast"], place=None)  # flagged: not on the board
    day = daily.today(now_ms()).isoformat()
    return dataclasses.replace(race, passage_id=DAILY.id, participants=[me, bob], daily=day)


def sign_in(driver: Any, url: str) -> str:
    pages.sign_in_as_guest(driver, url, "ada")
    session = driver.execute_script("return JSON.parse(sessionStorage.getItem('arena.session'))")
    return str(session["player_id"])


def ghost_lane_pct(driver: Any) -> int:
    value = driver.execute_script(
        "const b = document.querySelector('#lanes .lane.ghost .bar');"
        " return b && b.getAttribute('aria-valuenow')"
    )
    return int(value or 0)


def daily_and_ghosts(driver: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    driver.refresh()  # the stored attempt is on the board and in the recent races now
    pages.wait_until(driver, lambda d: "ada" in pages.text(d, "#daily-table"))
    pages.wait_until(driver, lambda d: pages.text(d, "#daily-you").startswith("You:"))  # signed in
    driver.execute_script("document.getElementById('daily').scrollIntoView()")
    seen["countdown"] = pages.text(driver, "#daily-countdown")
    seen["you"] = pages.text(driver, "#daily-you")
    seen["passage"] = pages.text(driver, "#daily-passage")
    shot(driver, "60-daily-challenge")

    # "Race ghost" on a recent race: the ghost's lane moves while the player types; both in the results.
    pages.wait_for(driver, "#recent button[data-ghost-race]", visible=False)
    driver.execute_script("document.getElementById('boards').scrollIntoView()")
    pages.click(driver, "#recent button[data-ghost-race]")
    passage = pages.passage_at_go(driver)
    seen["ghost_passage"] = passage
    seen["ghost_lane"] = pages.text(driver, "#lanes .lane.ghost .name")
    pages.type_text(driver, passage[: len(passage) // 2], random.Random(3))
    seen["ghost_moved"] = ghost_lane_pct(driver)
    shot(driver, "61-ghost-race")
    pages.type_text(driver, passage[len(passage) // 2 :], random.Random(4))
    seen["results"] = pages.results(driver, "62-ghost-results")["rows"]

    # The daily attempt, and the leader's ghost: each opens a race on the day's passage.
    pages.click(driver, "#home")
    pages.click(driver, "#daily-go")
    seen["attempt_passage"] = pages.passage_at_go(driver)
    seen["attempt_lanes"] = driver.execute_script("return document.querySelectorAll('#lanes .lane').length")
    pages.click(driver, "#race-leave")
    pages.click(driver, "#daily-leader")
    pages.wait_for(driver, "#lanes .lane.ghost")
    seen["leader_lane"] = pages.text(driver, "#lanes .lane.ghost .name")
    pages.click(driver, "#race-leave")
    # Every board row races that player's attempt ({daily, player_id}).
    pages.wait_for(driver, "#daily-table button[data-daily-ghost]", visible=False)
    driver.execute_script("document.getElementById('daily-table').scrollIntoView()")
    shot(driver, "63-daily-board-ghost")
    pages.click(driver, "#daily-table button[data-daily-ghost]")
    pages.wait_for(driver, "#lanes .lane.ghost")
    seen["row_lane"] = pages.text(driver, "#lanes .lane.ghost .name")
    seen["row_passage"] = pages.passage_at_go(driver)
    pages.click(driver, "#race-leave")
    return seen


async def test_the_daily_challenge_and_ghost_races_on_the_page(
    short_passages: None, cluster: RunningLobby, browser: Any, stores: tuple[asyncpg.Pool, aioredis.Redis]
) -> None:
    player_id = await asyncio.to_thread(sign_in, browser, cluster.url + "/")
    await persist(*stores, [past_attempt(player_id)])
    seen = await asyncio.to_thread(daily_and_ghosts, browser)
    assert "next challenge in" in seen["countdown"], seen
    assert seen["you"].startswith("You: #1 of 1"), seen
    assert seen["passage"] == DAILY.text, seen
    assert seen["ghost_passage"] == DAILY.text and seen["ghost_lane"] == "ada (ghost)", seen
    assert seen["ghost_moved"] > 0, seen
    assert any(row.endswith("(ghost)") or "ada (ghost)" in row for row in seen["results"]), seen
    assert seen["attempt_passage"] == DAILY.text and seen["attempt_lanes"] == 1, seen
    assert seen["leader_lane"] == "ada (ghost)", seen
    assert seen["row_lane"] == "ada (ghost)" and seen["row_passage"] == DAILY.text, seen
