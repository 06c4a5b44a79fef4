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

Pure logic, O(1) amortised per batch (one bisect, a few list steps per window): it runs for
every input, so the windows share one list of arrivals and keep only an index into it and their
peak as a count of characters (docs/PERFORMANCE.md, "Per-input cost").
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence

from gameserver.fairplay import FairPlayLimits, Flag

__all__ = ["ArrivalLog"]

_MS_PER_WORD_MINUTE = 60_000 // 5  # wpm = chars * 12000 / ms


class ArrivalLog:
    """One racer's arrival evidence; ``record`` runs once per applied input batch."""

    __slots__ = (
        "_base",
        "_counts",
        "_edge",
        "_exempt_until",
        "_peak_chars",
        "_spans",
        "_times",
        "batches",
        "held_back_batches",
        "held_back_keys",
        "late_batches",
        "limits",
        "worst_hold_ms",
    )

    def __init__(self, limits: FairPlayLimits) -> None:
        self.limits = limits
        # The sliding windows of "arrived too fast": correct characters that arrived in
        # (now - span, now]. One list of batches (arrival ms, cumulative correct characters)
        # for all of them; per window, the index of its oldest batch still inside and the
        # cumulative count of the last batch that left it.
        self._spans = tuple(span for span, _ in limits.arrival_windows)
        # Machine ints, not int objects: a list keeps ~100 ints per racer (what the longest window
        # holds) as small objects, which fill pymalloc's arenas at a load's peak and keep them
        # resident after it (docs/PERFORMANCE.md, "Back to idle", session 4).
        self._times = array("q")
        self._counts = array("q")
        self._edge = [0] * len(self._spans)
        self._base = [0] * len(self._spans)
        # The most characters any window held: its peak WPM is that * 12000 / span.
        self._peak_chars = [0] * len(self._spans)
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
        self._restart(cumulative)

    def _restart(self, cumulative: int) -> None:
        """Forget what arrived so far (a resume): the resent backlog is not a burst."""
        del self._times[:], self._counts[:]  # arrays: no clear() before Python 3.13
        n = len(self._spans)
        self._edge = [0] * n
        self._base = [cumulative] * n

    def record(self, times: Sequence[int], arrival_ms: int, window_ms: int, cumulative: int) -> None:
        """A batch with key ``times`` (sorted: ``check_batch`` flags any that are not) arrived at
        ``arrival_ms`` (race time); ``cumulative`` = the racer's correct keystrokes after it."""
        if arrival_ms <= self._exempt_until:
            self._restart(cumulative)
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
        arrived, counts = self._times, self._counts
        arrived.append(arrival_ms)
        counts.append(cumulative)
        edges, bases, peaks = self._edge, self._base, self._peak_chars
        for k, span in enumerate(self._spans):
            i = edges[k]
            edge = arrival_ms - span
            while arrived[i] <= edge:  # stops at the batch just added at the latest (span > 0)
                bases[k] = counts[i]
                i += 1
            edges[k] = i
            chars = cumulative - bases[k]
            if chars > peaks[k]:
                peaks[k] = chars
        gone = min(edges)
        if gone >= 64 and 2 * gone >= len(arrived):  # batches every window has left: O(1) amortised
            del arrived[:gone], counts[:gone]
            self._edge = [i - gone for i in edges]

    def _peak_wpms(self) -> list[float]:
        # Divided by the full span: a race shorter than the window is not extrapolated.
        return [c * _MS_PER_WORD_MINUTE / span for c, span in zip(self._peak_chars, self._spans, strict=True)]

    def peak_wpm(self) -> float:
        """The highest WPM that arrived within any window (for reports)."""
        return max(self._peak_wpms(), default=0.0)

    def flags(self) -> set[Flag]:
        flags: set[Flag] = set()
        if self.held_back_batches >= self.limits.held_back_batches:
            flags.add(Flag.HELD_BACK)
        if self.batches >= self.limits.shift_min_batches and 2 * self.late_batches > self.batches:
            flags.add(Flag.HELD_BACK)
        limits = (wpm for _, wpm in self.limits.arrival_windows)
        if any(peak > limit for peak, limit in zip(self._peak_wpms(), limits, strict=True)):
            flags.add(Flag.ARRIVED_TOO_FAST)
        return flags
