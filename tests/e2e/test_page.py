"""The page's other screens in headless Chromium: a private race between two browsers, a
reconnect mid-race, refusal banners, named accounts with presence, and a tournament's bracket."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from arena.ids import PlayerId
from arena.registry import NodeRegistry
from arena.tokens import TokenSigner
from persistence.app import PersistenceService
from tests.conftest import ADMIN
from tests.e2e import pages
from tests.e2e.conftest import page_lobby, shot
from tests.lobby.conftest import SECRET, LobbyFactory, RunningLobby
from tests.tournaments.conftest import TEXT, Client, DirectorFactory, play

pytestmark = pytest.mark.timeout(90)

CUSTOM = "Calm seas carry small ships home."


# ---- a private race: created in one browser, joined by code in another --------------------


def host_private_race(driver: Any, url: str) -> str:
    pages.sign_in_as_guest(driver, url, "host")
    pages.click(driver, "#play details summary")
    pages.wait_for(driver, "#custom-text").send_keys(CUSTOM)
    pages.click(driver, "#private-create button")
    pages.wait_until(driver, lambda d: pages.text(d, "#private-code"))
    shot(driver, "10-private-host")
    return pages.text(driver, "#private-code")


def join_private_race(driver: Any, url: str, code: str) -> None:
    pages.sign_in_as_guest(driver, url, "guest")
    pages.click(driver, "#play details summary")
    pages.wait_for(driver, "#invite-code").send_keys(code)
    pages.click(driver, "#private-join button")
    pages.wait_until(driver, lambda d: "host" in pages.text(d, "#private-members"))
    shot(driver, "11-private-guest")


def race_through(driver: Any, seed: int, name: str) -> dict[str, Any]:
    passage = pages.passage_at_go(driver)
    pages.type_text(driver, passage, random.Random(seed))
    return pages.results(driver, name)


async def test_private_race_two_browsers(
    cluster: RunningLobby, browser: Any, second_browser: Callable[[], Any]
) -> None:
    other = await asyncio.to_thread(second_browser)
    code = await asyncio.to_thread(host_private_race, browser, cluster.url + "/")
    assert len(code) == 6, code
    await asyncio.to_thread(join_private_race, other, cluster.url + "/", code)
    # The host sees the guest arrive (long-poll), then starts the race.
    await asyncio.to_thread(pages.wait_until, browser, lambda d: "guest" in pages.text(d, "#private-members"))
    await asyncio.to_thread(pages.click, browser, "#private-start")
    host, guest = await asyncio.gather(
        asyncio.to_thread(race_through, browser, 1, "12-private-results-host"),
        asyncio.to_thread(race_through, other, 2, "13-private-results-guest"),
    )
    for seen in (host, guest):
        assert len(seen["rows"]) == 2, seen
        assert seen["place"] in ("Place 1", "Place 2"), seen
        assert 40 <= seen["wpm"] <= 200, seen
    assert {host["place"], guest["place"]} == {"Place 1", "Place 2"}


# ---- reconnect: the socket drops mid-race, the page resumes within the grace window ------------


def reconnects(driver: Any) -> int:
    return int(driver.execute_script("return window.__arena.reconnects()"))


def race_with_drops(driver: Any, url: str) -> dict[str, Any]:
    """Two drops: a socket that closes (dropSocket), then a link that goes silent while still
    open (silence: the page's watchdog gives up on it). The race goes on after each."""
    pages.sign_in_as_guest(driver, url, "bea")
    pages.click(driver, "#queue-go")
    passage = pages.passage_at_go(driver)
    rng = random.Random(11)
    half = len(passage) // 2
    pages.type_text(driver, passage[:half], rng)
    assert driver.execute_script("return window.__arena.dropSocket()") is True
    pages.type_text(driver, passage[half : half + 2], rng)  # typed while offline: sent after the resume
    pages.wait_until(driver, lambda d: reconnects(d) >= 1, 8)
    shot(driver, "14-reconnected")
    status = pages.text(driver, "#race-status")
    resumed = driver.execute_script("return window.__arena.resumedFrom()")
    my_wpm = pages.text(driver, "#lanes .lane.me .wpm")
    pages.type_text(driver, passage[half + 2 : half + 6], rng)
    assert driver.execute_script("return window.__arena.silence()") is True
    pages.wait_until(driver, lambda d: reconnects(d) >= 2, 8)  # the watchdog runs every 3 s
    pages.type_text(driver, passage[half + 6 :], rng)
    seen = pages.results(driver, "15-reconnect-results")
    return seen | {
        "status_after_drop": status,
        "resumed": resumed,
        "half": half,
        "my_wpm": my_wpm,
        "reconnects": reconnects(driver),
    }


async def test_reconnect_mid_race(cluster: RunningLobby, browser: Any) -> None:
    seen = await asyncio.to_thread(race_with_drops, browser, cluster.url + "/")
    assert seen["status_after_drop"] == "Reconnected.", seen
    # The server kept the race: what was sent before the drop (the last batch may still have been
    # waiting to go; it is sent after the re-join with the keys typed offline).
    resumed = seen["resumed"]
    assert resumed["status"] == "racing" and resumed["seq"] >= 1, seen
    assert seen["half"] - 8 <= resumed["position"] <= seen["half"], seen
    assert seen["my_wpm"] != "0 wpm", seen  # the re-join's roster does not wipe the live speed
    assert seen["reconnects"] == 2, seen
    assert seen["place"] == "Place 1", seen
    assert 20 <= seen["wpm"] <= 200, seen  # slower than usual: up to 3 s waiting for the watchdog


# ---- a flagged result: the whole passage at once looks pasted ----------------------------------


def paste_the_passage(driver: Any, url: str) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    pages.sign_in_as_guest(driver, url, "zed")
    pages.click(driver, "#queue-go")
    passage = pages.passage_at_go(driver)
    driver.find_element(By.ID, "typing").send_keys(passage)  # every key within a few ms
    text = pages.banner(driver, "flagged")
    shot(driver, "16-flagged")
    seen = pages.results(driver, "17-flagged-results")
    return seen | {"banner": text}


async def test_flagged_result_banner(cluster: RunningLobby, browser: Any) -> None:
    seen = await asyncio.to_thread(paste_the_passage, browser, cluster.url + "/")
    assert seen["banner"].startswith("Your result was flagged ("), seen
    assert seen["banner"].endswith("and will not be ranked."), seen
    assert seen["place"] == "Not ranked", seen


# ---- refusals: a full private race, a draining node, a wrong password ----------------------------


async def full_private_race(cluster: RunningLobby) -> str:
    """A private race with every seat taken (the host and four friends), made over the API."""
    api = cluster.api
    host = await api.guest("h")
    body = {"race_type": "quick"}
    race = (await api.call("POST", "/v1/private-races", token=host["token"], body=body)).ok(201)
    for i in range(race["max_players"] - 1):
        friend = await api.guest(f"f{i}")
        (await api.call("POST", f"/v1/private-races/{race['code']}/join", token=friend["token"])).ok()
    return str(race["code"])


def join_full_race(driver: Any, url: str, code: str) -> str:
    pages.sign_in_as_guest(driver, url, "late")
    pages.click(driver, "#play details summary")
    pages.wait_for(driver, "#invite-code").send_keys(code)
    pages.click(driver, "#private-join button")
    text = pages.banner(driver, "full")
    shot(driver, "20-refused-race-full")
    return text


def start_on_drained_node(driver: Any) -> str:
    pages.click(driver, "#private-create button")
    pages.wait_until(driver, lambda d: pages.text(d, "#private-code"))
    pages.click(driver, "#private-start")
    text = pages.banner(driver, "No game server")
    shot(driver, "21-refused-draining")
    return text


def accounts(driver: Any, url: str) -> dict[str, str]:
    """A wrong password is refused with a banner; an account is created, then signed in again."""
    driver.execute_script("sessionStorage.clear()")  # forget the guest of the steps before
    driver.get(url)
    pages.click(driver, "#account summary")
    pages.wait_for(driver, "#account-name").send_keys("grace")
    pages.wait_for(driver, "#account-password").send_keys("hopper1906")
    pages.click(driver, "#login-go")
    refused = pages.banner(driver, "Wrong account name or password")
    shot(driver, "22-refused-login")
    pages.click(driver, "#register-go")
    pages.wait_for(driver, "#queue-go")
    signed_up = pages.text(driver, "#who")
    shot(driver, "23-signed-in-account")
    pages.click(driver, "#sign-out")
    pages.click(driver, "#account summary")
    pages.wait_for(driver, "#account-password").send_keys("hopper1906")
    pages.click(driver, "#login-go")
    pages.wait_for(driver, "#queue-go")
    return {"refused": refused, "signed_up": signed_up, "again": pages.text(driver, "#who")}


async def online_total(cluster: RunningLobby, timeout: float = 5.0) -> int:
    """Players online by the lobby's presence count, polled until someone is (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        total = int((await cluster.api.call("GET", "/v1/presence/online")).ok()["total"])
        if total or time.monotonic() > deadline:
            return total
        await asyncio.sleep(0.2)


async def test_refusal_banners_and_accounts(cluster: RunningLobby, browser: Any) -> None:
    code = await full_private_race(cluster)
    text = await asyncio.to_thread(join_full_race, browser, cluster.url + "/", code)
    assert text.startswith("The race is full."), text
    # Drain the only node: the host's start is refused, and the banner says why.
    (node,) = await NodeRegistry(cluster.lobby.redis).live_nodes()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{node.admin_url}/admin/drain", headers={"Authorization": f"Bearer {ADMIN}"})
        assert resp.status == 202, await resp.text()
    text = await asyncio.to_thread(start_on_drained_node, browser)
    assert "draining" in text, text
    # Named accounts: the page signs in with a password and heartbeats its presence.
    seen = await asyncio.to_thread(accounts, browser, cluster.url + "/")
    assert seen["refused"].startswith("Wrong account name or password."), seen
    assert seen["signed_up"].startswith("grace ·") and "guest" not in seen["signed_up"], seen
    assert seen["again"] == seen["signed_up"], seen
    assert await online_total(cluster) >= 1


# ---- an expired session and a rate limit ------------------------------------------------------


def expired_session(driver: Any, url: str, token: str) -> str:
    """The page restores a session whose token has expired (e.g. a clock that was wrong)."""
    driver.get(url)
    # Only once this page has read its (empty) storage: else it would restore the session
    # planted below, be refused, and sign out (clearing it) before the reload.
    pages.wait_until(driver, lambda d: d.execute_script("return document.activeElement.id") == "name")
    session = {"player_id": "pold", "name": "old", "guest": True, "token": token, "region": "local"}
    session["expires_at"] = int(time.time()) + 3600  # what the page believes
    driver.execute_script("sessionStorage.setItem('arena.session', JSON.stringify(arguments[0]))", session)
    driver.get(url)
    text = pages.banner(driver, "expired")
    pages.wait_for(driver, "#guest-go")  # signed out: pick a name again
    shot(driver, "24-refused-token-expired")
    return text


def rate_limited(driver: Any, url: str) -> str:
    pages.sign_in_as_guest(driver, url, "busy")
    pages.click(driver, "#queue-go")
    text = pages.banner(driver, "Slow down")
    shot(driver, "25-refused-rate-limited")
    return text


async def test_expired_session_and_rate_limit_banners(
    cluster: RunningLobby,
    browser: Any,
    lobby_factory: LobbyFactory,
    redis_url: str,
    persistence: PersistenceService,
) -> None:
    expired = TokenSigner(SECRET).sign_player(PlayerId("pold"), "old", ttl_s=-10, guest=True)
    text = await asyncio.to_thread(expired_session, browser, cluster.url + "/", expired)
    assert text.startswith("Your session expired; pick a name again."), text
    # A lobby that allows a player two requests an hour: signing in spends them (recent races,
    # presence), so queueing is refused. (An hour: a fixed window must not roll over mid-test.)
    strict = await page_lobby(lobby_factory, redis_url, persistence, rate_per_player=2, rate_window_s=3600)
    text = await asyncio.to_thread(rate_limited, browser, strict.url + "/")
    assert text.startswith("Slow down: too many requests."), text
    assert "Try again in" in text, text


# ---- the home page's live races list: each racer's progress and WPM, as it polls -------------------

ODD_NAME = "<b>zed</b>"  # shown as text, never as markup


# Read in one script (atomic in the page): the list re-renders its rows at every poll, so
# element handles kept across calls could go stale.
LIVE_ROW_JS = """
const rows = [...document.querySelectorAll(`#live-list li[data-race="${arguments[0]}"] .live-racers li`)];
const mine = rows.find((r) => r.querySelector('.name').textContent === arguments[1]);
if (!mine) return null;
const bar = mine.querySelector('.bar');
return {pct: Number(bar.getAttribute('aria-valuenow')), wpm: mine.querySelector('.wpm').textContent,
  width: bar.firstElementChild.style.width, rows: rows.map((r) => r.innerText.replace(/\\s+/g, ' ').trim()),
  bold: document.querySelectorAll('#live-list b').length};
"""


def live_row(
    driver: Any, race_id: str, above: int, load: str | None = None, timeout: float = 15.0
) -> dict[str, Any]:
    """The typist's row in the live list once its bar is past ``above`` percent."""
    if load is not None:
        driver.get(load)

    def moved(d: Any) -> Any:
        seen = d.execute_script(LIVE_ROW_JS, race_id, ODD_NAME)
        return seen if seen and seen["pct"] > above else None

    seen: dict[str, Any] = pages.wait_until(driver, moved, timeout)
    if load is not None:
        shot(driver, "26-live-races")
    return seen


async def live_position(cluster: RunningLobby, race_id: str, position: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        races = (await cluster.api.call("GET", "/v1/live/races")).ok()["races"]
        if any(p["position"] >= position for r in races if r["race_id"] == race_id for p in r["players"]):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the lobby never showed position {position} of race {race_id}")


async def test_live_races_show_progress_and_wpm(cluster: RunningLobby, browser: Any) -> None:
    (node,) = await NodeRegistry(cluster.lobby.redis).live_nodes()
    auth = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as http:
        body = {"race_type": "quick", "players": [{"name": ODD_NAME}, {"name": "amy"}]}
        resp = await http.post(f"{node.admin_url}/admin/races", json=body, headers=auth)
        race = await resp.json()
        assert resp.status == 201, race
        race_id = race["race_id"]
        socks = [await http.ws_connect(node.url) for _ in race["seats"]]
        passage = ""
        for ws, seat in zip(socks, race["seats"], strict=True):
            await ws.send_json({"t": "hello", "token": seat["player_token"]})
            await ws.send_json({"t": "join", "ticket": seat["ticket"]})
        zed = socks[0]
        async for msg in zed:
            data = msg.json()
            passage = data.get("passage", passage)
            if data["t"] == "start":
                break
        started = time.monotonic()

        async def typed(seq: int, lo: int, hi: int) -> None:
            # Key instants 100 ms apart from the start: a human pace, sent once they have passed.
            await asyncio.sleep(max(0.0, started + hi / 10 - time.monotonic()))
            times = [100 * (i + 1) for i in range(lo, hi)]
            await zed.send_json({"t": "input", "seq": seq, "keys": passage[lo:hi], "times": times})

        await typed(1, 0, 8)
        await live_position(cluster, race_id, 8)  # in the mirror (within 1 s): the page's first poll shows it
        url = cluster.url + "/"
        first = await asyncio.to_thread(live_row, browser, race_id, 0, url)
        await typed(2, 8, 16)
        # The next poll (every 5 s) shows the figures the node wrote since (once a second).
        second = await asyncio.to_thread(live_row, browser, race_id, first["pct"], None, 10.0)
        for ws in socks:
            await ws.close()
    length = len(passage)
    assert first["pct"] == round(100 * 8 / length) and second["pct"] == round(100 * 16 / length), (
        first,
        second,
    )
    for seen in (first, second):
        assert seen["wpm"].endswith(" wpm") and int(seen["wpm"].split()[0]) > 0, seen
        assert seen["bold"] == 0, seen  # the name is text
        assert seen["width"] == f"{seen['pct']}%", seen  # the bar is drawn (CSSOM, strict CSP)
        assert len(seen["rows"]) == 2 and seen["rows"][1].startswith("amy"), seen
        assert seen["rows"][1].endswith("0 wpm"), seen  # amy has not typed


# ---- a tournament: bracket, live standings, watching a heat --------------------------------------


def open_upcoming(driver: Any, url: str) -> None:
    driver.get(url)
    from selenium.webdriver.support.ui import Select

    Select(pages.wait_for(driver, "#tournament-status")).select_by_value("upcoming")
    pages.click(driver, "#tournament-filter button")
    pages.click(driver, "#tournament-list button[data-tournament]")
    pages.wait_until(driver, lambda d: pages.text(d, "#tournament-title") == "e2e cup")
    shot(driver, "30-tournament-registering")


def watch_a_heat(driver: Any) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    pages.wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#bracket .heat"), 30)
    shot(driver, "31-tournament-bracket")
    pages.click(driver, "#bracket button[data-watch]", 30)
    pages.wait_until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#lanes .lane"))
    shot(driver, "32-tournament-watching")
    pages.wait_for(driver, "#screen-results", 30)
    shot(driver, "33-tournament-heat-results")
    watched = len(driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr"))
    pages.click(driver, "#home")  # back to the tournament
    pages.wait_for(driver, "#screen-tournament")
    pages.wait_until(driver, lambda d: pages.text(d, "#tournament-summary").startswith("finished"), 40)
    rows = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#standings-table tbody tr")]
    rounds = len(driver.find_elements(By.CSS_SELECTOR, "#bracket .round"))
    shot(driver, "34-tournament-finished")
    driver.execute_script("document.getElementById('standings-table').scrollIntoView()")
    shot(driver, "35-tournament-standings")
    return {"watched": watched, "standings": rows, "rounds": rounds}


@pytest.mark.timeout(120)
async def test_tournament_bracket_and_watch(
    cluster: RunningLobby, browser: Any, director_factory: DirectorFactory
) -> None:
    await director_factory()
    async with aiohttp.ClientSession() as http:
        client = Client(http, cluster.url)
        creator = client.token("creator")
        spec = {
            "name": "e2e cup",
            "max_players": 4,
            "heat_size": 2,
            "advancement": {"rule": "top_k", "advance": 1},
        }
        tid = (await client.create(creator, **spec))["id"]
        await asyncio.to_thread(open_upcoming, browser, cluster.url + "/")
        bots = [f"bot{i}" for i in range(4)]
        for bot in bots:
            (await client.register(tid, client.token(bot))).ok(201)
        speeds = (80.0, 90.0, 100.0, 110.0)  # slow enough that a heat is still running when watched
        players = [
            asyncio.create_task(play(client, tid, bot, wpm, timeout_s=60))
            for bot, wpm in zip(bots, speeds, strict=True)
        ]
        seen = await asyncio.to_thread(watch_a_heat, browser)
        runs = await asyncio.gather(*players)
    assert seen["watched"] == 2, seen
    assert seen["rounds"] == 2, seen
    assert len(seen["standings"]) == 4, seen
    assert "winner" in seen["standings"][0], seen
    assert sum(1 for run in runs if run.final and run.final["status"] == "finished") >= 1


def play_in_tournament(driver: Any, url: str, code: str) -> dict[str, Any]:
    """Sign in, open the private tournament by its invite code, register, race the heat the page
    is seated in."""
    pages.sign_in_as_guest(driver, url, "cleo")
    pages.wait_for(driver, "#tournament-code").send_keys(code.lower())  # codes are case-insensitive
    pages.click(driver, "#tournament-invite button")
    pages.wait_until(driver, lambda d: pages.text(d, "#tournament-title") == "duel")
    pages.click(driver, "#tournament-register")
    # The second registration fills it: the page may already be in its race when this is read.
    script = "return document.getElementById('tournament-me').textContent"
    pages.wait_until(driver, lambda d: d.execute_script(script))
    shot(driver, "36-tournament-registered")
    passage = pages.passage_at_go(driver, 30)
    pages.type_text(driver, passage, random.Random(5))
    seen = pages.results(driver, "37-tournament-my-heat")
    pages.click(driver, "#home")  # back to the tournament
    pages.wait_until(driver, lambda d: pages.text(d, "#tournament-me").startswith("Finished: rank"), 30)
    shot(driver, "38-tournament-my-rank")
    return seen | {"me": pages.text(driver, "#tournament-me"), "passage": passage}


async def test_tournament_play_in_browser(
    cluster: RunningLobby, browser: Any, director_factory: DirectorFactory
) -> None:
    await director_factory()
    async with aiohttp.ClientSession() as http:
        client = Client(http, cluster.url)
        spec = {
            "name": "duel",
            "visibility": "private",
            "max_players": 2,
            "heat_size": 2,
            "advancement": {"rule": "top_k", "advance": 1},
        }
        created = await client.create(client.token("creator"), **spec)
        tid, code = created["id"], created["invite_code"]
        (await client.register(tid, client.token("bot0"), invite_code=code)).ok(201)
        bot = asyncio.create_task(play(client, tid, "bot0", 60.0, timeout_s=60))
        seen = await asyncio.to_thread(play_in_tournament, browser, cluster.url + "/", code)
        run = await bot
    assert seen["passage"] == TEXT, seen
    assert len(seen["rows"]) == 2, seen
    assert seen["me"] in ("Finished: rank 1.", "Finished: rank 2."), seen
    assert run.final is not None and run.final["status"] == "finished", run
