"""Human-like typing, pure and deterministic for a given ``random.Random``.

A plan is the whole list of keystrokes a typist with a given profile makes to complete a
passage: ``(key, ms since the race start)``, with typos on neighbouring QWERTY keys that
are noticed a few characters later, backspaced and retyped, jittered intervals, slower
word and sentence boundaries, and occasional thinking pauses. No I/O here.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from enum import Enum

from arena.protocol import BACKSPACE

__all__ = [
    "POPULATION_WEIGHT",
    "QWERTY_NEIGHBOURS",
    "SHARED_PAIRS",
    "TypingProfile",
    "digraph_factor",
    "draw_profile",
    "neighbour_key",
    "plan_keystrokes",
]

# wpm = chars * 12000 / ms: a "word" is 5 chars.
MS_PER_WORD_MINUTE = 12_000
MIN_WPM = 15.0
MAX_WPM = 160.0
# No human presses two keys less than this apart; also keeps plans far from the
# server's paste detector (8 keys each <= 4 ms apart).
MIN_KEY_MS = 25
_PUNCTUATION = frozenset(".,;:!?")

_QWERTY_ROWS = ("1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm")
# Each row is shifted right by about half a key relative to the one above it.
_ROW_OFFSETS = (0.0, 0.5, 0.75, 1.25)


def _build_neighbours() -> dict[str, str]:
    """Keys whose centres lie within ~1.1 key widths of each other, per key."""
    centres: dict[str, tuple[float, float]] = {}
    for row, (keys, offset) in enumerate(zip(_QWERTY_ROWS, _ROW_OFFSETS, strict=True)):
        for col, key in enumerate(keys):
            centres[key] = (col + offset, float(row))
    neighbours: dict[str, str] = {}
    for key, (x, y) in centres.items():
        near = [
            other
            for other, (ox, oy) in centres.items()
            if other != key and math.hypot(ox - x, oy - y) <= 1.15
        ]
        neighbours[key] = "".join(sorted(near))
    return neighbours


QWERTY_NEIGHBOURS: dict[str, str] = _build_neighbours()

# What people share of their letter-pair speeds, per pair ("_" a space), standardised (SD 1):
# from recorded people (benchmarks/human_keystrokes.py, the Language Hero corpus: 162 people),
# the average over players of their per-pair mean normalised log interval, for the 119 pairs of
# persistence.pairs.PAIRS that at least 10 of them typed five times or more, centred within
# each class (word start " x", word end "x ", two letters: the plan's own word and punctuation
# factors already make those classes differ). Measured, not made up, and not from any rule's
# output; French free text, so English-only pairs ("th", "wh", "of") are missing: those keep
# the typist's own factor only. docs/FAIRPLAY.md, "Pair-table bots".
_SHARED_TEXT = (
    "e_-0.59 _t+0.04 he-1.33 _a-0.49 s_-0.49 d_-0.23 _s-0.80 in+0.15 t_+0.46 er-1.47 an+0.12 n_-0.49 "
    "nd-1.14 _o+0.57 re-1.24 ng+1.51 r_+0.35 _c+0.63 _b+0.23 _f-0.08 _i+0.21 ar+0.96 st-1.04 at+0.53 "
    "on+0.67 es-0.08 en-0.90 ou+0.20 or+1.10 ea+0.22 te-1.32 it+1.04 _h+0.48 g_+0.32 a_-0.48 le-1.88 "
    "ha-0.56 to-0.95 ve-0.63 ne-2.04 _m+0.34 _p+0.29 _l+0.24 al-0.00 ro+0.31 _r+0.04 as+0.57 _e-1.16 "
    "ll-2.48 me-0.98 rs+0.50 se+0.55 _d-0.57 nt-0.41 lo+0.94 ch-0.28 de-1.01 ti+0.71 ee-3.24 _n-1.42 "
    "ri+0.91 li+0.43 ho+1.70 is-0.76 et-0.20 l_+1.14 la-0.80 hi+0.01 il+0.77 om+0.54 ur+0.84 co+1.11 "
    "ra+0.46 be-1.18 un+0.17 ca-0.30 ac+2.25 ut+1.02 pe-0.07 _g+0.63 el+0.07 ta+0.61 no+0.69 si+0.06 "
    "ts-0.43 ir+0.60 ma-0.45 mo+0.86 ce-1.20 tr-0.63 ev+1.40 us-0.52 ns-0.74 ai-0.42 ge-0.50 ld+0.90 "
    "so-0.35 pa-0.82 bo+1.66 ol+0.10 id-0.77 ot+1.98 ie-1.47 di-0.30 os-0.85 ul+1.60 em+0.39 rt-1.11 "
    "im+1.54 ss-1.33 ec+1.84 am-0.41 _u+0.82 cl+2.33 ap+1.13 rd+0.50 mi+1.15 ei-2.32 sa+1.25"
)
SHARED_PAIRS: dict[str, float] = {
    item[:2].replace("_", " "): float(item[2:]) for item in _SHARED_TEXT.split()
}
# The shared table's weight in a drawn typist's pair factors, uniform in this range per typist
# (people differ in how typical their typing is): chosen so that simulated honest players agree
# with the others about as much as recorded people do (docs/FAIRPLAY.md, "Pair-table bots").
POPULATION_WEIGHT = (0.8, 1.0)


@dataclass(frozen=True, slots=True)
class TypingProfile:
    wpm: float  # net speed the typist completes a passage at
    error_rate: float  # chance per character of hitting a neighbouring key instead
    jitter_cv: float  # coefficient of variation of inter-key intervals (humans ~0.3-0.6)
    notice_delay_chars: int  # characters typed after a typo before noticing it (0-3)
    pause_chance: float  # chance per word of a thinking pause of 300-1200 ms
    # Each letter pair has its own speed on a given person's keyboard and hands ("th" is a fast
    # roll, "qz" a slow reach): log-normal factors with this sigma, fixed per ``keyboard``.
    # The server's rhythm check (gameserver.rhythm) expects this structure from people.
    digraph_sd: float = 0.3
    keyboard: int = 0
    # How much of those factors people share ("er" quick, "ee" quicker, for nearly everyone): the
    # weight of the shared English-typing table (``SHARED_PAIRS``) against the typist's own
    # factor, 0 (all their own: a pair-table bot) to 1. See ``POPULATION_WEIGHT``.
    population: float = 0.0

    def __post_init__(self) -> None:
        if not self.wpm > 0:
            raise ValueError("wpm must be > 0")
        if not 0.0 <= self.error_rate <= 0.5:
            raise ValueError("error_rate must be in [0, 0.5]")
        if not 0.0 <= self.jitter_cv <= 1.5:
            raise ValueError("jitter_cv must be in [0, 1.5]")
        if not 0 <= self.notice_delay_chars <= 3:
            raise ValueError("notice_delay_chars must be in [0, 3]")
        if not 0.0 <= self.pause_chance <= 1.0:
            raise ValueError("pause_chance must be in [0, 1]")
        if not 0.0 <= self.digraph_sd <= 1.0:
            raise ValueError("digraph_sd must be in [0, 1]")
        if not 0.0 <= self.population <= 1.0:
            raise ValueError("population must be in [0, 1]")


def draw_profile(rng: random.Random, *, mean_wpm: float = 60.0, sd_wpm: float = 22.0) -> TypingProfile:
    """A random typist: log-normal speed (clipped to 15-160 wpm); faster typists err less."""
    sigma = math.sqrt(math.log(1.0 + (sd_wpm / mean_wpm) ** 2))
    mu = math.log(mean_wpm) - sigma**2 / 2  # so the mean of the distribution is mean_wpm
    wpm = min(MAX_WPM, max(MIN_WPM, rng.lognormvariate(mu, sigma)))
    skill = (wpm - MIN_WPM) / (MAX_WPM - MIN_WPM)  # 0 = slowest, 1 = fastest
    error_rate = (0.045 - 0.035 * skill) * rng.lognormvariate(0.0, 0.35)
    profile = TypingProfile(
        wpm=round(wpm, 1),
        error_rate=round(min(0.06, max(0.005, error_rate)), 4),
        jitter_cv=round(rng.uniform(0.3, 0.55), 3),
        notice_delay_chars=rng.choices((0, 1, 2, 3), weights=(3, 4, 2, 1))[0],
        pause_chance=round(rng.uniform(0.02, 0.08), 3),
        digraph_sd=round(rng.uniform(0.2, 0.4), 3),
        keyboard=rng.randrange(1 << 30),
    )
    # From the keyboard's own generator: the caller's random stream stays as it was.
    weight = random.Random(f"{profile.keyboard}:population").uniform(*POPULATION_WEIGHT)
    return dataclasses.replace(profile, population=round(weight, 3))


def digraph_factor(profile: TypingProfile, prev: str, char: str, cache: dict[str, float]) -> float:
    """The typist's own speed factor for typing ``char`` after ``prev`` (mean about 1)."""
    pair = prev + char
    factor = cache.get(pair)
    if factor is None:
        # Its own generator per pair: the plan's random stream is the same with or without it.
        z = random.Random(f"{profile.keyboard}:{pair.lower()}").gauss(0.0, 1.0)
        shared = SHARED_PAIRS.get(pair.lower()) if profile.population else None
        if shared is not None:  # variance 1 still: the table is standardised, z is N(0, 1)
            w = profile.population
            z = w * shared + math.sqrt(1.0 - w * w) * z
        sd = profile.digraph_sd
        factor = cache[pair] = math.exp(sd * z - sd * sd / 2)
    return factor


def neighbour_key(char: str, rng: random.Random) -> str | None:
    """A key next to ``char`` on a QWERTY keyboard (same case), or None if it has none."""
    near = QWERTY_NEIGHBOURS.get(char.lower(), "")
    if char.isalpha():
        # A letter slips to a letter: an upper-case slip to a digit would need shift too.
        near = "".join(k for k in near if k.isalpha())
    if not near:
        return None
    wrong = rng.choice(near)
    return wrong.upper() if char.isupper() else wrong


# ---- planning -------------------------------------------------------------------
#
# A plan is built in two passes. The first decides *what* is typed (keys, typos,
# corrections, pauses) and gives each keystroke either a fixed duration (pauses,
# reactions, backspaces) or a relative weight (ordinary characters). The second
# scales the weights so that the passage completes at the profile's net speed:
# corrections and pauses then cost the typist rhythm, not overall speed, which keeps
# the measured wpm of a plan close to the profile's.


class _Kind(Enum):
    CHAR = "char"  # duration = weight * per-char unit
    FIXED = "fixed"  # duration in ms, as drawn


@dataclass(slots=True)
class _Stroke:
    key: str
    kind: _Kind
    amount: float  # a weight for CHAR, milliseconds for FIXED
    lead_ms: float = 0.0  # fixed extra time before this key (a pause or a reaction)


def plan_keystrokes(passage: str, profile: TypingProfile, rng: random.Random) -> list[tuple[str, int]]:
    """Every keystroke (key, ms since start) a typist with ``profile`` makes to type ``passage``.

    Times are integers, non-decreasing, and replaying the keys leaves the typed buffer
    exactly equal to the passage.
    """
    if not passage:
        raise ValueError("passage must not be empty")
    if BACKSPACE in passage:
        raise ValueError("passage must not contain a backspace")
    strokes = _strokes(passage, profile, rng)
    return _timed(strokes, len(passage), profile, rng)


def _strokes(passage: str, profile: TypingProfile, rng: random.Random) -> list[_Stroke]:
    nominal = MS_PER_WORD_MINUTE / profile.wpm
    sigma = math.sqrt(math.log(1.0 + profile.jitter_cv**2))
    strokes: list[_Stroke] = []
    pairs: dict[str, float] = {}

    def char_weight(index: int) -> float:
        # Log-normal with mean 1: a right-skewed interval, like real keystroke gaps.
        weight = rng.lognormvariate(-(sigma**2) / 2, sigma)
        prev = passage[index - 1] if index > 0 else ""
        if profile.digraph_sd:
            weight *= digraph_factor(profile, prev, passage[index], pairs)
        if prev == " ":
            weight *= 1.25  # a new word
        elif prev in _PUNCTUATION:
            weight *= 1.5  # end of a clause or sentence
        if passage[index].isupper():
            weight *= 1.15  # reaching for shift
        return weight

    start_reaction = rng.uniform(180.0, 450.0)  # to the start signal, before the first key
    paused_at = -1  # a word gets at most one pause, even when its first char is retyped
    i = 0
    while i < len(passage):
        char = passage[i]
        lead = start_reaction if not strokes else 0.0
        at_word = i > 0 and passage[i - 1] == " "
        if at_word and paused_at != i and rng.random() < profile.pause_chance:
            lead += rng.uniform(300.0, 1200.0)  # thinking before a word
            paused_at = i
        wrong = neighbour_key(char, rng) if rng.random() < profile.error_rate else None
        if wrong is None:
            strokes.append(_Stroke(char, _Kind.CHAR, char_weight(i), lead))
            i += 1
            continue
        # A typo, then a few more (intended) characters before noticing it.
        strokes.append(_Stroke(wrong, _Kind.CHAR, char_weight(i), lead))
        extra = passage[i + 1 : i + 1 + profile.notice_delay_chars]
        for offset, more in enumerate(extra, start=i + 1):
            strokes.append(_Stroke(more, _Kind.CHAR, char_weight(offset)))
        # Noticing takes a moment; backspaces are quick and regular-ish.
        reaction = rng.uniform(150.0, 400.0)
        for n in range(1 + len(extra)):
            gap = max(float(MIN_KEY_MS) + 15, rng.gauss(0.6 * nominal, 0.15 * nominal))
            strokes.append(_Stroke(BACKSPACE, _Kind.FIXED, gap, reaction if n == 0 else 0.0))
        # Retyping starts at ``i`` again, at a normal pace (loop continues).
    return strokes


def _timed(
    strokes: list[_Stroke], passage_len: int, profile: TypingProfile, rng: random.Random
) -> list[tuple[str, int]]:
    nominal = MS_PER_WORD_MINUTE / profile.wpm
    # The day's form: the same typist is not equally fast on every passage.
    target_ms = passage_len * nominal * rng.uniform(0.96, 1.04)
    fixed_ms = sum(s.lead_ms + (s.amount if s.kind is _Kind.FIXED else 0.0) for s in strokes)
    weights = sum(s.amount for s in strokes if s.kind is _Kind.CHAR)
    # Never speed characters up beyond 1.6x the nominal pace to make up for mistakes: a
    # sloppy typist on a short passage just ends up slower than the profile says.
    unit = max((target_ms - fixed_ms) / weights, nominal / 1.6)
    plan: list[tuple[str, int]] = []
    clock = 0.0
    for stroke in strokes:
        gap = stroke.amount * unit if stroke.kind is _Kind.CHAR else stroke.amount
        clock += stroke.lead_ms + max(float(MIN_KEY_MS), gap)
        plan.append((stroke.key, round(clock)))
    return plan
