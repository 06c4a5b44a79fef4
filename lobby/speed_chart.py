"""A typing test's speed over time, from the keystroke log the server stored (pure, no I/O).

The chart's rule is the page's live one (``lobby/web/app.js`` ``drawChart``): the keys of each
one-second bucket that extended the correct prefix of the text, times 12 (a word is 5
characters, a minute 60 s). The buffer follows the server's model (``lobby.replay_text``): a
correct prefix, then the wrong characters since the first mistake, at most ``max_error_run`` of
them; a backspace deletes the last character. Without the text every character key counts (raw).
"""

from __future__ import annotations

from collections.abc import Sequence

from lobby.replay_text import MAX_ERROR_RUN

BUCKET_MS = 1000
WPM_PER_KEY = 60_000 / BUCKET_MS / 5  # one correct character in a bucket, as words per minute
STORED_BACKSPACE = "\b"  # persistence/keylog.py


def correct_keys(
    keys: str, times: Sequence[int], text: str | None, *, max_error_run: int = MAX_ERROR_RUN
) -> list[int]:
    """The times (ms) of the keys that extended the correct prefix (every character key when the
    text is unknown), in order."""
    found: list[int] = []
    length = correct = 0  # the buffer's length and the length of its correct prefix
    for key, t in zip(keys, times, strict=True):
        if key == STORED_BACKSPACE:
            if length:
                length -= 1
                correct = min(correct, length)
        elif text is None:
            found.append(t)
        elif length == correct and correct < len(text) and key == text[correct]:
            length += 1
            correct += 1
            found.append(t)
        elif length - correct < max_error_run:
            length += 1
        # else: past the server's cap, a wrong key never reached the buffer
    return found


def speed_series(keys: str, times: Sequence[int], text: str | None) -> list[float]:
    """WPM of each second of the test, from its first second to the one of its last key."""
    if not times:
        return []
    seconds = max(1, -(-times[-1] // BUCKET_MS))  # ceil: a key at 1,000 ms is in the first second
    buckets = [0] * seconds
    for t in correct_keys(keys, times, text):
        buckets[min(seconds - 1, max(0, t) // BUCKET_MS)] += 1
    return [n * WPM_PER_KEY for n in buckets]
