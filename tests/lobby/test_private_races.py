"""Private races: create, join by code, long-poll, host start onto a real node, node loss."""

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from arena import keys
from arena.protocol import Hello, Join, Joined, Welcome
from lobby.private_races import CODE_ALPHABET, CODE_LENGTH
from tests.conftest import NodeFactory
from tests.gameserver.wsclient import RawClient
from tests.lobby.conftest import Api, LobbyFactory

TEXT = "a quiet river bends past the old mill and on toward the sea"


async def create(api: Api, token: str, **body: Any) -> dict[str, Any]:
    race: dict[str, Any] = (
        await api.call("POST", "/v1/private-races", token=token, body={"race_type": "quick", **body})
    ).ok(201)
    return race


async def join_on_node(assignment: dict[str, str]) -> Joined:
    client = await RawClient.connect(assignment["url"])
    try:
        await client.send(Hello(token=assignment["player_token"]))
        await client.recv_until(Welcome)
        await client.send(Join(ticket=assignment["ticket"]))
        joined = await client.recv_until(Joined)
        assert isinstance(joined, Joined)
        return joined
    finally:
        await client.close()
        await client.http.close()


async def test_end_to_end_on_a_real_node(api: Api, node_factory: NodeFactory) -> None:
    """1. the host creates a custom race; 2. two friends join by code (one in lower case);
    3. a friend long-polls for changes; 4. the host starts it; 5. everyone's seat works on the node."""
    node = await node_factory(node_id="node-a")
    host, ann, bo = [await api.guest(n) for n in ("host", "ann", "bo")]
    race = await create(api, host["token"], race_type="custom", custom_text=f"  {TEXT}\n")
    code = race["code"]
    assert len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET)
    assert race["state"] == "open" and race["host"]["player_id"] == host["player_id"]
    assert race["custom_text"] == TEXT  # normalised as the node will
    assert [m["name"] for m in race["members"]] == ["host"]

    (await api.call("POST", f"/v1/private-races/{code}/join", token=ann["token"])).ok()
    joined = (await api.call("POST", f"/v1/private-races/{code.lower()}/join", token=bo["token"])).ok()
    assert [m["name"] for m in joined["members"]] == ["host", "ann", "bo"]
    again = (await api.call("POST", f"/v1/private-races/{code}/join", token=bo["token"])).ok()
    assert again["version"] == joined["version"]  # joining twice changes nothing

    path = f"/v1/private-races/{code}?wait=4&since={joined['version']}"
    poll = asyncio.create_task(api.call("GET", path, token=ann["token"]))
    await asyncio.sleep(0.2)
    assert not poll.done()  # nothing changed yet: still waiting
    started = (await api.call("POST", f"/v1/private-races/{code}/start", token=host["token"])).ok()
    assert started["state"] == "started" and started["assignment"]["node_id"] == "node-a"
    ann_view = (await asyncio.wait_for(poll, 2.0)).ok()
    assert (
        ann_view["state"] == "started"
        and ann_view["assignment"]["race_id"] == started["assignment"]["race_id"]
    )

    bo_view = (await api.call("GET", f"/v1/private-races/{code}?wait=4", token=bo["token"])).ok()  # at once
    assignments = [started["assignment"], ann_view["assignment"], bo_view["assignment"]]
    assert len({a["ticket"] for a in assignments}) == 3
    for a in assignments:
        assert a["url"] == node.ws_url
        seated = await join_on_node(a)
        assert seated.race_id == a["race_id"] and seated.passage == TEXT and seated.race_type == "custom"
    assert len(seated.players) == 3

    late = await api.guest("late")
    reply = await api.call("POST", f"/v1/private-races/{code}/join", token=late["token"])
    assert reply.status == 409 and reply.body["error"] == "race_started"
    onlooker = (await api.call("GET", f"/v1/private-races/{code}", token=late["token"])).ok()
    assert onlooker["assignment"] is None  # seats are only shown to their members
    twice = await api.call("POST", f"/v1/private-races/{code}/start", token=host["token"])
    assert twice.status == 409 and twice.body["error"] == "already_started"


async def test_rules_and_errors(lobby_factory: LobbyFactory, redis: aioredis.Redis) -> None:
    api = (await lobby_factory(private_max_players=2, invite_ttl_s=60)).api
    host, ann, bo = [(await api.guest(n))["token"] for n in ("host", "Zoë 🚀", "bo")]
    code = (await create(api, host))["code"]
    assert 55 <= await redis.ttl(keys.private_race(code)) <= 60  # codes expire

    members = (await api.call("POST", f"/v1/private-races/{code}/join", token=ann)).ok()["members"]
    assert [m["name"] for m in members] == ["host", "Zoë 🚀"]  # survives the Lua JSON round trip
    full = await api.call("POST", f"/v1/private-races/{code}/join", token=bo)
    assert full.status == 409 and full.body["error"] == "race_full"
    not_host = await api.call("POST", f"/v1/private-races/{code}/start", token=ann)
    assert not_host.status == 403 and not_host.body["error"] == "not_host"

    no_node = await api.call("POST", f"/v1/private-races/{code}/start", token=host)
    assert no_node.status == 503 and no_node.body["error"] == "no_node" and "Retry-After" in no_node.headers
    assert (await api.call("GET", f"/v1/private-races/{code}", token=ann)).ok()["state"] == "open"

    for unknown in ("ZZZZZZ", "O0I1L!", "abc", "TOOLONGCODE"):
        for method, suffix in (("GET", ""), ("POST", "/join"), ("POST", "/start")):
            reply = await api.call(method, f"/v1/private-races/{unknown}{suffix}", token=host)
            assert reply.status == 404 and reply.body["error"] == "private_race_not_found", (unknown, suffix)
    await redis.delete(keys.private_race(code))  # what expiry does
    gone = await api.call("POST", f"/v1/private-races/{code}/join", token=bo)
    assert gone.status == 404

    bad = [
        ({"race_type": "custom"}, "bad_custom_text"),
        ({"race_type": "quick", "custom_text": TEXT}, "bad_custom_text"),
        ({"race_type": "custom", "custom_text": "too short"}, "bad_custom_text"),
        ({"race_type": "custom", "custom_text": TEXT + " caf\u00e9"}, "bad_custom_text"),
        ({"race_type": "sprint"}, "bad_race_type"),
        ({"race_type": "quick", "region": "mars"}, "unknown_region"),
    ]
    for body, code_ in bad:
        reply = await api.call("POST", "/v1/private-races", token=host, body=body)
        assert reply.status == 400 and reply.body["error"] == code_, (body, reply.body)
    assert (await api.call("POST", "/v1/private-races", body={"race_type": "quick"})).status == 401


async def test_host_restarts_after_node_lost(
    lobby_factory: LobbyFactory, node_factory: NodeFactory, redis: aioredis.Redis
) -> None:
    api = (await lobby_factory(node_refresh_s=0.05)).api
    await node_factory(node_id="node-b")
    host, ann = [(await api.guest(n))["token"] for n in ("host", "ann")]
    code = (await create(api, host))["code"]
    (await api.call("POST", f"/v1/private-races/{code}/join", token=ann)).ok()
    first = (await api.call("POST", f"/v1/private-races/{code}/start", token=host)).ok()

    # Pretend the race went to a node that has since died mid-race.
    await redis.hset(keys.private_race(code), "node_id", "ghost")
    lost = (await api.call("GET", f"/v1/private-races/{code}", token=ann)).ok()
    assert lost["state"] == "node_lost" and "start it again" in lost["reason"]
    not_host = await api.call("POST", f"/v1/private-races/{code}/start", token=ann)
    assert not_host.status == 403
    again = (await api.call("POST", f"/v1/private-races/{code}/start", token=host)).ok()
    assert again["state"] == "started" and again["assignment"]["node_id"] == "node-b"
    assert again["assignment"]["race_id"] != first["assignment"]["race_id"]
    ann_view = (await api.call("GET", f"/v1/private-races/{code}", token=ann)).ok()
    assert (await join_on_node(ann_view["assignment"])).race_id == again["assignment"]["race_id"]


async def test_concurrent_starts_place_one_race(api: Api, node_factory: NodeFactory) -> None:
    node = await node_factory(node_id="node-c")
    host = (await api.guest("host"))["token"]
    code = (await create(api, host))["code"]
    replies = await asyncio.gather(
        *(api.call("POST", f"/v1/private-races/{code}/start", token=host) for _ in range(4))
    )
    assert sorted(r.status for r in replies) == [200, 409, 409, 409]
    assert len(node.node.rooms) == 1


async def test_long_poll_without_since_waits_for_next_change(api: Api) -> None:
    host, ann = [(await api.guest(n))["token"] for n in ("host", "ann")]
    code = (await create(api, host))["code"]
    started = time.monotonic()
    poll = asyncio.create_task(api.call("GET", f"/v1/private-races/{code}?wait=3", token=host))
    await asyncio.sleep(0.2)
    (await api.call("POST", f"/v1/private-races/{code}/join", token=ann)).ok()
    view = (await asyncio.wait_for(poll, 2.0)).ok()
    assert [m["name"] for m in view["members"]] == ["host", "ann"]
    assert time.monotonic() - started < 1.5
    bad = await api.call("GET", f"/v1/private-races/{code}?since=x", token=host)
    assert bad.status == 400 and bad.body["error"] == "bad_since"
