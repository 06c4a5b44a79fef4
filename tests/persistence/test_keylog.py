"""The compact keystroke log: exact round trips, smaller than the outbox's encoding."""

import random

import msgpack
import pytest

from persistence import keylog


def test_round_trip_keeps_keys_and_times() -> None:
    rng = random.Random(1)
    times = sorted(rng.randint(0, 900_000) for _ in range(500))
    keys = "".join(rng.choice("abc \b") for _ in range(500))
    assert keylog.decode(keylog.encode(keys, times)) == (keys, times)


@pytest.mark.parametrize(
    ("keys", "times"),
    [("", []), ("a", [0]), ("ab", [5, 3]), ("héllo\b\x00", [1, 2, 3, 4, 5, 6, 7]), ("x", [2**40])],
    ids=["empty", "one", "backwards", "unicode-and-nul", "huge"],
)
def test_edge_cases(keys: str, times: list[int]) -> None:
    assert keylog.decode(keylog.encode(keys, times)) == (keys, times)


def test_deltas_are_smaller_than_absolute_times() -> None:
    times, t = [], 0
    rng = random.Random(2)
    for _ in range(1000):
        t += rng.randint(60, 250)
        times.append(t)
    absolute = len(msgpack.packb(times))
    assert len(keylog.encode("", times)) < absolute * 0.7


@pytest.mark.parametrize(
    "raw", [b"", b"\xc1", msgpack.packb([2, "a", []]), msgpack.packb({"a": 1}), msgpack.packb([1, 5, []])]
)
def test_rejects_what_it_does_not_understand(raw: bytes) -> None:
    with pytest.raises(keylog.KeylogError):
        keylog.decode(raw)
