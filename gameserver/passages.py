"""Passages that players type: the packaged corpus and custom race texts.

The corpus is a JSON-lines file shipped next to this module. It is loaded and
validated once at startup, so a bad passage stops the server before any race
rather than surprising a player mid-race.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

DATA_FILE = Path(__file__).parent / "data" / "passages.jsonl"


class PassageKind(StrEnum):
    """What a passage is for; the values match the race types."""

    QUICK = "quick"
    STANDARD = "standard"
    MARATHON = "marathon"
    CUSTOM = "custom"  # player-supplied text, never stored in the corpus


# Kinds the corpus file holds, with their inclusive word-count bounds.
WORD_RANGES: Mapping[PassageKind, tuple[int, int]] = MappingProxyType(
    {
        PassageKind.QUICK: (25, 35),
        PassageKind.STANDARD: (55, 110),
        PassageKind.MARATHON: (200, 320),
    }
)

# Printable ASCII, but awkward to reach on many keyboards: kept out of the
# corpus. Custom text may use them, since the player chose them.
AWKWARD_CHARS = frozenset("~`|^{}<>_\\")

_FIELDS = frozenset({"id", "kind", "text", "source"})
_ID_PATTERN = re.compile(r"[a-z][a-z0-9-]*")
# Only ASCII whitespace is folded; any other space-like character is rejected
# later as non-ASCII instead of being silently changed.
_WHITESPACE_RUN = re.compile(r"[ \t\n\r\f\v]+")


class PassageError(ValueError):
    """A passage or custom text that cannot be used in a race."""


@dataclass(frozen=True, slots=True)
class Passage:
    id: str
    kind: PassageKind
    text: str
    source: str

    @property
    def words(self) -> int:
        """Number of space-separated words in the text."""
        return len(self.text.split())


def _first_non_printable(text: str) -> tuple[int, str] | None:
    """Position and character of the first char outside ASCII 32-126, if any."""
    for index, char in enumerate(text):
        if not 32 <= ord(char) <= 126:
            return index, char
    return None


def _check_passage(passage: Passage) -> None:
    """Raise PassageError naming the passage if it breaks a corpus rule."""
    where = f"passage {passage.id!r}"
    if not _ID_PATTERN.fullmatch(passage.id):
        raise PassageError(f"{where}: id must be lowercase letters, digits and hyphens")
    if passage.kind not in WORD_RANGES:
        raise PassageError(f"{where}: kind {passage.kind!r} does not belong in the corpus")
    if not passage.source.strip():
        raise PassageError(f"{where}: source is empty")
    bad = _first_non_printable(passage.text)
    if bad is not None:
        index, char = bad
        raise PassageError(f"{where}: character {char!r} at {index} is not printable ASCII")
    awkward = sorted(AWKWARD_CHARS.intersection(passage.text))
    if awkward:
        raise PassageError(f"{where}: contains hard-to-type characters {''.join(awkward)!r}")
    if passage.text != passage.text.strip(" "):
        raise PassageError(f"{where}: text has leading or trailing spaces")
    if "  " in passage.text:
        raise PassageError(f"{where}: text has a run of spaces")
    low, high = WORD_RANGES[passage.kind]
    if not low <= passage.words <= high:
        raise PassageError(f"{where}: {passage.words} words, {passage.kind} needs {low}-{high}")


def _parse_line(line: str, where: str) -> Passage:
    """One JSON line to a Passage; shape errors only, rules are for validate()."""
    try:
        raw: object = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PassageError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(raw, dict) or set(raw) != _FIELDS:
        raise PassageError(f"{where}: expected an object with keys {sorted(_FIELDS)}")
    fields: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(value, str):
            raise PassageError(f"{where}: {key} must be a string")
        fields[key] = value
    try:
        kind = PassageKind(fields["kind"])
    except ValueError as exc:
        raise PassageError(f"{where}: unknown kind {fields['kind']!r}") from exc
    return Passage(id=fields["id"], kind=kind, text=fields["text"], source=fields["source"])


class Corpus:
    """An immutable set of passages, grouped by kind for picking."""

    __slots__ = ("_by_id", "_by_kind", "_passages")

    def __init__(self, passages: Iterable[Passage]) -> None:
        self._passages: tuple[Passage, ...] = tuple(passages)
        self._by_id: Mapping[str, Passage] = MappingProxyType({p.id: p for p in self._passages})
        self._by_kind: Mapping[PassageKind, tuple[Passage, ...]] = MappingProxyType(
            {kind: tuple(p for p in self._passages if p.kind == kind) for kind in PassageKind}
        )

    @classmethod
    def load(cls, path: Path | None = None) -> Corpus:
        """Read a JSON-lines corpus (default: the packaged one) and validate it."""
        source = DATA_FILE if path is None else path
        passages: list[Passage] = []
        with source.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    passages.append(_parse_line(line, f"{source}:{lineno}"))
        corpus = cls(passages)
        corpus.validate()
        return corpus

    def validate(self) -> None:
        """Raise PassageError on the first broken passage, duplicate id or empty kind."""
        seen: set[str] = set()
        for passage in self._passages:
            if passage.id in seen:
                raise PassageError(f"passage {passage.id!r}: duplicate id")
            seen.add(passage.id)
            _check_passage(passage)
        for kind in WORD_RANGES:
            if not self._by_kind[kind]:
                raise PassageError(f"corpus has no {kind} passages")

    def by_id(self, passage_id: str) -> Passage:
        try:
            return self._by_id[passage_id]
        except KeyError:
            raise PassageError(f"unknown passage id {passage_id!r}") from None

    def pick(self, kind: str, rng: random.Random) -> Passage:
        """A passage of this kind (a PassageKind or its value, e.g. a race type).

        The caller owns the Random, so a seeded one gives repeatable races.
        """
        try:
            wanted = PassageKind(kind)
        except ValueError:
            raise PassageError(f"unknown passage kind {kind!r}") from None
        choices = self._by_kind[wanted]
        if not choices:
            raise PassageError(f"no {wanted} passages in the corpus")
        return rng.choice(choices)

    def kinds(self) -> dict[PassageKind, int]:
        """Number of passages of each corpus kind."""
        return {kind: len(self._by_kind[kind]) for kind in WORD_RANGES}

    def __len__(self) -> int:
        return len(self._passages)

    def __iter__(self) -> Iterator[Passage]:
        return iter(self._passages)


def validate_custom_text(text: str, *, min_chars: int, max_chars: int) -> str:
    """Normalise a player's race text and check it can be typed.

    Whitespace runs (tabs, newlines, spaces) become one space and the ends are
    stripped, so pasted text races the same as typed text. Length limits apply
    to the normalised text.
    """
    normalised = _WHITESPACE_RUN.sub(" ", text).strip(" ")
    length = len(normalised)
    if length < min_chars:
        raise PassageError(f"custom text is too short: {length} characters, at least {min_chars} needed")
    if length > max_chars:
        raise PassageError(f"custom text is too long: {length} characters, at most {max_chars} allowed")
    bad = _first_non_printable(normalised)
    if bad is not None:
        index, char = bad
        raise PassageError(
            f"custom text has character {char!r} at position {index}; only printable ASCII is allowed"
        )
    return normalised


def custom_passage(text: str, *, min_chars: int, max_chars: int) -> Passage:
    """A Passage for a custom race; the id is stable for the same normalised text."""
    normalised = validate_custom_text(text, min_chars=min_chars, max_chars=max_chars)
    digest = hashlib.sha256(normalised.encode("ascii")).hexdigest()
    return Passage(
        id=f"custom-{digest[:12]}",
        kind=PassageKind.CUSTOM,
        text=normalised,
        source="custom text",
    )
