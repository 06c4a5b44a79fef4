"""What a typing test's player types: a word stream, or a quote of the library (pure, no I/O).

Time and word modes type lowercase words drawn from the corpus's own vocabulary, seeded by the
test id, so a test's text can be rebuilt from its id. A time mode's stream is long enough that
nobody under the fair-play ceiling (``FairPlayLimits.max_wpm``) can reach its end before the
time: a faster typist is flagged anyway. A quote is a passage of the library (quick or standard).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from arena.typing_tests import ModeType, TypingMode
from gameserver.passages import Corpus, Passage, PassageKind

MIN_WORD, MAX_WORD = 2, 9  # letters: what typing sites' word lists hold
_WORD = re.compile(r"[a-z]+")


def vocabulary(passages: Iterable[Passage]) -> tuple[str, ...]:
    """The distinct lowercase words of the passages, sorted (a stable order for seeded picks)."""
    words = {w for p in passages for w in _WORD.findall(p.text.lower()) if MIN_WORD <= len(w) <= MAX_WORD}
    return tuple(sorted(words))


def time_stream_chars(seconds: int, max_wpm: float) -> int:
    """Characters a time mode's stream needs: the fair-play ceiling's WPM for the whole time
    (a WPM "word" is 5 characters), plus a line of slack."""
    return int(max_wpm * 5 * seconds / 60) + 50


def word_stream(
    words: tuple[str, ...], rng: random.Random, *, count: int | None = None, chars: int = 0
) -> str:
    """``count`` words, or as many as reach ``chars`` characters; never the same word twice in a row."""
    if not words:
        raise ValueError("no words to draw from")
    out: list[str] = []
    length = -1
    while (count is not None and len(out) < count) or (count is None and length < chars):
        word = rng.choice(words)
        if out and word == out[-1] and len(words) > 1:
            continue
        out.append(word)
        length += len(word) + 1
    return " ".join(out)


class TestContent:
    """Makes each test's passage on a node; built once from the node's corpus."""

    __test__ = False  # not a pytest class

    def __init__(self, corpus: Corpus, max_wpm: float) -> None:
        self._corpus = corpus
        self._words = vocabulary(corpus)
        self._quote_kinds = corpus.kinds()
        self._max_wpm = max_wpm

    def passage(self, mode: TypingMode, test_id: str, rng: random.Random) -> Passage:
        """The passage of a new test. Generated words carry the test id as their passage id."""
        if mode.type is ModeType.QUOTE:
            # Only kinds the corpus has: a corpus of quick passages alone must not fail every other quote.
            kinds = [k for k in (PassageKind.QUICK, PassageKind.STANDARD) if self._quote_kinds.get(k)]
            return self._corpus.pick(rng.choice(kinds or [PassageKind.QUICK]).value, rng)
        seeded = random.Random(test_id)
        if mode.type is ModeType.WORDS:
            text = word_stream(self._words, seeded, count=mode.amount)
        else:
            assert mode.seconds is not None
            text = word_stream(self._words, seeded, chars=time_stream_chars(mode.seconds, self._max_wpm))
        return Passage(id=test_id, kind=PassageKind.CUSTOM, text=text, source=f"typing test {mode.name}")

    def rebuilt(self, mode: TypingMode, test_id: str, chars: int) -> str | None:
        """A generated test's text again, from its id and stored length (``passage_chars``): the
        seeded stream is the same however long it was asked to be, so it stops at the same word.
        None for a quote, or when the corpus changed since (the length does not match)."""
        if mode.type is ModeType.QUOTE or chars <= 0:
            return None
        seeded = random.Random(test_id)
        count = mode.amount if mode.type is ModeType.WORDS else None
        text = word_stream(self._words, seeded, count=count, chars=chars)
        return text if len(text) == chars else None
