"""Claimed key times against the server's arrival clock (gameserver.arrivals), pure logic."""

from __future__ import annotations

import random

import pytest

from arena.ids import NodeId, PlayerId, RaceId
from arena.protocol import RaceType
from gameserver.arrivals import ArrivalLog
from gameserver.fairplay import FairPlayLimits, Flag
from gameserver.passages import Passage
from gameserver.race import Race
from gameserver.scoring import ScoringLimits
from gameserver.settings import RaceSettings

LIMITS = FairPlayLimits()
WINDOW = 500 + 100 + LIMITS.arrival_tolerance_ms  # send interval + a 100 ms round trip + tolerance


def typed_times(rng: random.Random, n: int, wpm: float) -> list[int]:
    mean = 12_000 / wpm
    t, out = 300, []
    for _ in range(n):
        t += max(25, round(rng.lognormvariate(0, 0.4) * mean))
        out.append(t)
    return out


def send_every(times: list[int], interval_ms: int, delay_ms: int) -> list[tuple[list[int], int]]:
    """Batches as an honest client sends them: every ``interval_ms``, arriving ``delay_ms`` later."""
    batches: list[tuple[list[int], int]] = []
    i = 0
    instant = interval_ms
    while i < len(times):
        batch = []
        while i < len(times) and times[i] <= instant:
            batch.append(times[i])
            i += 1
        if batch:
            batches.append((batch, instant + delay_ms))
        instant += interval_ms
    return batches


def replay(batches: list[tuple[list[int], int]], log: ArrivalLog | None = None) -> ArrivalLog:
    log = log or ArrivalLog(LIMITS)
    total = 0
    for times, arrival in batches:
        total += len(times)
        log.record(times, arrival, WINDOW, total)
    return log


@pytest.mark.parametrize("wpm", [20, 60, 120, 210])
@pytest.mark.parametrize("delay_ms", [0, 200])
def test_honest_batches_raise_nothing(wpm: int, delay_ms: int) -> None:
    rng = random.Random(wpm * 1000 + delay_ms)
    log = replay(send_every(typed_times(rng, 400, wpm), 500, delay_ms))
    assert log.flags() == set()
    assert log.held_back_keys == 0
    assert log.peak_wpm() < 400


def test_keys_held_back_in_two_batches_are_flagged_one_is_not() -> None:
    rng = random.Random(1)
    batches = send_every(typed_times(rng, 200, 80), 500, 50)
    # The cheat sits on a batch for 2.5 s, then claims its keys were typed at the old times.
    late = [(keys, at + 2500) if n in (10, 30) else (keys, at) for n, (keys, at) in enumerate(batches)]
    once = [(keys, at + 2500) if n == 10 else (keys, at) for n, (keys, at) in enumerate(batches)]
    flagged = replay(late)
    assert Flag.HELD_BACK in flagged.flags()
    assert flagged.held_back_batches == 2
    assert flagged.worst_hold_ms > 0
    assert Flag.HELD_BACK not in replay(once).flags()


def test_pasted_text_arrives_too_fast_whatever_times_it_claims() -> None:
    # 300 characters with human-looking claimed times, all sent within 50 ms once a 240 WPM
    # typist would have finished: the claimed times pass, the arrival clock does not.
    rng = random.Random(2)
    claimed = typed_times(rng, 300, 240)
    end = claimed[-1]
    batches = [(claimed[i : i + 64], end + 10 * k) for k, i in enumerate(range(0, 300, 64))]
    log = replay(batches)
    assert Flag.ARRIVED_TOO_FAST in log.flags()
    assert Flag.HELD_BACK in log.flags()  # and the old claimed times are outside their window
    assert log.peak_wpm() >= 300 * 6


def test_resent_backlog_after_a_resume_is_neither_held_back_nor_a_burst() -> None:
    rng = random.Random(3)
    times = typed_times(rng, 300, 100)
    batches = send_every(times, 500, 50)
    cut = len(batches) // 2
    log = replay(batches[:cut])
    # 8 s offline: everything typed meanwhile arrives in a few batches right after the resume.
    sent = sum(len(b) for b, _ in batches[:cut])
    backlog = [t for b, _ in batches[cut : cut + 16] for t in b]
    back_at = batches[cut + 16][1]
    log.resumed(back_at, sent)
    total = sent
    for i in range(0, len(backlog), 64):
        chunk = backlog[i : i + 64]
        total += len(chunk)
        log.record(chunk, back_at + 20, WINDOW, total)
    for keys, arrival in batches[cut + 16 :]:
        total += len(keys)
        log.record(keys, arrival, WINDOW, total)
    assert log.flags() == set()


def test_window_is_send_interval_plus_capped_round_trip_plus_tolerance() -> None:
    log = ArrivalLog(FairPlayLimits(arrival_tolerance_ms=700))
    assert log.window_ms(cadence_ms=250, rtt_ms=80.0, max_rtt_ms=1000) == 500 + 80 + 700
    assert log.window_ms(cadence_ms=1000, rtt_ms=80.0, max_rtt_ms=1000) == 1000 + 80 + 700
    assert log.window_ms(cadence_ms=250, rtt_ms=5000.0, max_rtt_ms=1000) == 500 + 1000 + 700
    assert log.window_ms(cadence_ms=250, rtt_ms=None, max_rtt_ms=1000) == 500 + 1000 + 700


def test_bad_arrival_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        FairPlayLimits(held_back_batches=0)
    with pytest.raises(ValueError):
        FairPlayLimits(arrival_tolerance_ms=-1)
    with pytest.raises(ValueError):
        FairPlayLimits(arrival_windows=((0, 100.0),))


# ---- through a race ------------------------------------------------------------------

TEXT = "the quick brown fox jumps over the lazy dog and runs far away " * 3
T0 = 1_000_000


def running_race() -> Race:
    settings = RaceSettings(countdown_s=3, wait_timeout_s=10, quick_limit_s=120)
    race = Race(
        race_id=RaceId("r1"),
        node_id=NodeId("n1"),
        race_type=RaceType.QUICK,
        passage=Passage(id="t1", kind="quick", text=TEXT.strip(), source="test"),
        seats={PlayerId("p1")},
        now=T0,
        settings=settings,
        scoring=ScoringLimits(),
        fairplay=FairPlayLimits(),
    )
    race.join(PlayerId("p1"), "ada", T0)
    race.advance(T0 + 3000)
    return race


def test_a_race_flags_held_back_keys_and_bounds_the_judged_finish() -> None:
    race = running_race()
    racer = race.racers[PlayerId("p1")]
    assert race.start_at is not None
    text = race.passage.text
    times = typed_times(random.Random(4), len(text), 90)
    # Everything held back and sent in four batches at the end, claiming the real typing times.
    arrival = times[-1] + 3000
    for seq, i in enumerate(range(0, len(text), 50), start=1):
        race.apply_input(racer, seq, text[i : i + 50], times[i : i + 50], race.start_at + arrival)
    assert racer.typing.finished
    assert Flag.HELD_BACK in racer.flags
    # The judged finish is never earlier than the arrival less the bounded compensation.
    assert racer.finish_elapsed_ms is not None
    assert racer.finish_elapsed_ms >= arrival - race.settings.max_finish_hold_ms
    # No round trip measured here: the hold is the 500 ms send interval alone.
    assert racer.finish_elapsed_ms == arrival - 500
    assert race.result_rows()[0].place is None


def test_a_race_keeps_an_honest_typist_clean() -> None:
    race = running_race()
    racer = race.racers[PlayerId("p1")]
    assert race.start_at is not None
    text = race.passage.text
    times = typed_times(random.Random(5), len(text), 90)
    i = 0
    for seq, (batch, arrival) in enumerate(send_every(times, 500, 40), start=1):
        race.apply_input(racer, seq, text[i : i + len(batch)], batch, race.start_at + arrival)
        i += len(batch)
    assert racer.typing.finished
    assert racer.flags == set()
    assert race.result_rows()[0].place == 1


def test_times_shifted_earlier_in_most_batches_are_held_back() -> None:
    rng = random.Random(6)
    times = typed_times(rng, 300, 100)
    honest = send_every(times, 500, 100)
    # Sent on time, every key claimed 800 ms earlier: inside the window, but never the
    # freshness an honest batch has.
    shifted = [([max(0, t - 800) for t in keys], at) for keys, at in honest]
    log = replay(shifted)
    assert log.held_back_batches == 0
    assert log.late_batches > log.batches // 2
    assert Flag.HELD_BACK in log.flags()
    assert replay(honest).late_batches == 0


def _reference_peaks(
    batches: list[tuple[int, int, bool]], windows: tuple[tuple[int, float], ...]
) -> list[float]:
    """The sliding windows as first written (one deque per window, WPM per batch), to check the
    shared-list version against: same peaks, to the last bit."""
    from collections import deque

    peaks = [0.0] * len(windows)
    queues: list[deque[tuple[int, int]]] = [deque() for _ in windows]
    bases = [0] * len(windows)
    for arrival, cumulative, restart in batches:
        for k, (span, _) in enumerate(windows):
            if restart:
                queues[k].clear()
                bases[k] = cumulative
                continue
            queues[k].append((arrival, cumulative))
            while queues[k][0][0] <= arrival - span:
                bases[k] = queues[k].popleft()[1]
            peaks[k] = max(peaks[k], (cumulative - bases[k]) * 12_000 / span)
    return peaks


@pytest.mark.parametrize("seed", range(5))
def test_shared_windows_match_one_deque_per_window(seed: int) -> None:
    """Bursts, pauses and resumes, thousands of batches (the list is trimmed many times)."""
    rng = random.Random(seed)
    windows = ((2000, 600.0), (5000, 420.0), (10_000, 360.0), (700, 900.0))
    log = ArrivalLog(FairPlayLimits(arrival_windows=windows))
    batches: list[tuple[int, int, bool]] = []
    arrival, cumulative = 0, 0
    for _ in range(3000):
        arrival += rng.choice((1, 50, 250, 250, 400, 3000, 12_000)) if rng.random() < 0.9 else 0
        cumulative += rng.randrange(0, 12)
        if rng.random() < 0.01:  # a resume: the next batches are exempt, the windows restart
            log.resumed(arrival, cumulative)
            batches.append((arrival, cumulative, True))
            arrival += LIMITS.arrival_tolerance_ms + 1
            continue
        log.record([max(0, arrival - 100), arrival], arrival, WINDOW, cumulative)
        batches.append((arrival, cumulative, False))
    expected = _reference_peaks(batches, windows)
    assert log.peak_wpm() == max(expected)
    assert max(expected) > 0
    flagged = any(p > limit for p, (_, limit) in zip(expected, windows, strict=True))
    assert (Flag.ARRIVED_TOO_FAST in log.flags()) == flagged
