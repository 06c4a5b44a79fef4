"""What the server saw of a racer's typing: when each input batch arrived (docs/FAIRPLAY.md).

A client can write any key times it likes; it cannot make a batch arrive before it sent it.
Two rules judge the claimed times against the server's own clock:

* **held back**: a key claimed earlier than ``arrival - window`` was kept back, or its time
  was made up (``window`` = the longest honest send interval + the measured round trip + a
  documented tolerance). A batch holding such keys is evidence; ``held_back_batches`` of them
  raise ``held_back``. One stalled delivery can happen to anyone, and the judged finish is
  bounded anyway (``gameserver.race``), so one batch alone is not enough.
* **shifted**: a client that sends on time but claims every key earlier than it typed it stays
  inside that window when the shift is under the tolerance.  An honest batch's last key is never
  older at arrival than one send interval and one round trip; when that is exceeded in most
  batches (at least ``shift_min_batches``), the times are shifted: ``held_back`` too.
* **arrived too fast**: correct characters that *arrived* within each sliding window of the
  server's clock, as WPM. Pasted text that claims human times still arrives all at once.

Right after a resume (``resumed``) the client resends what the server missed: those batches
are neither held back nor counted at their arrival speed (the claimed-time checks still run).

Pure logic, O(1) amortised per batch (one bisect, a few deque steps per window).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Sequence

from gameserver.fairplay import FairPlayLimits, Flag

__all__ = ["ArrivalLog"]

_MS_PER_WORD_MINUTE = 60_000 // 5  # wpm = chars * 12000 / ms


class _Window:
    """Correct characters that arrived in (now - span, now], from cumulative counts per batch."""

    __slots__ = ("_arrivals", "_base", "limit_wpm", "peak_wpm", "span_ms")

    def __init__(self, span_ms: int, limit_wpm: float) -> None:
        self.span_ms = span_ms
        self.limit_wpm = limit_wpm
        self.peak_wpm = 0.0
        self._arrivals: deque[tuple[int, int]] = deque()  # (arrival ms, cumulative correct chars)
        self._base = 0  # cumulative count of the last batch that left the window

    def add(self, arrival_ms: int, cumulative: int) -> None:
        arrivals = self._arrivals
        arrivals.append((arrival_ms, cumulative))
        edge = arrival_ms - self.span_ms
        while arrivals[0][0] <= edge:
            self._base = arrivals.popleft()[1]
        # Divided by the full span: a race shorter than the window is not extrapolated.
        wpm = (cumulative - self._base) * _MS_PER_WORD_MINUTE / self.span_ms
        if wpm > self.peak_wpm:
            self.peak_wpm = wpm

    def restart(self, cumulative: int) -> None:
        """Forget what arrived so far (a resume): the resent backlog is not a burst."""
        self._arrivals.clear()
        self._base = cumulative


class ArrivalLog:
    """One racer's arrival evidence; ``record`` runs once per applied input batch."""

    __slots__ = (
        "_exempt_until",
        "_windows",
        "batches",
        "held_back_batches",
        "held_back_keys",
        "late_batches",
        "limits",
        "worst_hold_ms",
    )

    def __init__(self, limits: FairPlayLimits) -> None:
        self.limits = limits
        self._windows = tuple(_Window(span, wpm) for span, wpm in limits.arrival_windows)
        self._exempt_until = -1
        self.batches = 0  # judged batches
        self.late_batches = 0  # whose last key was older than send interval + round trip at arrival
        self.held_back_batches = 0
        self.held_back_keys = 0
        self.worst_hold_ms = 0  # the most a key was claimed before its batch's window opened

    def window_ms(self, cadence_ms: int, rtt_ms: float | None, max_rtt_ms: int) -> int:
        """How long before its batch's arrival a key may honestly claim to have been typed.

        A client sends at least every ``max(cadence, max_send_interval_ms)`` while typing; its
        clock is synchronised to within a round trip (no sample yet: the cap is assumed).
        """
        send = max(cadence_ms, self.limits.max_send_interval_ms)
        rtt = max_rtt_ms if rtt_ms is None else min(int(rtt_ms), max_rtt_ms)
        return send + rtt + self.limits.arrival_tolerance_ms

    def resumed(self, arrival_ms: int, cumulative: int) -> None:
        """The racer came back at ``arrival_ms`` (race time): its resent batches are exempt for a while."""
        self._exempt_until = arrival_ms + self.limits.arrival_tolerance_ms
        for window in self._windows:
            window.restart(cumulative)

    def record(self, times: Sequence[int], arrival_ms: int, window_ms: int, cumulative: int) -> None:
        """A batch with key ``times`` (sorted: ``check_batch`` flags any that are not) arrived at
        ``arrival_ms`` (race time); ``cumulative`` = the racer's correct keystrokes after it."""
        if arrival_ms <= self._exempt_until:
            for window in self._windows:
                window.restart(cumulative)
            return
        if times:
            self.batches += 1
            if arrival_ms - times[-1] > window_ms - self.limits.arrival_tolerance_ms:
                self.late_batches += 1
            opens = arrival_ms - window_ms
            early = bisect_left(times, opens)  # keys claimed before the window opened
            if early:
                self.held_back_batches += 1
                self.held_back_keys += early
                self.worst_hold_ms = max(self.worst_hold_ms, opens - times[0])
        for window in self._windows:
            window.add(arrival_ms, cumulative)

    def peak_wpm(self) -> float:
        """The highest WPM that arrived within any window (for reports)."""
        return max((w.peak_wpm for w in self._windows), default=0.0)

    def flags(self) -> set[Flag]:
        flags: set[Flag] = set()
        if self.held_back_batches >= self.limits.held_back_batches:
            flags.add(Flag.HELD_BACK)
        if self.batches >= self.limits.shift_min_batches and 2 * self.late_batches > self.batches:
            flags.add(Flag.HELD_BACK)
        if any(w.peak_wpm > w.limit_wpm for w in self._windows):
            flags.add(Flag.ARRIVED_TOO_FAST)
        return flags
