"""Tokens: signed, expiring, kind-checked; a forged or altered token never verifies."""

import pytest

from arena.ids import NodeId, PlayerId, RaceId
from arena.tokens import TokenError, TokenSigner

SECRET = b"0123456789abcdef0123"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_player_token_round_trip() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    token = signer.sign_player(PlayerId("p1"), "ada", ttl_s=60, guest=True)
    got = signer.verify_player(token)
    assert (got.player_id, got.name, got.guest, got.expires_at) == ("p1", "ada", True, 1060)


def test_join_ticket_round_trip() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    ticket = signer.verify_join(signer.sign_join(PlayerId("p1"), "ada", RaceId("r1"), NodeId("n1"), ttl_s=5))
    assert (ticket.player_id, ticket.race_id, ticket.node_id) == ("p1", "r1", "n1")


def test_expired_token_is_refused_as_expired() -> None:
    clock = FakeClock(1000)
    signer = TokenSigner(SECRET, clock)
    token = signer.sign_player(PlayerId("p1"), "ada", ttl_s=10, guest=True)
    clock.now = 1011
    with pytest.raises(TokenError, match="expired") as info:
        signer.verify_player(token)
    assert info.value.expired


def test_forged_and_altered_tokens_are_refused() -> None:
    signer = TokenSigner(SECRET)
    other = TokenSigner(b"another-secret-of-16+")
    forged = other.sign_player(PlayerId("p1"), "ada", ttl_s=60, guest=True)
    with pytest.raises(TokenError, match="signature"):
        signer.verify_player(forged)
    good = signer.sign_player(PlayerId("p1"), "ada", ttl_s=60, guest=True)
    version, body, mac = good.split(".")
    altered = f"{version}.{body[:-2]}xx.{mac}"
    with pytest.raises(TokenError):
        signer.verify_player(altered)
    for junk in ("", "v1", "v1.a.b.c", "v2.x.y", "v1.!!.??"):
        with pytest.raises(TokenError, match="malformed|signature"):
            signer.verify_player(junk)


def test_kinds_are_not_interchangeable() -> None:
    signer = TokenSigner(SECRET)
    player = signer.sign_player(PlayerId("p1"), "ada", ttl_s=60, guest=False)
    with pytest.raises(TokenError, match="not a join token"):
        signer.verify_join(player)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner(b"short")
