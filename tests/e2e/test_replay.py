"""The replay viewer in headless Chromium: a stored race opened from the recent races list, played
at 4x, paused, sought; and the page's copy of ``text_at`` checked against the Python reference."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from arena.results import MatchRecord
from gameserver.passages import Corpus
from lobby.replay_text import BACKSPACE_KEY, ReplayKey, text_at
from persistence import synthetic
from persistence.settings import PostgresSettings
from tests.e2e import pages
from tests.e2e.conftest import shot
from tests.lobby.conftest import LobbyFactory, RunningLobby
from tests.persistence.test_queries import NOON, persist

pytestmark = pytest.mark.timeout(90)

PASSAGE = Corpus.load().by_id("q001").text  # "The river slowed ..."; synthetic races type q001


@pytest.fixture
async def replay_lobby(lobby_factory: LobbyFactory, e2e_dsn: str) -> RunningLobby:
    return await lobby_factory(regions=("local",), postgres=PostgresSettings(dsn=e2e_dsn))


@pytest.fixture
async def stores(redis_url: str, e2e_dsn: str) -> AsyncIterator[tuple[asyncpg.Pool, aioredis.Redis]]:
    pool = await asyncpg.create_pool(e2e_dsn, min_size=1, max_size=2)
    redis = aioredis.Redis.from_url(redis_url)
    yield pool, redis
    await redis.aclose()
    await pool.close()


def a_race(player_id: str) -> MatchRecord:
    """Ada types "The river" with one typo she deletes; Bob is flagged. About 2.4 s of keys."""
    race = synthetic.match(random.Random(4), ended_at=NOON, players=[player_id, "bob"], race_type="quick")
    ada, bob = race.participants
    ada_keys = "Thx\be river"
    bob_keys = "The rivv\ber"
    ada = dataclasses.replace(
        ada, name="ada", keys=ada_keys, key_times=[200 * (i + 1) for i in range(len(ada_keys))]
    )
    bob = dataclasses.replace(
        bob,
        name="bob",
        keys=bob_keys,
        key_times=[220 * (i + 1) for i in range(len(bob_keys))],
        valid=False,
        flags=["too_fast"],
        place=None,
    )
    return dataclasses.replace(race, participants=[ada, bob])


def sign_in(driver: Any, url: str) -> str:
    pages.sign_in_as_guest(driver, url, "ada")
    session = driver.execute_script("return JSON.parse(sessionStorage.getItem('arena.session'))")
    return str(session["player_id"])


def texts(driver: Any) -> list[tuple[str, str]]:
    """Each racer's (correct, wrong) text as shown."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('#replay-racers .replay-text')]"
        ".map((p) => [p.children[0].textContent, p.children[1].textContent])"
    )
    return [(ok, bad) for ok, bad in rows]


def seek(driver: Any, t_ms: int) -> None:
    driver.execute_script(
        "const s = document.getElementById('replay-seek'); s.value = arguments[0];"
        " s.dispatchEvent(new Event('input'));",
        t_ms,
    )


def open_and_play(driver: Any) -> dict[str, Any]:
    from selenium.webdriver.support.ui import Select

    pages.click(driver, "#board-form button")  # reloads the recent races
    pages.wait_for(driver, "#recent button[data-replay]")
    driver.execute_script("document.getElementById('boards').scrollIntoView()")
    shot(driver, "40-recent-replay-button")
    pages.click(driver, "#recent button[data-replay]")
    pages.wait_for(driver, "#screen-replay")
    seen: dict[str, Any] = {"start": texts(driver), "meta": pages.text(driver, "#replay-meta")}
    seek(driver, 700)  # after "Thx": the wrong "x" shows until the backspace at 800 ms
    seen["typo"] = texts(driver)
    shot(driver, "41-replay-typo")
    seek(driver, 0)
    Select(pages.wait_for(driver, "#replay-speed")).select_by_value("4")
    pages.click(driver, "#replay-play")
    pages.wait_until(driver, lambda d: pages.text(d, "#replay-play") == "Play", timeout=10)  # ended
    seen["end"] = texts(driver)
    seen["end_time"] = driver.execute_script("return window.__arena.replayAt()")
    shot(driver, "42-replay-end")
    # Pause holds the clock still.
    seek(driver, 0)
    pages.click(driver, "#replay-play")
    pages.wait_until(driver, lambda d: d.execute_script("return window.__arena.replayAt()") > 0)
    pages.click(driver, "#replay-play")
    held = driver.execute_script("return window.__arena.replayAt()")
    driver.execute_script("return new Promise((ok) => setTimeout(ok, 300))")
    seen["paused"] = (held, driver.execute_script("return window.__arena.replayAt()"))
    return seen


def page_text_at(driver: Any, keys: list[ReplayKey], t_ms: int, passage: str | None) -> dict[str, Any]:
    wire = [{"t_ms": k.t_ms, "key": k.key} for k in keys]
    result: dict[str, Any] = driver.execute_script(
        "return window.__arena.replayTextAt(arguments[0], arguments[1], arguments[2])", wire, t_ms, passage
    )
    return result


async def test_replay_viewer(
    replay_lobby: RunningLobby, browser: Any, stores: tuple[asyncpg.Pool, aioredis.Redis]
) -> None:
    player_id = await asyncio.to_thread(sign_in, browser, replay_lobby.url + "/")
    await persist(*stores, [a_race(player_id)])
    seen = await asyncio.to_thread(open_and_play, browser)
    assert seen["start"] == [("", ""), ("", "")], seen
    assert "2 racers" in seen["meta"], seen
    assert seen["typo"][0] == ("Th", "x"), seen
    assert seen["end"] == [("The river", ""), ("The river", "")], seen
    assert seen["end_time"] == 11 * 220, seen  # bob's last key ends the timeline
    held, later = seen["paused"]
    assert 0 < held == later, seen


def open_link(driver: Any, url: str, race_id: str) -> dict[str, str]:
    """/?replay=ID opens the viewer straight away; an unknown id says so in the banner."""
    driver.get(f"{url}/?replay={race_id}")
    pages.wait_for(driver, "#screen-replay")
    seen = {"title": pages.text(driver, "#replay-title"), "time": pages.text(driver, "#replay-time")}
    driver.get(f"{url}/?replay=rnope")
    seen["banner"] = pages.banner(driver, "no finished race")
    return seen


async def test_a_replay_link(
    replay_lobby: RunningLobby, browser: Any, stores: tuple[asyncpg.Pool, aioredis.Redis]
) -> None:
    race = a_race("pada")
    await persist(*stores, [race])
    seen = await asyncio.to_thread(open_link, browser, replay_lobby.url, race.match_id)
    assert seen["title"] == "Replay: quick race", seen
    assert seen["time"] == "0:00.0 / 0:02.4", seen


async def test_the_pages_text_at_is_the_python_one(replay_lobby: RunningLobby, browser: Any) -> None:
    rng = random.Random(16)
    cases = []
    for _ in range(40):
        alphabet = PASSAGE[:12] + "xz" + "\b" * 4
        typed = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        keys = [ReplayKey(10 * (i + 1), BACKSPACE_KEY if k == "\b" else k) for i, k in enumerate(typed)]
        cases.append((keys, rng.randint(0, 700), rng.choice([PASSAGE[:12], PASSAGE, None])))

    def run() -> list[dict[str, Any]]:
        browser.get(replay_lobby.url + "/")
        pages.wait_for(browser, "#name")
        return [page_text_at(browser, *case) for case in cases]

    got = await asyncio.to_thread(run)
    for case, page in zip(cases, got, strict=True):
        want = dataclasses.asdict(text_at(*case))
        assert {k: page[k] for k in ("text", "correct", "finished")} == {
            "text": want["text"],
            "correct": want["correct"],
            "finished": want["finished"],
        }, json.dumps([str(case), page, want])
        assert page["applied"] == want["keys_applied"]
