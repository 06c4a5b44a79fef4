"""Ghosts from the page (lobby/web/ghostpicker.js) in headless Chromium, against the e2e cluster (a
real node, lobby, matchmaker and persistence): "Race ghost" on the results screen's own row right
after a race (retried while persistence stores it), the ghost racing visibly; then a private
race whose host adds a ghost (a refusal shown in the banner, then their personal best, then the
same run picked from the first race's finishers: still one), sees it listed, starts, and races it."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from tests.e2e import pages
from tests.e2e.conftest import shot
from tests.e2e.test_daily_ghosts import ghost_lane_pct, short_passages
from tests.lobby.conftest import RunningLobby

__all__ = ["short_passages"]  # the fixture: the lobby knows the e2e node's short passages

pytestmark = pytest.mark.timeout(90)

RESULT_GHOST = "#results-table button[data-ghost-race]"


def results_row_buttons(driver: Any) -> list[bool]:
    """Per results row: does it offer "Race ghost"?"""
    script = (
        "return [...document.querySelectorAll('#results-table tbody tr')]"
        ".map((tr) => !!tr.querySelector('button[data-ghost-race]'))"
    )
    return list(driver.execute_script(script))


def choose(driver: Any, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(pages.wait_for(driver, "#ghost-pick")).select_by_value(value)


def ghosts_from_the_page(driver: Any, url: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    pages.sign_in_as_guest(driver, url, "ada")

    # 1. A quick race typed to its end: the results row offers "Race ghost"; it races that run.
    pages.click(driver, "#queue-go")
    seen["first_passage"] = passage = pages.passage_at_go(driver)
    pages.type_text(driver, passage, random.Random(5))
    seen["first"] = pages.results(driver, "80-results-race-ghost")
    seen["first_buttons"] = results_row_buttons(driver)
    pages.click(driver, RESULT_GHOST)
    seen["ghost_passage"] = pages.passage_at_go(driver)
    seen["ghost_lane"] = pages.text(driver, "#lanes .lane.ghost .name")
    pages.wait_until(driver, lambda d: ghost_lane_pct(d) > 0, 10)  # it types on its own
    seen["ghost_moved"] = ghost_lane_pct(driver)
    shot(driver, "81-ghost-from-results")
    pages.click(driver, "#race-leave")

    # 2. A private race: the daily leader is refused (no board yet), the personal best is added.
    pages.click(driver, "#play details summary")
    pages.click(driver, "#private-create button")
    pages.wait_until(driver, lambda d: pages.text(d, "#private-code"))
    pages.wait_for(driver, "#ghost-add")
    choose(driver, "daily")
    pages.click(driver, "#ghost-add-go")
    seen["refused"] = pages.banner(driver, "daily board")
    choose(driver, "best")
    pages.click(driver, "#ghost-add-go")
    pages.wait_until(driver, lambda d: "ada (ghost)" in pages.text(d, "#private-ghost-list"))
    seen["count"] = pages.text(driver, "#private-ghost-count")
    seen["listed"] = pages.text(driver, "#private-ghost-list")
    # The first race's finishers are offered too (read from its replay): the host's own run there
    # is the same ghost as the best, so adding it again keeps one ghost, and the page says so.
    pick = (
        "const o = [...document.querySelectorAll('#ghost-pick option')]"
        ".find((o) => o.value.startsWith('race:'));"
    )
    pages.wait_until(driver, lambda d: d.execute_script(f"{pick} return !!o"))
    seen["race_option"] = driver.execute_script(f"{pick} return o.textContent")
    choose(driver, str(driver.execute_script(f"{pick} return o.value")))
    pages.click(driver, "#ghost-add-go")
    pages.wait_until(driver, lambda d: "already" in pages.text(d, "#private-ghost-status"))
    seen["again_count"] = pages.text(driver, "#private-ghost-count")
    shot(driver, "82-private-race-ghosts")

    # 3. Started: the ghost races with the host; its row in the results offers no "Race ghost".
    pages.click(driver, "#private-start")
    passage = pages.passage_at_go(driver)
    seen["private_passage"] = passage
    seen["private_lane"] = pages.text(driver, "#lanes .lane.ghost .name")
    pages.type_text(driver, passage[: len(passage) // 2], random.Random(6))
    pages.wait_until(driver, lambda d: ghost_lane_pct(d) > 0, 10)
    shot(driver, "83-private-ghost-race")
    pages.type_text(driver, passage[len(passage) // 2 :], random.Random(7))
    seen["private"] = pages.results(driver, "84-private-ghost-results")
    seen["private_buttons"] = results_row_buttons(driver)
    return seen


@pytest.mark.usefixtures("short_passages")
async def test_ghosts_from_the_results_row_and_in_a_private_race(cluster: RunningLobby, browser: Any) -> None:
    seen = await asyncio.to_thread(ghosts_from_the_page, browser, cluster.url + "/")
    assert seen["first"]["place"] == "Place 1" and seen["first_buttons"] == [True], seen
    assert seen["ghost_passage"] == seen["first_passage"], seen
    assert seen["ghost_lane"] == "ada (ghost)" and seen["ghost_moved"] > 0, seen
    assert "nobody is on that day's daily board" in seen["refused"], seen
    assert seen["count"] == seen["again_count"] == "(1 of 3)", seen
    assert seen["listed"].startswith("ada (ghost) · "), seen
    assert seen["race_option"].startswith("You, "), seen
    # The private race runs on the ghost's passage, the one typed in the first race.
    assert seen["private_passage"] == seen["ghost_passage"] and seen["private_lane"] == "ada (ghost)", seen
    rows = seen["private"]["rows"]
    assert len(rows) == 2 and any("ada (ghost)" in row for row in rows), seen
    ghost_row = next(i for i, row in enumerate(rows) if "(ghost)" in row)
    assert seen["private_buttons"][ghost_row] is False, seen  # a ghost's result is not stored
    assert seen["private_buttons"][1 - ghost_row] is True, seen
