"""A race's journal held encoded: the items it hands the tick are what ``encode_entries`` made of
the same entries, byte for byte, and replay the same (pure: no I/O)."""

import random

from arena.ids import PlayerId
from gameserver.checkpoint import decode_item, encode_entries, encode_entry, rebuild
from gameserver.fairplay import FairPlayLimits
from gameserver.journal import Journal
from gameserver.scoring import ScoringLimits
from tests.gameserver.test_checkpoint import SETTINGS, T0, checkpoint_of, journalled_race, type_some

ENTRIES: list[tuple[object, ...]] = [
    ("j", "p1", "ada", T0),
    ("j", "p2", "Zoë ✓ 名前", T0 + 5),  # not ASCII: still msgpack
    ("c", T0 + 5, T0 + 3005, T0 + 63005),
    ("i", "p1", 1, T0 + 3300, "the", [3100, 3180, 3260], None),  # no round trip measured yet
    ("i", "p2", 1, T0 + 3310, "", [], 62),
    ("i", "p1", 2, T0 + 3560, "x" * 300, list(range(2**31, 2**31 + 300)), 2**40),  # wide ints, a long str
    ("l", "p2", T0 + 4000),
]


def test_the_item_is_what_encode_entries_makes_of_the_same_entries() -> None:
    for n in (0, 1, 15, 16, 17, 70_000):  # msgpack's array headers: fixarray, array16, array32
        journal = Journal()
        entries = [ENTRIES[k % len(ENTRIES)] for k in range(n)]
        journal.extend(entries)
        assert len(journal) == n
        items = journal.take()
        assert items == ([(encode_entries(entries), n)] if n else [])
        assert len(journal) == 0 and journal.take() == []


def test_a_races_journal_replays_to_the_race() -> None:
    race = journalled_race(2)
    race.join(PlayerId("p1"), "ada", T0 + 10)
    race.join(PlayerId("p2"), "bob", T0 + 20)
    assert race.start_at is not None
    race.advance(race.start_at)
    rng = random.Random(3)
    type_some(race, "p1", 30, rng, errors=True)
    type_some(race, "p2", 20, rng)
    assert race.journal is not None
    (item, n) = race.journal.items()[0]
    assert n == len(race.journal) and len(race.journal.items()) == 1
    entries = [tuple(e) for e in decode_item(item)]
    assert item == encode_entries(entries)  # what the tick appended before, from tuples
    rebuilt = rebuild(checkpoint_of(race), SETTINGS, ScoringLimits(), FairPlayLimits())
    for pid, racer in race.racers.items():
        assert rebuilt.racers[pid].typing.position == racer.typing.position
        assert rebuilt.racers[pid].seq == racer.seq


def test_an_entry_msgpack_refuses_is_its_own_json_item_in_order() -> None:
    bad = ("j", "p3", "bad \ud800 name", T0 + 7)  # a lone surrogate: not UTF-8
    journal = Journal()
    journal.extend([ENTRIES[0], ENTRIES[1], bad, bad, ENTRIES[6]])
    assert len(journal) == 5
    items = journal.items()
    assert items == [
        (encode_entries(ENTRIES[:2]), 2),
        (encode_entry(bad), 1),
        (encode_entry(bad), 1),
        (encode_entries([ENTRIES[6]]), 1),
    ]
    assert [e for item, _ in items for e in decode_item(item)] == [
        list(e) for e in (ENTRIES[0], ENTRIES[1], bad, bad, ENTRIES[6])
    ]
    assert journal.take() == items and len(journal) == 0
    journal.append(bad)  # first of a fresh journal
    assert journal.take() == [(encode_entry(bad), 1)]
