"""A racer's round trip, from the server's own pings only (docs/PROTOCOL.md, "Round trips").

Latency compensation takes half the round trip off a judged finish, so the round trip is
evidence only when the server measured it: a pong counts if it echoes a ping this server sent
to this racer and has not been answered yet, within ``answer_within_ms``. Anything else (an
unsolicited pong, a forged ``echo``, a second answer to the same ping, a late one) is refused.
The estimate is the smallest of the recent samples (answering late can only make a sample
larger, never the estimate smaller than the fastest honest answer), capped at ``max_ms``: a
client can never gain more than ``max_ms / 2`` of compensation, however it answers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

OUTSTANDING = 8  # pings a racer may owe at once (one per ping interval: seconds of silence)
SAMPLES = 5  # recent answers the estimate looks at


@dataclass(frozen=True, slots=True)
class RoundTripLimits:
    max_ms: int = 1000  # the largest round trip compensated: at most 500 ms off a finish
    answer_within_ms: int = 10_000  # a pong later than this answers nothing

    def __post_init__(self) -> None:
        if not 0 <= self.max_ms <= 10_000 or not 100 <= self.answer_within_ms <= 60_000:
            raise ValueError("round trip limits: max_ms 0-10000, answer_within_ms 100-60000")


@dataclass(slots=True)
class RoundTrips:
    limits: RoundTripLimits = field(default_factory=RoundTripLimits)
    _outstanding: deque[int] = field(default_factory=lambda: deque(maxlen=OUTSTANDING))
    _samples: deque[int] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    refused: int = 0  # pongs that answered nothing of ours
    # ``estimate_ms``, kept as samples come: every input asks for it (twice), pongs are rare.
    _estimate: float | None = None

    def expect(self, sent: int) -> None:
        """The server pinged this racer with ``sent``. Two pings in the same millisecond (the
        seat's own and the room's) are two pings: each answer counts once, neither is refused."""
        self._outstanding.append(sent)

    def answer(self, echo: int, now: int) -> bool:
        """A pong echoing ``echo`` arrived at ``now``; False if it answers no ping of ours."""
        if echo not in self._outstanding or not 0 <= now - echo <= self.limits.answer_within_ms:
            self.refused += 1
            return False
        self._outstanding.remove(echo)
        self._samples.append(now - echo)
        self._estimate = float(min(min(self._samples), self.limits.max_ms))
        return True

    def restore(self, estimate_ms: float | None) -> None:
        """A race rebuilt from its checkpoint: the estimate its owner judged with, as the only sample."""
        self._samples.clear()
        self._estimate = None
        if estimate_ms is not None:
            self._samples.append(int(estimate_ms))
            self._estimate = float(min(int(estimate_ms), self.limits.max_ms))

    @property
    def estimate_ms(self) -> float | None:
        """The round trip latency compensation uses: the fastest recent answer, capped."""
        return self._estimate
