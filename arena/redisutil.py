"""Small helpers for values read back from Redis (bytes unless decoding is on)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def text_map(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {as_text(k): as_text(v) for k, v in raw.items()}
