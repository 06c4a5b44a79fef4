"""The packaged passage corpus, picking, and custom race text."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from gameserver.passages import (
    AWKWARD_CHARS,
    DATA_FILE,
    WORD_RANGES,
    Corpus,
    Passage,
    PassageError,
    PassageKind,
    custom_passage,
    validate_custom_text,
)

SOURCE = "original text, Typogram Arena authors, CC0"


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus.load()


def passage(pid: str, kind: PassageKind, words: int, word: str = "word") -> Passage:
    return Passage(id=pid, kind=kind, text=" ".join([word] * words), source="test")


def minimal(*extra: Passage) -> Corpus:
    """A corpus with one valid passage per kind, plus the given ones."""
    base = [
        passage("q1", PassageKind.QUICK, 30),
        passage("s1", PassageKind.STANDARD, 80),
        passage("m1", PassageKind.MARATHON, 250),
    ]
    return Corpus([*base, *extra])


# --- the packaged corpus ---------------------------------------------------


def test_packaged_corpus_loads_and_validates(corpus: Corpus) -> None:
    corpus.validate()
    assert len(corpus) >= 200
    assert Corpus.load(DATA_FILE).kinds() == corpus.kinds()


def test_packaged_corpus_counts_per_kind(corpus: Corpus) -> None:
    counts = corpus.kinds()
    assert set(counts) == {PassageKind.QUICK, PassageKind.STANDARD, PassageKind.MARATHON}
    assert counts[PassageKind.QUICK] >= 110
    assert counts[PassageKind.STANDARD] >= 65
    assert counts[PassageKind.MARATHON] >= 20
    assert sum(counts.values()) == len(corpus)


def test_packaged_passages_follow_the_rules(corpus: Corpus) -> None:
    ids = [p.id for p in corpus]
    assert len(ids) == len(set(ids))
    prefix = {PassageKind.QUICK: "q", PassageKind.STANDARD: "s", PassageKind.MARATHON: "m"}
    for p in corpus:
        low, high = WORD_RANGES[p.kind]
        assert low <= p.words <= high, p.id
        assert p.id.startswith(prefix[p.kind]), p.id
        assert all(32 <= ord(c) <= 126 for c in p.text), p.id
        assert not AWKWARD_CHARS.intersection(p.text), p.id
        assert p.text == p.text.strip(), p.id
        assert "  " not in p.text, p.id
        assert p.source == SOURCE, p.id
        assert corpus.by_id(p.id) is p


def test_packaged_texts_are_distinct(corpus: Corpus) -> None:
    openings = [" ".join(p.text.split()[:6]).lower() for p in corpus]
    assert len(openings) == len(set(openings))


def test_data_file_is_one_json_object_per_line() -> None:
    lines = DATA_FILE.read_text(encoding="ascii").splitlines()
    for line in lines:
        row = json.loads(line)
        assert set(row) == {"id", "kind", "text", "source"}
        assert row["kind"] in {"quick", "standard", "marathon"}


# --- lookup and picking ----------------------------------------------------


def test_by_id_unknown_is_passage_error(corpus: Corpus) -> None:
    assert corpus.by_id("q001").kind is PassageKind.QUICK
    with pytest.raises(PassageError, match="nope"):
        corpus.by_id("nope")


@pytest.mark.parametrize("kind", ["quick", "standard", "marathon"])
def test_pick_returns_requested_kind(corpus: Corpus, kind: str) -> None:
    rng = random.Random(1)
    for _ in range(50):
        assert corpus.pick(kind, rng).kind == kind
    assert corpus.pick(PassageKind(kind), rng).kind == kind


def test_pick_is_deterministic_for_a_seed(corpus: Corpus) -> None:
    first = [corpus.pick("quick", random.Random(42)).id for _ in range(3)]
    assert len(set(first)) == 1
    a, b = random.Random(7), random.Random(7)
    seq_a = [corpus.pick("standard", a).id for _ in range(20)]
    seq_b = [corpus.pick("standard", b).id for _ in range(20)]
    assert seq_a == seq_b
    assert len(set(seq_a)) > 1  # it does vary within one sequence


def test_pick_rejects_unknown_or_custom_kind(corpus: Corpus) -> None:
    with pytest.raises(PassageError, match="unknown passage kind"):
        corpus.pick("sprint", random.Random(0))
    with pytest.raises(PassageError, match="no custom passages"):
        corpus.pick("custom", random.Random(0))


# --- validation of bad corpora ---------------------------------------------


def test_minimal_corpus_is_valid() -> None:
    minimal().validate()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (passage("q2", PassageKind.QUICK, 24), "24 words"),
        (passage("q2", PassageKind.QUICK, 36), "36 words"),
        (passage("s2", PassageKind.STANDARD, 111), "111 words"),
        (passage("m2", PassageKind.MARATHON, 199), "199 words"),
        (passage("q2", PassageKind.QUICK, 30, "caf\u00e9"), "not printable ASCII"),
        (passage("q2", PassageKind.QUICK, 30, "a_b"), "hard-to-type"),
        (passage("q2", PassageKind.QUICK, 30, "tab\there"), "not printable ASCII"),
        (Passage("q2", PassageKind.QUICK, " " + "word " * 29 + "word", "t"), "leading"),
        (Passage("q2", PassageKind.QUICK, "word  " + "word " * 28 + "word", "t"), "run of spaces"),
        (Passage("q2", PassageKind.QUICK, "word " * 29 + "word", " "), "source is empty"),
        (passage("Q 2", PassageKind.QUICK, 30), "id must be"),
        (passage("c2", PassageKind.CUSTOM, 30), "does not belong"),
        (passage("q1", PassageKind.QUICK, 30), "duplicate id"),
    ],
)
def test_validate_names_the_bad_passage(bad: Passage, message: str) -> None:
    with pytest.raises(PassageError, match=message) as info:
        minimal(bad).validate()
    assert repr(bad.id) in str(info.value)


def test_validate_wants_every_corpus_kind() -> None:
    corpus = Corpus([passage("q1", PassageKind.QUICK, 30)])
    with pytest.raises(PassageError, match="no standard passages"):
        corpus.validate()


def write_lines(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "passages.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def row(pid: str, kind: str, words: int) -> str:
    return json.dumps({"id": pid, "kind": kind, "text": " ".join(["w"] * words), "source": "t"})


def test_load_from_path(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path, [row("q1", "quick", 30), "", row("s1", "standard", 60), row("m1", "marathon", 200)]
    )
    corpus = Corpus.load(path)
    assert len(corpus) == 3
    assert corpus.by_id("s1").words == 60


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "expected an object"),
        ('{"id": "q2", "kind": "quick", "text": "x"}', "expected an object"),
        ('{"id": "q2", "kind": "quick", "text": 5, "source": "t"}', "text must be a string"),
        ('{"id": "q2", "kind": "sprint", "text": "x", "source": "t"}', "unknown kind"),
    ],
)
def test_load_rejects_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(tmp_path, [row("q1", "quick", 30), line])
    with pytest.raises(PassageError, match=message) as info:
        Corpus.load(path)
    assert ":2:" in str(info.value)  # names the line


def test_load_validates(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path, [row("q1", "quick", 3), row("s1", "standard", 60), row("m1", "marathon", 200)]
    )
    with pytest.raises(PassageError, match="'q1'"):
        Corpus.load(path)


# --- custom text -------------------------------------------------------------


def test_custom_text_is_normalised() -> None:
    text = "  Hello,\tworld!\n\nThis  is   a\r\ncustom   race.  "
    assert validate_custom_text(text, min_chars=5, max_chars=100) == "Hello, world! This is a custom race."


def test_custom_text_limits_apply_after_normalising() -> None:
    assert validate_custom_text("  abcde  ", min_chars=5, max_chars=5) == "abcde"
    with pytest.raises(PassageError, match="too short: 4 characters"):
        validate_custom_text("ab\n\nc", min_chars=5, max_chars=100)
    with pytest.raises(PassageError, match="too short: 0 characters"):
        validate_custom_text(" \t\n ", min_chars=1, max_chars=100)


def test_custom_text_too_long() -> None:
    with pytest.raises(PassageError, match="too long: 11 characters, at most 10"):
        validate_custom_text("abcdefghijk", min_chars=1, max_chars=10)


@pytest.mark.parametrize(
    "bad", ["caf\u00e9 au lait", "smart \u201cquotes\u201d", "nul\x00byte", "del\x7fchar", "nbsp\u00a0here"]
)
def test_custom_text_rejects_non_printable_ascii(bad: str) -> None:
    with pytest.raises(PassageError, match="only printable ASCII"):
        validate_custom_text(bad, min_chars=1, max_chars=100)


def test_custom_text_allows_any_printable_ascii() -> None:
    text = "".join(chr(c) for c in range(33, 127))
    assert validate_custom_text(text, min_chars=1, max_chars=200) == text


def test_custom_passage() -> None:
    p = custom_passage("Type  this\nout, please.", min_chars=5, max_chars=100)
    assert p.text == "Type this out, please."
    assert p.kind is PassageKind.CUSTOM
    assert p.source == "custom text"
    assert p.id == "custom-" + hashlib.sha256(p.text.encode()).hexdigest()[:12]
    assert p.words == 4
    # same text after normalising, same id
    assert custom_passage(" Type this out,  please. ", min_chars=5, max_chars=100).id == p.id
    with pytest.raises(PassageError):
        custom_passage("hi", min_chars=5, max_chars=100)
