"""The page in headless Chromium: queue, type the whole passage, see a result, find the race in
PostgreSQL and on the page's leaderboard and recent races afterwards; watch a race."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.e2e.conftest import shot
from tests.e2e.pages import key_gap_s
from tests.lobby.conftest import RunningLobby

pytestmark = pytest.mark.timeout(90)


def wait_for(driver: Any, css: str, timeout: float = 15.0, visible: bool = True) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    cond = ec.visibility_of_element_located if visible else ec.presence_of_element_located
    return WebDriverWait(driver, timeout).until(cond((By.CSS_SELECTOR, css)))


def race_in_browser(driver: Any, url: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    name = wait_for(driver, "#name")
    driver.execute_script(RECORD_INPUT_SENDS)
    shot(driver, "01-home")
    name.send_keys("ada")
    driver.find_element(By.ID, "guest-go").click()
    wait_for(driver, "#queue-go").click()
    shot(driver, "02-queue")
    wait_for(driver, "#screen-race", timeout=20)
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "passage").text.strip())
    passage = driver.execute_script("return document.getElementById('passage-plain').textContent")
    shot(driver, "03-countdown")
    # Wait for "Go!" (server clock), then type like a fast human: ~100-140 WPM, log-normal gaps.
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "countdown").text.startswith("Go"))
    box = driver.find_element(By.ID, "typing")
    rng = random.Random(7)
    for i, ch in enumerate(passage):
        box.send_keys(ch)
        time.sleep(key_gap_s(rng))
        if i == len(passage) // 2:
            shot(driver, "04-typing")
    wait_for(driver, "#screen-results", timeout=20)
    shot(driver, "05-results")
    session = driver.execute_script("return JSON.parse(sessionStorage.getItem('arena.session') || 'null')")
    seen = {
        "player_id": (session or {}).get("player_id"),
        "passage": passage,
        "wpm": float(driver.find_element(By.ID, "my-wpm").text),
        "place": driver.find_element(By.ID, "my-place").text,
        "again": driver.find_element(By.ID, "again").is_displayed(),
        "input_sends": driver.execute_script("return window.inputSends"),
    }
    return seen | boards_after_race(driver)


# When the page sends each ``input`` (its msgpack starts {t: "input", ...}), by the page's clock.
RECORD_INPUT_SENDS = """
window.inputSends = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  const head = data instanceof Uint8Array ? String.fromCharCode(...data.slice(0, 12)) : "";
  if (head.includes("input")) window.inputSends.push(Date.now());
  return send.call(this, data);
};
"""


def on_the_cadence(sends: list[int], every_ms: int = 250, slack_ms: int = 25) -> float:
    """The share of gaps between sends that are a whole number of send instants apart."""
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    near = [g for g in gaps if min(g % every_ms, every_ms - g % every_ms) <= slack_ms]
    return len(near) / len(gaps) if gaps else 0.0


def boards_after_race(driver: Any) -> dict[str, Any]:
    """Back home: today's quick leaderboard and the recent races list show the race once
    persistence has stored it ("Show" reloads both; a few seconds at most)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "home").click()
    wait_for(driver, "#board-table")

    def shown(d: Any) -> bool:
        board = d.find_element(By.CSS_SELECTOR, "#board-table tbody").text
        recent = d.find_elements(By.CSS_SELECTOR, "#recent li")
        if "ada" in board and recent:
            return True
        d.find_element(By.CSS_SELECTOR, "#board-form button").click()
        return False

    WebDriverWait(driver, 15, poll_frequency=0.5).until(shown)
    driver.execute_script("document.getElementById('boards').scrollIntoView()")
    shot(driver, "09-leaderboard-recent")
    return {
        "board": driver.find_element(By.CSS_SELECTOR, "#board-table tbody tr").text,
        "recent": [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#recent li")],
    }


async def stored_races(dsn: str, player_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The player's rows in ``race_participants`` joined with their ``races`` rows, polled until
    there is one (or the timeout)."""
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            rows = await conn.fetch(
                """SELECT r.race_id, r.race_type, r.state, r.players, p.name, p.place, p.status, p.wpm,
                          (SELECT count(*) FROM races) AS races,
                          (SELECT count(*) FROM race_participants q WHERE q.race_id = r.race_id) AS seats
                   FROM race_participants p JOIN races r USING (race_id)
                   WHERE p.player_id = $1""",
                player_id,
            )
            if rows or time.monotonic() > deadline:
                return [dict(row) for row in rows]
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def test_queue_type_and_finish(cluster: RunningLobby, browser: Any, e2e_dsn: str) -> None:
    seen = await asyncio.to_thread(race_in_browser, browser, cluster.url + "/")
    assert seen["passage"]
    assert 40 <= seen["wpm"] <= 200, seen
    assert seen["place"] == "Place 1", seen
    assert seen["again"]
    # Keys went out at the race's send instants (250 ms apart), not on the page's own timer;
    # the last send (the finishing keys) goes at once.
    sends = seen["input_sends"][:-1]
    assert len(sends) >= 8, sends
    assert on_the_cadence(sends) >= 0.8, [b - a for a, b in itertools.pairwise(sends)]
    assert seen["board"].startswith("1 ada "), seen
    assert len(seen["recent"]) == 1 and seen["recent"][0].startswith("quick:"), seen
    # The race is in PostgreSQL afterwards: node outbox -> persistence -> races + race_participants.
    assert seen["player_id"], seen
    rows = await stored_races(e2e_dsn, seen["player_id"])
    assert len(rows) == 1, rows
    (row,) = rows
    assert row["races"] == 1 and row["seats"] == 1 and row["players"] == 1, row
    assert (row["race_type"], row["state"], row["status"], row["place"]) == (
        "quick",
        "finished",
        "finished",
        1,
    ), row
    assert row["name"] == "ada", row
    assert 40 <= row["wpm"] <= 200, row
    assert abs(row["wpm"] - seen["wpm"]) < 0.1, (row, seen)


def watch_in_browser(driver: Any, url: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait_for(driver, "#screen-race", timeout=15)
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lanes .lane"))
    shot(driver, "06-watching")
    WebDriverWait(driver, 20).until(
        lambda d: (
            float(d.find_element(By.CSS_SELECTOR, "#lanes .bar").get_attribute("aria-valuenow") or 0) > 0
        )
    )
    shot(driver, "07-watching-progress")
    wait_for(driver, "#screen-results", timeout=30)
    shot(driver, "08-watched-results")
    return {"rows": len(driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr"))}


async def test_spectate_live_race(cluster: RunningLobby, browser: Any, redis_url: str) -> None:
    # A race made on the node directly, raced by a scripted player over the WebSocket.
    import redis.asyncio as aioredis

    from arena.registry import NodeRegistry

    client = aioredis.Redis.from_url(redis_url)
    try:
        (node,) = await NodeRegistry(client).live_nodes()
    finally:
        await client.aclose()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            f"{node.admin_url}/admin/races",
            json={"race_type": "quick", "players": [{"name": "bot"}]},
            headers={"Authorization": "Bearer test-admin-token"},
        )
        race = await resp.json()
        assert resp.status == 201, race
        seat = race["seats"][0]
        watcher = asyncio.create_task(
            asyncio.to_thread(
                watch_in_browser, browser, f"{cluster.url}/?watch={race['race_id']}&node={node.url}"
            )
        )
        async with http.ws_connect(node.url) as ws:
            await ws.send_json({"t": "hello", "token": seat["player_token"]})
            await ws.send_json({"t": "join", "ticket": seat["ticket"]})
            passage = ""
            async for msg in ws:
                data = msg.json()
                if data["t"] == "joined":
                    passage = data["passage"]
                elif data["t"] == "ping":
                    await ws.send_json({"t": "pong", "echo": data["sent"], "time": int(time.time() * 1000)})
                elif data["t"] == "start":
                    break
            await asyncio.sleep(3.0)  # let the spectator page settle on the race screen
            rng = random.Random(3)
            t = 0
            for seq, i in enumerate(range(0, len(passage), 4), start=1):
                chunk = passage[i : i + 4]
                times = []
                for _ in chunk:
                    t += rng.randint(70, 140)
                    times.append(t)
                await ws.send_json({"t": "input", "seq": seq, "keys": chunk, "times": times})
                await asyncio.sleep(sum(rng.randint(70, 140) for _ in chunk) / 1000)
            async for msg in ws:
                if msg.json()["t"] == "results":
                    break
        seen = await watcher
    assert seen["rows"] == 1
