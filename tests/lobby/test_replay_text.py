"""lobby.replay_text: a racer's text at any instant, without any server."""

from __future__ import annotations

from lobby.replay_text import BACKSPACE_KEY, RacerText, ReplayKey, duration_ms, text_at, texts_at

B = BACKSPACE_KEY


def keys(*pairs: tuple[int, str]) -> list[ReplayKey]:
    return [ReplayKey(t, k) for t, k in pairs]


TYPO = keys((100, "t"), (200, "h"), (300, "x"), (400, B), (500, "e"))


def test_text_at_each_instant_shows_the_mistake_until_it_is_deleted() -> None:
    assert text_at(TYPO, 0, "the") == RacerText("", 0, 0, False)
    assert text_at(TYPO, 100, "the") == RacerText("t", 1, 1, False)  # a key at exactly t counts
    assert text_at(TYPO, 350, "the") == RacerText("thx", 2, 3, False)
    assert text_at(TYPO, 450, "the") == RacerText("th", 2, 4, False)
    assert text_at(TYPO, 10_000, "the") == RacerText("the", 3, 5, True)


def test_misaligned_keys_stay_wrong_and_backspace_into_correct_text() -> None:
    # After "x" the right letter "h" is still wrong (misaligned), as the server judges it.
    log = keys((1, "t"), (2, "x"), (3, "h"), (4, B), (5, B), (6, B), (7, "t"))
    assert text_at(log, 3, "the") == RacerText("txh", 1, 3, False)
    assert text_at(log, 6, "the") == RacerText("", 0, 6, False)
    assert text_at(log, 7, "the") == RacerText("t", 1, 7, False)


def test_backspace_on_an_empty_text_does_nothing() -> None:
    assert text_at(keys((1, B), (2, B), (3, "a")), 3, "ab") == RacerText("a", 1, 3, False)


def test_wrong_keys_past_the_servers_cap_never_reach_the_text() -> None:
    log = keys(*((i, "z") for i in range(1, 6)), (6, B))
    assert text_at(log, 5, "abc", max_error_run=3).text == "zzz"
    assert text_at(log, 6, "abc", max_error_run=3) == RacerText("zz", 0, 6, False)


def test_without_the_passage_every_character_is_kept_and_nothing_judged() -> None:
    assert text_at(TYPO, 350) == RacerText("thx", None, 3, False)
    assert text_at(TYPO, 500) == RacerText("the", None, 5, False)


def test_texts_at_and_duration_cover_every_racer() -> None:
    racers = {"ada": TYPO, "bob": keys((50, "t"), (900, "h")), "cy": []}
    now = texts_at(racers, 250, "the")
    assert {who: t.text for who, t in now.items()} == {"ada": "th", "bob": "t", "cy": ""}
    assert duration_ms(racers) == 900
    assert duration_ms({"cy": []}) == 0
