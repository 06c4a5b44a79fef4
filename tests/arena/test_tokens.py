"""Tokens: signed, expiring, kind-checked; a forged or altered token never verifies."""

import pytest

from arena.ids import NodeId, PlayerId, RaceId
from arena.tokens import PlayerTokenCache, TokenError, TokenSigner

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


# ---- PlayerTokenCache ------------------------------------------------------------------


def test_cache_returns_the_same_player_and_counts_hits() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    cache = PlayerTokenCache(signer, max_size=8)
    token = signer.sign_player(PlayerId("p1"), "ada", ttl_s=60, guest=True)
    first, second = cache.verify_player(token), cache.verify_player(token)
    assert first == second == signer.verify_player(token)
    assert cache.stats() == (1, 1, 1)


def test_cached_token_still_expires_on_time() -> None:
    clock = FakeClock(1000)
    signer = TokenSigner(SECRET, clock)
    cache = PlayerTokenCache(signer, max_size=8)
    token = signer.sign_player(PlayerId("p1"), "ada", ttl_s=10, guest=True)
    cache.verify_player(token)
    clock.now = 1010  # the expiry second itself is still valid, as uncached
    assert cache.verify_player(token).player_id == "p1"
    clock.now = 1011
    with pytest.raises(TokenError, match="expired") as info:
        cache.verify_player(token)
    assert info.value.expired
    with pytest.raises(TokenError, match="expired"):  # and every time after
        cache.verify_player(token)


def test_bad_tokens_are_never_cached_and_a_changed_byte_is_checked() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    cache = PlayerTokenCache(signer, max_size=8)
    good = signer.sign_player(PlayerId("p1"), "ada", ttl_s=60, guest=True)
    cache.verify_player(good)
    version, body, mac = good.split(".")
    altered_mac = f"{version}.{body}.{'A' if mac[0] != 'A' else 'B'}{mac[1:]}"
    join = signer.sign_join(PlayerId("p1"), "ada", RaceId("r1"), NodeId("n1"), ttl_s=60)
    forged = TokenSigner(b"another-secret-of-16+", FakeClock(1000)).sign_player(
        PlayerId("p1"), "ada", ttl_s=60, guest=True
    )
    for bad in (altered_mac, good + "A", join, forged, "garbage"):
        for _ in range(2):  # a second try is not a hit either
            with pytest.raises(TokenError):
                cache.verify_player(bad)
    assert cache.stats()[2] == 1  # only the good token is kept


def test_cache_is_bounded_and_can_be_off() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    cache = PlayerTokenCache(signer, max_size=4)
    tokens = [signer.sign_player(PlayerId(f"p{i}"), "ada", ttl_s=60, guest=True) for i in range(10)]
    assert [cache.verify_player(token).player_id for token in tokens] == [f"p{i}" for i in range(10)]
    assert cache.stats()[2] == 4
    off = PlayerTokenCache(signer, max_size=0)
    assert off.verify_player(tokens[0]).player_id == "p0"
    assert off.stats() == (0, 0, 0)


def test_entries_unused_for_the_idle_time_are_dropped() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    now = [0.0]
    cache = PlayerTokenCache(signer, max_size=100, idle_s=300.0, clock=lambda: now[0])
    tokens = [signer.sign_player(PlayerId(f"p{i}"), "ada", ttl_s=3600, guest=True) for i in range(6)]
    for token in tokens[:5]:
        cache.verify_player(token)
    now[0] = 200.0
    cache.verify_player(tokens[0])  # a heartbeat keeps p0 in
    assert cache.stats() == (1, 5, 5)
    now[0] = 400.0  # p1-p4 unused for 400 s, p0 for 200 s
    cache.verify_player(tokens[5])
    assert cache.stats()[2] == 2  # p0 and p5: the players active lately
    assert cache.verify_player(tokens[0]).player_id == "p0" and cache.stats()[0] == 2
    assert cache.verify_player(tokens[1]).player_id == "p1"  # dropped, so verified again: a miss
    assert cache.stats() == (2, 7, 3)


def test_pruning_is_bounded_per_call() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    now = [0.0]
    cache = PlayerTokenCache(signer, max_size=100, idle_s=10.0, clock=lambda: now[0])
    tokens = [signer.sign_player(PlayerId(f"p{i}"), "ada", ttl_s=3600, guest=True) for i in range(30)]
    for token in tokens[:20]:
        cache.verify_player(token)
    now[0] = 100.0
    cache.verify_player(tokens[20])
    assert cache.stats()[2] == 21 - PlayerTokenCache.PRUNE_PER_CALL
    for token in tokens[21:24]:
        cache.verify_player(token)
    assert cache.stats()[2] == 4  # the idle 20 are gone within a few calls


def test_a_hit_skips_the_prune_until_an_entry_can_be_idle() -> None:
    signer = TokenSigner(SECRET, FakeClock(1000))
    now = [0.0]
    cache = PlayerTokenCache(signer, max_size=100, idle_s=10.0, clock=lambda: now[0])
    a, b, c = (signer.sign_player(PlayerId(f"p{i}"), "ada", ttl_s=3600, guest=True) for i in range(3))
    cache.verify_player(a)  # t=0: nothing can be idle before t=10
    now[0] = 5.0
    cache.verify_player(b)
    now[0] = 6.0
    cache.verify_player(a)  # a moves behind b: b (last used at 5) is now the oldest
    now[0] = 12.0
    cache.verify_player(c)  # due (10): b is 7 s idle, a 6: nothing dropped, next due at 15
    assert cache.stats()[2] == 3
    now[0] = 15.5
    cache.verify_player(c)  # b idle 10.5 s: dropped; a (idle 9.5 s) stays
    assert cache.stats()[2] == 2
    assert cache.verify_player(a).player_id == "p0"
    assert cache.stats() == (3, 3, 2)  # hits: a, c, a; misses: a, b, c
