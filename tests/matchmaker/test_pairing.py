"""Pairing rules, pure: windows widen, fewer players after the fallback, neighbours later, solo last."""

import random

from arena.tickets import QueuedTicket, TicketId
from matchmaker.pairing import Group, GroupKind, PairingRules, form_groups

RULES = PairingRules(
    min_players=2,
    max_players=4,
    base_window=50.0,
    widen_per_s=10.0,
    max_window=400.0,
    fallback_wait_ms=3000,
    neighbour_wait_ms=6000,
    max_wait_ms=15000,
)
NOW = 1_000_000


def t(
    name: str,
    rating: float,
    waited_s: float = 0.0,
    region: str = "eu",
    language: str | None = None,
    player: str | None = None,
) -> QueuedTicket:
    return QueuedTicket(
        id=TicketId(f"quick.{region}.{name}"),
        player_id=player or f"p-{name}",
        name=name,
        rating=rating,
        language=language,
        race_type="quick",
        region=region,
        enqueued_at=NOW - int(waited_s * 1000),
    )


def names(groups: list[Group]) -> list[list[str]]:
    return [[x.name for x in g.tickets] for g in groups]


def test_full_group_of_close_ratings_forms_at_once() -> None:
    tickets = [t("a", 1500), t("b", 1510), t("c", 1490), t("d", 1530), t("far", 1900)]
    groups = form_groups(tickets, [], RULES, NOW)
    assert len(groups) == 1 and groups[0].kind is GroupKind.FULL
    assert sorted(names(groups)[0]) == ["a", "b", "c", "d"]


def test_not_full_waits_before_the_fallback() -> None:
    assert form_groups([t("a", 1500, 2.9), t("b", 1510, 2.0)], [], RULES, NOW) == []


def test_fewer_players_after_the_fallback_wait() -> None:
    groups = form_groups([t("a", 1500, 3.0), t("b", 1510, 0.5)], [], RULES, NOW)
    assert names(groups) == [["a", "b"]] and groups[0].kind is GroupKind.FALLBACK


def test_window_widens_with_the_wait() -> None:
    # 200 apart: too far for a fresh window (50), inside after 15 s (50 + 150)... but by then
    # solo is allowed too; the anchor still prefers a partner inside its window.
    assert form_groups([t("a", 1500, 4.0), t("b", 1700)], [], RULES, NOW) == []  # window 90
    groups = form_groups([t("a", 1500, 14.0), t("b", 1640)], [], RULES, NOW)  # window 190
    assert names(groups) == [["a", "b"]]


def test_window_is_capped() -> None:
    groups = form_groups([t("a", 1000, 14.9), t("b", 1500)], [], RULES, NOW)  # window 199
    assert groups == []
    assert PairingRules(max_window=120.0).window(60_000) == 120.0


def test_closest_ratings_are_chosen() -> None:
    tickets = [t("anchor", 1500, 5.0), t("x", 1540), t("y", 1460), t("z", 1501), t("w", 1580), t("v", 1450)]
    groups = form_groups(tickets, [], RULES, NOW)
    assert sorted(names(groups)[0]) == ["anchor", "x", "y", "z"]


def test_oldest_ticket_is_served_first() -> None:
    # "old" and "new" both want the one partner "p"; the older anchor gets it.
    tickets = [t("new", 1700, 3.5), t("old", 1480, 9.0), t("p", 1615)]
    groups = form_groups(tickets, [], RULES, NOW)
    assert names(groups) == [["old", "p"]]


def test_neighbour_only_after_the_neighbour_wait() -> None:
    home = [t("a", 1500, 7.0)]
    young = [t("us1", 1500, 5.9, region="us")]
    assert form_groups(home, young, RULES, NOW) == []
    old = [t("us1", 1500, 6.0, region="us")]
    groups = form_groups(home, old, RULES, NOW)
    assert names(groups) == [["a", "us1"]]
    assert groups[0].kind is GroupKind.NEIGHBOUR and groups[0].region == "eu"


def test_home_partners_come_before_neighbours() -> None:
    home = [t("a", 1500, 4.0), t("b", 1530)]
    foreign = [
        t("us1", 1500, 8.0, region="us"),
        t("us2", 1501, 8.0, region="us"),
        t("us3", 1502, 8.0, region="us"),
    ]
    groups = form_groups(home, foreign, RULES, NOW)
    assert names(groups)[0][:2] == ["a", "b"] and len(groups[0].tickets) == 4


def test_solo_after_the_max_wait() -> None:
    assert form_groups([t("a", 1500, 14.9)], [], RULES, NOW) == []
    groups = form_groups([t("a", 1500, 15.0)], [], RULES, NOW)
    assert names(groups) == [["a"]] and groups[0].kind is GroupKind.SOLO


def test_languages_do_not_mix() -> None:
    tickets = [t("en1", 1500, 4.0, language="en"), t("fr", 1500, language="fr"), t("any", 1510)]
    groups = form_groups(tickets, [], RULES, NOW)
    assert names(groups) == [["en1", "any"]]


def test_same_player_never_twice_in_a_race() -> None:
    tickets = [t("a", 1500, 4.0, player="same"), t("b", 1500, player="same")]
    assert form_groups(tickets, [], RULES, NOW) == []


def test_no_ticket_twice_over_a_large_random_pool() -> None:
    rng = random.Random(7)
    home = [t(f"h{i}", rng.gauss(1500, 300), rng.uniform(0, 20)) for i in range(2000)]
    foreign = [t(f"f{i}", rng.gauss(1500, 300), rng.uniform(0, 20), region="us") for i in range(300)]
    groups = form_groups(home, foreign, RULES, NOW)
    seen = [x.id for g in groups for x in g.tickets]
    assert len(seen) == len(set(seen))
    for g in groups:
        anchor = g.anchor
        waited = NOW - anchor.enqueued_at
        assert len(g.tickets) >= RULES.needed(waited) and len(g.tickets) <= RULES.max_players
        assert all(abs(x.rating - anchor.rating) <= RULES.window(waited) for x in g.tickets)
        assert all(NOW - x.enqueued_at >= RULES.neighbour_wait_ms for x in g.tickets if x.region != "eu")
    # Everyone past the max wait got a race.
    placed = set(seen)
    assert all(x.id in placed for x in home if NOW - x.enqueued_at >= RULES.max_wait_ms)
