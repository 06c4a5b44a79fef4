"""Typing tests without servers: modes, the word stream, and a test's race judged on explicit clocks."""

import itertools
import random

import pytest

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import Finish, PlayerStatus, RaceState, RaceType
from arena.typing_tests import MODE_NAMES, ModeType, TypingMode, TypingTestRecord
from gameserver.checkpoint import definition_of, encode_definition, rebuild
from gameserver.fairplay import FairPlayLimits
from gameserver.journal import Journal
from gameserver.passages import Corpus, PassageKind
from gameserver.race import Race
from gameserver.scoring import ScoringLimits, wpm
from gameserver.settings import RaceSettings
from gameserver.typing_test import TestContent, time_stream_chars, vocabulary, word_stream

T0 = 1_000_000
SETTINGS = RaceSettings(countdown_s=3, wait_timeout_s=10, grace_s=15)
CORPUS = Corpus.load()
CONTENT = TestContent(CORPUS, FairPlayLimits().max_wpm)


def test_modes_are_the_issue_s_and_nothing_else() -> None:
    assert MODE_NAMES == (
        "time-15", "time-30", "time-60", "time-120", "words-10", "words-25", "words-50", "words-100", "quote",
    )  # fmt: skip
    assert TypingMode.parse("time-15") == TypingMode(ModeType.TIME, 15)
    assert TypingMode.parse("time-15").seconds == 15 and TypingMode.parse("words-25").seconds is None
    for bad in ("time-16", "words-0", "quote-1", "", "TIME-15", None, 15, ["time-15"], "time-15 "):
        with pytest.raises(ValueError, match="mode must be one of"):
            TypingMode.parse(bad)
    with pytest.raises(ValueError):
        TypingMode(ModeType.WORDS, 11)


def test_word_streams_are_seeded_sized_and_from_the_corpus() -> None:
    words = vocabulary(CORPUS)
    assert len(words) > 500 and all(w.isalpha() and w.islower() and 2 <= len(w) <= 9 for w in words)
    ten = CONTENT.passage(TypingMode.parse("words-10"), "race-a", random.Random(1))
    assert len(ten.text.split()) == 10 and ten.id == "race-a"
    assert CONTENT.passage(TypingMode.parse("words-10"), "race-a", random.Random(2)).text == ten.text  # by id
    assert CONTENT.passage(TypingMode.parse("words-10"), "race-b", random.Random(1)).text != ten.text
    for seconds in (15, 120):
        text = CONTENT.passage(TypingMode(ModeType.TIME, seconds), "race-c", random.Random(1)).text
        # Nobody under the fair-play ceiling reaches the end before the time.
        assert len(text) >= time_stream_chars(seconds, 250.0) > 250 * 5 * seconds / 60
    stream = word_stream(("ab", "cd"), random.Random(3), count=50).split()
    assert all(a != b for a, b in itertools.pairwise(stream))
    quote = CONTENT.passage(TypingMode.parse("quote"), "race-d", random.Random(4))
    assert CORPUS.by_id(quote.id) == quote
    quick_only = Corpus([p for p in CORPUS if p.kind is PassageKind.QUICK])
    picked = {  # a corpus without standard passages still gives every quote test one
        TestContent(quick_only, 250.0).passage(TypingMode.parse("quote"), "q", random.Random(seed)).kind
        for seed in range(20)
    }
    assert picked == {PassageKind.QUICK}


def test_a_generated_text_is_rebuilt_from_its_id_and_length() -> None:
    """What the lobby does for a stored test whose content left the 24 h cache (its speed chart)."""
    for mode in ("words-10", "words-100", "time-15", "time-120"):
        text = CONTENT.passage(TypingMode.parse(mode), "race-e", random.Random(5)).text
        assert CONTENT.rebuilt(TypingMode.parse(mode), "race-e", len(text)) == text
        slower = TestContent(CORPUS, 100.0)  # another fair-play ceiling: a shorter stream, same words
        assert slower.rebuilt(TypingMode.parse(mode), "race-e", len(text)) == text
    assert CONTENT.rebuilt(TypingMode.parse("time-15"), "race-e", 7) is None  # not this stream's length
    assert CONTENT.rebuilt(TypingMode.parse("quote"), "race-e", 200) is None  # a quote is the corpus's


def a_test(mode: str, text_id: str = "race-1") -> Race:
    test = TypingMode.parse(mode)
    return Race(
        race_id=RaceId(text_id),
        node_id=NodeId("n1"),
        race_type=RaceType.CUSTOM,
        passage=CONTENT.passage(test, text_id, random.Random(0)),
        seats={PlayerId("p1")},
        now=T0,
        settings=SETTINGS,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
        test=test,
    )


def type_for(race: Race, until_ms: int, key_ms: int = 200) -> int:
    """Type the text correctly, one key every ``key_ms`` (60 WPM at 200), batches of 500 ms that
    arrive 20 ms after their last key, until ``until_ms`` after the start. Returns keys typed."""
    assert race.start_at is not None
    racer = race.racers[PlayerId("p1")]
    rng = random.Random(7)
    t, i, seq = 0, 0, 0
    while t + key_ms < until_ms and not racer.done:
        keys, times = [], []
        batch_end = min(t + 500, until_ms)
        while t + key_ms <= batch_end and i < len(race.passage.text):
            t += key_ms + rng.randint(-40, 40)
            keys.append(race.passage.text[i])
            times.append(t)
            i += 1
        if not keys:
            break
        seq += 1
        race.apply_input(racer, seq, "".join(keys), times, race.start_at + times[-1] + 20)
    return i


def test_a_time_test_ends_at_its_time_and_scores_the_whole_time() -> None:
    race = a_test("time-15")
    race.join(PlayerId("p1"), "ada", T0)  # the one seat: the countdown begins at once
    race.advance(T0 + 3000)
    assert race.state is RaceState.RUNNING and race.ends_at == T0 + 3000 + 15_000
    typed = type_for(race, 12_000)  # stops 3 s early: the pause still counts
    race.advance(T0 + 3000 + 14_999)
    assert race.state is RaceState.RUNNING
    race.advance(T0 + 3000 + 15_000)
    assert race.state is RaceState.FINISHED and race.end_reason == "time up"
    racer = race.racers[PlayerId("p1")]
    assert racer.status is PlayerStatus.FINISHED and not racer.flags
    [finish] = [m for m in race.outgoing if isinstance(m, Finish)]
    assert finish.elapsed_ms == 15_000 and finish.place == 1
    record = race.outbox_record()
    assert isinstance(record, TypingTestRecord)
    assert (record.kind, record.mode, record.content_id, record.status, record.valid) == (
        "test", "time-15", "race-1", "finished", True,
    )  # fmt: skip
    assert record.elapsed_ms == 15_000 and record.correct_chars == typed
    assert record.wpm == wpm(typed, 15_000) and 40 < record.wpm < 60
    assert len(record.keys) == typed and record.counts
    assert TypingTestRecord.from_bytes(record.to_bytes()) == record


def test_a_word_test_ends_when_its_words_are_typed() -> None:
    race = a_test("words-10")
    race.join(PlayerId("p1"), "ada", T0)
    race.advance(T0 + 3000)
    assert race.time_limit_ms() >= 60_000  # not a time mode: the custom race's limit
    typed = type_for(race, 120_000)
    assert typed == len(race.passage.text)
    race.advance(T0 + 3000 + 100_000)
    assert race.state is RaceState.FINISHED
    record = race.outbox_record()
    assert isinstance(record, TypingTestRecord) and record.status == "finished" and record.mode == "words-10"
    assert record.elapsed_ms < 60_000 and record.wpm > 40


def test_a_test_nobody_typed_is_a_dnf_and_never_counts() -> None:
    race = a_test("time-15")
    race.join(PlayerId("p1"), "ada", T0)
    race.advance(T0 + 3000)
    race.advance(T0 + 18_000)
    record = race.outbox_record()
    assert isinstance(record, TypingTestRecord)
    assert (race.state, record.status, record.wpm, record.counts) == (RaceState.FINISHED, "dnf", 0.0, False)
    never = a_test("words-10", "race-2")
    never.advance(T0 + 10_000)  # nobody came: aborted, the seat's player named
    empty = never.outbox_record()
    assert isinstance(empty, TypingTestRecord)
    assert (empty.state, empty.player_id, empty.status, empty.keys) == ("aborted", "p1", "dnf", "")


def test_a_race_without_a_test_still_writes_a_match_record() -> None:
    race = a_test("words-10")
    race.test = None
    race.join(PlayerId("p1"), "ada", T0)
    race.abort(T0 + 1, "stop")
    assert race.outbox_record().kind == "race"


def test_a_checkpointed_test_rebuilds_as_a_test() -> None:
    """A dead node's test is finalised by a reaper from its checkpoint: still a test record."""
    race = a_test("time-15")
    race.journal = Journal()
    race.join(PlayerId("p1"), "ada", T0)
    race.advance(T0 + 3000)
    type_for(race, 5_000)
    items = [encode_definition(definition_of(race, "local")), *(item for item, _ in race.journal.items())]
    rebuilt = rebuild(items, SETTINGS, ScoringLimits(), FairPlayLimits())
    assert rebuilt.test == TypingMode.parse("time-15") and rebuilt.passage == race.passage
    rebuilt.abort(T0 + 9_000, "node lost")
    record = rebuilt.outbox_record()
    assert isinstance(record, TypingTestRecord)
    assert (record.state, record.mode, record.keys) == (
        "aborted",
        "time-15",
        race.racers[PlayerId("p1")].typing.log_keys(),
    )
    plain = a_test("words-10", "race-9")
    plain.test = None  # a race's definition carries no mode, and reads back without one
    assert (
        rebuild(
            [encode_definition(definition_of(plain, "local"))], SETTINGS, ScoringLimits(), FairPlayLimits()
        ).test
        is None
    )
