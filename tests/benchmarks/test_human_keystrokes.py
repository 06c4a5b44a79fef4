"""The recorded-keystrokes benchmark's parsing and judging, on a tiny corpus made here (no download)."""

from __future__ import annotations

import csv
import io
import itertools
import random
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.human_keystrokes import (
    BACKSPACE,
    GAP_MS,
    MEMBER,
    Player,
    artefact,
    judge,
    logs,
    main,
    pair_kind,
    pair_table_twin,
    profile_r,
    races,
    report,
)
from persistence.pairs import PairLimits
from simulators.typing import TypingProfile, plan_keystrokes

_START = datetime(2018, 9, 21, 7, 0, 0)
_COLUMNS = ("event_for_message_type", "content", "key_time", "message_id", "username")


def _row(kind: str, content: str, ms: int, message: str, user: str) -> dict[str, str]:
    at = (_START + timedelta(milliseconds=ms)).isoformat(sep=" ", timespec="milliseconds")
    return dict(zip(_COLUMNS, (kind, content, at, message, user), strict=True))


def _typed(text: str, gaps: list[int], message: str, user: str, start: int) -> list[dict[str, str]]:
    rows, ms = [], start
    for i in range(1, len(text) + 1):
        ms += gaps[i - 1]
        rows.append(_row("0", text[:i], ms, message, user))
    return rows


def test_pair_kinds_follow_touch_typing_fingers() -> None:
    assert pair_kind("t", "h") == "alt"  # left index, right index
    assert pair_kind("a", "s") == "hand"  # left little, left ring
    assert pair_kind("e", "d") == "finger"  # left middle twice
    assert pair_kind("E", "e") == "rep"
    assert pair_kind("e", " ") is None and pair_kind("é", "t") is None


def test_keys_backspaces_and_breaks_are_read_from_the_message_box() -> None:
    rows = [
        _row("0", "b", 0, "1", "u"),
        _row("0", "bo", 150, "1", "u"),
        _row("0", "b", 300, "1", "u"),  # one character removed: a backspace
        _row("0", "bo", 420, "1", "u"),
        _row("4", "", 500, "1", "u"),  # not a typing event: skipped
        _row("0", "bonjour", 700, "1", "u"),  # a paste or an autocomplete: the log breaks here
        _row("0", "bonjour!", 900, "1", "u"),
        _row("0", "bonjour!?", 1000, "1", "u"),
        _row("0", "s", 5000, "2", "v"),
    ]
    base = round(_START.timestamp() * 1000)
    found = {u: [[(k, t - base) for k, t in s] for s in st] for u, st in logs(rows).items()}
    assert found["u"] == [[("b", 0), ("o", 150), (BACKSPACE, 300), ("o", 420)], [("!", 900), ("?", 1000)]]
    assert "v" not in found or found["v"] == []  # one key: no interval


def test_races_join_stretches_with_a_pause_no_interval_spans() -> None:
    stretches = [[("a", 100), ("b", 200)], [("c", 50_000), ("d", 50_120)], [("e", 9), ("f", 99)]]
    played = races(stretches, race_keys=5)
    assert [k for k, _ in played] == ["ab\ncd"]  # the third stretch alone is under 5 keys: left out
    times = played[0][1]
    assert times == sorted(times)
    assert [b - a for a, b in itertools.pairwise(times)] == [100, 10_000, 10_000, 120]


def test_artefacts_no_typed_passage_holds() -> None:
    assert artefact("ab" + "n" * 20 + "cd", [i * 35 for i in range(24)]) == "key held (auto-repeat)"
    assert artefact("abcdefghijkl", [0] * 12) == "logged at once (0 ms apart)"
    assert artefact("aaa\naaa\naaa", [i * 200 for i in range(11)]) == "filler (one letter repeated)"
    assert artefact("the quick brown fox", [i * 180 for i in range(19)]) == "none"


def test_simulated_people_pass_every_rule_and_the_report_counts_them(tmp_path: Path) -> None:
    rng = random.Random(14)
    text = "the quick brown fox jumps over the lazy dog and then she said that it was there "
    rows: list[dict[str, str]] = []
    for u in range(3):
        profile = TypingProfile(60.0 + 30 * u, 0.02, 0.4, 1, 0.04, 0.3, u)
        start = 0
        for m in range(30):
            plan = plan_keystrokes(text, profile, rng)
            gaps = [max(1, b - a) for (_, a), (_, b) in zip([("", 0), *plan], plan, strict=False)]
            keys = [k for k, _ in plan]
            box, ms = "", start
            for key, gap in zip(keys, gaps, strict=True):
                ms += gap
                box = box[:-1] if key == BACKSPACE else box + key
                rows.append(_row("0", box, ms, f"{u}:{m}", f"user{u}"))
            start = ms + 60_000
    limits = PairLimits()
    players = [judge(name, races(st, 300), limits) for name, st in sorted(logs(rows).items())]
    assert [p.name for p in players] == ["user0", "user1", "user2"]
    assert all(p.robotic_races == 0 and p.held_at is None for p in players)
    assert all(p.lowest_f is not None and p.lowest_f > limits.min_f for p in players)
    text_report = report(players, limits)
    assert "0 of 3 players judged held" in text_report
    assert "races flagged robotic" in text_report

    # main() reads the CSV straight from a wheel: a tiny wheel made here, no download.
    wheel = tmp_path / "corpus.whl"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(MEMBER, out.getvalue())
    assert main(["--wheel", str(wheel), "--min-keys", "100"]) == 0


def test_a_pair_table_twin_keeps_the_keys_and_the_breaks() -> None:
    played = [("ab\ncd", [0, 100, 10_100, 20_100, 20_200]), ("the the", [0, 90, 200, 300, 420, 500, 610])]
    twin = pair_table_twin(played, 150.0, random.Random(1))
    assert [k for k, _ in twin] == [k for k, _ in played]
    for keys, times in twin:
        assert times == sorted(times) and len(times) == len(keys)
    gaps = [b - a for a, b in itertools.pairwise(twin[0][1])]
    assert gaps[1] == GAP_MS  # the break before "\n" stays a pause


def test_profile_r_follows_the_other_players_pair_means() -> None:
    pairs = [f"{a}{b}" for a in "etaoins" for b in "hrdlcum"]  # 49 pairs
    means = {p: (i % 7) / 10 for i, p in enumerate(pairs)}
    people = [Player(f"p{i}", 1000, 3, 200.0, pair_means=dict(means)) for i in range(4)]
    assert profile_r(people[0], people[1:]) == pytest.approx(1.0)
    flipped = Player("x", 1000, 3, 200.0, pair_means={p: -m for p, m in means.items()})
    assert profile_r(flipped, people) == pytest.approx(-1.0)
    few = Player("y", 100, 1, 200.0, pair_means={p: means[p] for p in pairs[:10]})
    assert profile_r(few, people) is None  # under 20 pairs in common: no verdict
