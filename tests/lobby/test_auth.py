"""Player tokens: guests, named players (register, log in), and every way a token is refused."""

import time

from arena.ids import NodeId, PlayerId, RaceId
from arena.tokens import TokenSigner
from lobby.auth import check_password, hash_password
from tests.lobby.conftest import SECRET, Api


def test_password_hash_round_trip() -> None:
    stored = hash_password("correct horse", n=2**8)
    assert check_password("correct horse", stored)
    assert not check_password("correct horsE", stored)
    again = hash_password("correct horse", n=2**8)
    assert again.salt != stored.salt and again.digest != stored.digest  # salted


async def test_guest_token(api: Api) -> None:
    session = await api.guest("  ada  ")
    assert session["name"] == "ada" and session["guest"] is True
    token = TokenSigner(SECRET).verify_player(session["token"])
    assert token.player_id == session["player_id"] and token.guest
    assert abs(session["expires_at"] - (time.time() + 86400)) < 5
    second = await api.guest("ada")
    assert second["player_id"] != session["player_id"]  # a guest is new every time


async def test_register_then_login(api: Api) -> None:
    reg = (await api.call("POST", "/v1/players", body={"name": "Grace", "password": "hopper1906"})).ok(201)
    assert reg["guest"] is False and reg["name"] == "Grace"
    assert not TokenSigner(SECRET).verify_player(reg["token"]).guest
    login = (await api.call("POST", "/v1/sessions", body={"name": "grace", "password": "hopper1906"})).ok()
    assert login["player_id"] == reg["player_id"] and login["name"] == "Grace"

    taken = await api.call("POST", "/v1/players", body={"name": "GRACE", "password": "another-one"})
    assert taken.status == 409 and taken.body["error"] == "name_taken"


async def test_wrong_password_and_unknown_name(api: Api) -> None:
    await api.call("POST", "/v1/players", body={"name": "linus", "password": "penguins!"})
    for body in ({"name": "linus", "password": "penguins?"}, {"name": "nobody", "password": "penguins!"}):
        reply = await api.call("POST", "/v1/sessions", body=body)
        assert reply.status == 401 and reply.body["error"] == "bad_credentials", reply.body


async def test_short_password_refused(api: Api) -> None:
    reply = await api.call("POST", "/v1/players", body={"name": "kay", "password": "short"})
    assert reply.status == 400 and reply.body["error"] == "bad_password"


async def test_tokens_refused(api: Api) -> None:
    session = await api.guest()
    good = session["token"]
    expired = TokenSigner(SECRET, clock=lambda: time.time() - 100_000).sign_player(
        PlayerId("p1"), "old", ttl_s=60, guest=True
    )
    forged = TokenSigner(b"some-other-secret-9999").sign_player(PlayerId("p1"), "eve", ttl_s=60, guest=True)
    tampered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    join_ticket = TokenSigner(SECRET).sign_join(PlayerId("p1"), "x", RaceId("r1"), NodeId("n1"), ttl_s=60)
    body = {"race_type": "quick", "region": "local"}
    cases = {
        expired: "token_expired",
        forged: "bad_token",
        tampered: "bad_token",
        join_ticket: "bad_token",  # the wrong kind of token
        "garbage": "bad_token",
    }
    for token, code in cases.items():
        reply = await api.call("POST", "/v1/tickets", token=token, body=body)
        assert reply.status == 401 and reply.body["error"] == code, (code, reply.body)
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    missing = await api.call("POST", "/v1/tickets", body=body)
    assert missing.status == 401 and missing.body["error"] == "unauthorized"
    # Only exactly 'Bearer <token>' (any case of the scheme) is read; a good token sent any
    # other way is refused, never guessed at.
    malformed = [
        f"Basic {good}", good, f"Bearer  {good}", f"Bearer {good} x", f"Bearer: {good}", f"Bearer{good}",
        f"Token {good}", "Bearer", f"Bearer {good},",
    ]  # fmt: skip
    for header in malformed:
        reply = await api.call("POST", "/v1/tickets", body=body, headers={"Authorization": header})
        assert reply.status == 401 and reply.body["error"] == "bad_token", (header, reply.body)
        assert "Bearer <token>" in reply.body["reason"]
    lower = await api.call("POST", "/v1/tickets", body=body, headers={"Authorization": f"bearer {good}"})
    assert lower.status == 201, lower.body


async def test_bad_bodies_are_json_400s(api: Api) -> None:
    cases: list[tuple[str, bytes, str]] = [
        ("/v1/guests", b"", "bad_json"),
        ("/v1/guests", b"{not json", "bad_json"),
        ("/v1/guests", b"\xff\xfe", "bad_json"),
        ("/v1/guests", b"[1, 2]", "bad_body"),
        ("/v1/guests", b"{}", "bad_name"),
        ("/v1/guests", b'{"name": 7}', "bad_name"),
        ("/v1/guests", b'{"name": "   "}', "bad_name"),
        ("/v1/guests", b'{"name": "' + b"x" * 33 + b'"}', "bad_name"),
        ("/v1/guests", b'{"name": "tab\\there"}', "bad_name"),
        ("/v1/players", b'{"name": "bob"}', "bad_password"),
        ("/v1/sessions", b'{"name": "bob", "password": 12345678}', "bad_password"),
    ]
    for path, raw, code in cases:
        reply = await api.call("POST", path, raw=raw)
        assert reply.status == 400, (path, raw, reply.body)
        assert reply.body["error"] == code and reply.body["reason"], (raw, reply.body)


async def test_a_token_used_again_is_a_cache_hit_and_still_checked(api: Api) -> None:
    """The second use of a token skips its HMAC (counted); an altered copy is still refused."""
    token = (await api.guest())["token"]
    for _ in range(3):
        (await api.call("POST", "/v1/presence", token=token, body={"region": "local"})).ok(202)
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    reply = await api.call("POST", "/v1/presence", token=tampered, body={"region": "local"})
    assert reply.status == 401 and reply.body["error"] == "bad_token", reply.body
    text = (await api.call("GET", "/metrics")).body
    assert 'arena_lobby_token_cache_lookups_total{result="hit"} 2.0' in text, text
    assert "arena_lobby_token_cache_entries 1.0" in text
