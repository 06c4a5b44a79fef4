"""The tournament API without a director: create, list, register, errors, private codes."""

import asyncio

from arena.clock import now_ms
from tests.tournaments.conftest import Client


async def test_create_validates_the_spec(client: Client) -> None:
    token = client.token("host")
    bad = [
        ({"name": ""}, "bad_name"),
        ({"type": "weekly"}, "bad_type"),
        ({"heat_size": 9}, "bad_heat_size"),
        ({"advancement": {"rule": "top_k", "advance": 5}}, "bad_advance"),
        ({"advancement": {"rule": "top_k", "advance": 2, "races_per_round": 3}}, "bad_races_per_round"),
        ({"max_players": 1}, "bad_max_players"),
        ({"max_players": 25, "rounds": 2}, "bad_rounds"),  # 25 players, heats of 5, top 2: 3 rounds
        ({"type": "scheduled"}, "bad_starts_at"),
        ({"type": "instant", "starts_at": now_ms() + 5000}, "bad_starts_at"),
        ({"race_type": "quick"}, "bad_custom_text"),  # custom_text only for custom races
    ]
    base = {
        "name": "cup",
        "type": "instant",
        "race_type": "custom",
        "custom_text": "Twenty characters at least here.",
        "max_players": 10,
        "heat_size": 5,
        "advancement": {"rule": "top_k", "advance": 2},
    }
    for change, code in bad:
        reply = await client.call("POST", "/v1/tournaments", token=token, body={**base, **change})
        assert (reply.status, reply.body["error"]) == (400, code), (change, reply.body)
    unauth = await client.call("POST", "/v1/tournaments", body=base)
    assert (unauth.status, unauth.body["error"]) == (401, "unauthorized")
    forged = await client.call("POST", "/v1/tournaments", token="v1.bad.token", body=base)
    assert (forged.status, forged.body["error"]) == (401, "bad_token")
    for header in (token, f"Basic {token}", f"Bearer  {token}", f"Bearer {token} x", f"Bearer\t{token}"):
        async with client.http.post(
            client.base + "/v1/tournaments", json=base, headers={"Authorization": header}
        ) as resp:
            refused = await resp.json()
            assert (resp.status, refused["error"]) == (401, "bad_token"), (header, refused)
            assert "Bearer <token>" in refused["reason"]


async def test_registration_errors_and_capacity(client: Client) -> None:
    host = client.token("host")
    t = await client.create(host, max_players=4)
    assert t["state"] == "registering" and t["rounds"] == 1
    tid = t["id"]
    # Ten players race for four places: exactly four get in, atomically.
    replies = await asyncio.gather(*(client.register(tid, client.token(f"p{i}")) for i in range(10)))
    assert sorted(r.status for r in replies) == [201] * 4 + [409] * 6
    assert {r.body["error"] for r in replies if r.status == 409} == {"tournament_full"}
    winner = next(i for i, r in enumerate(replies) if r.status == 201)
    again = await client.register(tid, client.token(f"p{winner}"))
    assert (again.status, again.body["error"]) == (409, "already_registered")
    missing = await client.register("tnope", client.token("p1"))
    assert (missing.status, missing.body["error"]) == (404, "tournament_not_found")
    assert (await client.call("GET", "/v1/tournaments/tnope")).status == 404
    # leaving frees a place
    left = await client.call(
        "DELETE", f"/v1/tournaments/{tid}/registration", token=client.token(f"p{winner}")
    )
    assert left.ok()["players"] == 3
    not_in = await client.call("DELETE", f"/v1/tournaments/{tid}/registration", token=client.token("zed"))
    assert (not_in.status, not_in.body["error"]) == (409, "not_registered")
    detail = await client.get(tid)
    assert detail["players"] == 3 and detail["bracket"] == [] and detail["registered"] is False
    assert len(detail["participants"]) == 3 and f"p{winner}" not in {
        p["player_id"] for p in detail["participants"]
    }


async def test_registration_closes_at_a_scheduled_start(client: Client) -> None:
    t = await client.create(client.token("host"), type="scheduled", starts_at=now_ms() + 400, max_players=8)
    assert (await client.register(t["id"], client.token("early"))).status == 201
    await asyncio.sleep(0.5)  # no director runs: the closing time alone refuses
    late = await client.register(t["id"], client.token("late"))
    assert (late.status, late.body["error"]) == (409, "registration_closed")
    leave = await client.call(
        "DELETE", f"/v1/tournaments/{t['id']}/registration", token=client.token("early")
    )
    assert (leave.status, leave.body["error"]) == (409, "registration_closed")


async def test_private_tournaments_need_their_code_and_are_not_listed(client: Client) -> None:
    host = client.token("host")
    private = await client.create(host, visibility="private", max_players=4)
    code = private["invite_code"]
    assert len(code) == 6
    public = await client.create(host, name="open cup", max_players=4)
    refused = await client.register(private["id"], client.token("p1"))
    assert (refused.status, refused.body["error"]) == (403, "bad_invite_code")
    assert (await client.register(private["id"], client.token("p1"), invite_code=code.lower())).status == 201
    found = (await client.call("GET", f"/v1/tournaments/invites/{code}")).ok()
    assert found["id"] == private["id"] and "invite_code" not in found
    listed = (await client.call("GET", "/v1/tournaments?status=upcoming")).ok()
    assert [t["id"] for t in listed["tournaments"]] == [public["id"]]
    # only the creator sees the code again
    as_host = (await client.call("GET", f"/v1/tournaments/{private['id']}", token=host)).ok()
    as_other = (await client.call("GET", f"/v1/tournaments/{private['id']}", token=client.token("p1"))).ok()
    assert as_host["invite_code"] == code and "invite_code" not in as_other and as_other["registered"]


async def test_listing_pages(client: Client) -> None:
    host = client.token("host")
    ids = [
        (await client.create(host, type="scheduled", starts_at=now_ms() + 60_000 + i * 1000, max_players=4))[
            "id"
        ]
        for i in range(5)
    ]
    first = (await client.call("GET", "/v1/tournaments?status=upcoming&limit=2")).ok()
    second = (
        await client.call("GET", f"/v1/tournaments?status=upcoming&limit=2&cursor={first['next_cursor']}")
    ).ok()
    third = (
        await client.call("GET", f"/v1/tournaments?status=upcoming&limit=2&cursor={second['next_cursor']}")
    ).ok()
    pages = [first, second, third]
    assert [t["id"] for p in pages for t in p["tournaments"]] == ids  # soonest first
    assert third["next_cursor"] is None
    assert (await client.call("GET", "/v1/tournaments?status=live")).ok()["tournaments"] == []
    bad = await client.call("GET", "/v1/tournaments?status=soon")
    assert (bad.status, bad.body["error"]) == (400, "bad_status")


async def test_heat_answers_before_the_start(client: Client) -> None:
    t = await client.create(client.token("host"), max_players=4)
    token = client.token("p1")
    assert (await client.heat(t["id"], token))["status"] == "not_registered"
    await client.register(t["id"], token)
    answer = await client.heat(t["id"], token, wait=0.3, since="registered:0:0:0:")
    assert answer["status"] == "registered" and answer["player_token"] is None
