"""The shared backoff: capped, jittered within its bounds, and the same under the same seed."""

import random

import pytest

from arena.backoff import Backoff, BackoffSettings


def test_delays_double_up_to_the_cap_without_jitter() -> None:
    backoff = Backoff(BackoffSettings(base_s=0.5, cap_s=3.0, jitter=0.0), random.Random(1))
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff.failures == 6
    assert backoff.reset() == 6
    assert backoff.next_delay() == 0.5  # a success starts over


def test_jittered_delays_stay_within_their_ceiling_and_are_spread() -> None:
    settings = BackoffSettings(base_s=0.1, cap_s=2.0, jitter=0.5)
    rng = random.Random(42)
    for attempt in range(40):
        ceiling = settings.ceiling(attempt)
        assert ceiling <= 2.0
        draws = [settings.delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in draws)
        assert max(draws) - min(draws) > ceiling / 10  # jittered, not one value
    assert settings.ceiling(10_000) == 2.0  # no overflow however long the outage


def test_the_same_seed_gives_the_same_delays() -> None:
    settings = BackoffSettings(base_s=0.2, cap_s=5.0, jitter=1.0)
    one, two = Backoff(settings, random.Random(7)), Backoff(settings, random.Random(7))
    first = [one.next_delay() for _ in range(10)]
    assert first == [two.next_delay() for _ in range(10)]
    assert first != [Backoff(settings, random.Random(8)).next_delay() for _ in range(10)]


@pytest.mark.parametrize(
    "changes",
    [{"base_s": 0.0}, {"base_s": 2.0, "cap_s": 1.0}, {"jitter": -0.1}, {"jitter": 1.5}, {"factor": 0.5}],
)
def test_bad_settings_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffSettings(**changes)
