"""The one codec: protocol dataclasses to msgpack or JSON frames and back, with validation.

Decoding never trusts the peer: unknown types, missing or mistyped fields raise
``ProtocolError`` with a reason fit to send back in an ``error`` message.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

import msgpack

from arena.protocol import CLIENT_MESSAGES, SERVER_MESSAGES, MaxLen, Message, Range

M = TypeVar("M", bound=Message)
Converter = Callable[[Any], Any]


class WireFormat(StrEnum):
    MSGPACK = "msgpack"  # binary frames
    JSON = "json"  # text frames


class ProtocolError(ValueError):
    """Input that does not follow the protocol; the message is safe to show the peer."""


# Protocol messages nest two deep (a map holding a list); anything much deeper is hostile, and
# CPython's JSON decoder would recurse on it until RecursionError.
MAX_JSON_DEPTH = 16


# ---- encoding ---------------------------------------------------------------------


def to_wire(msg: Message) -> dict[str, Any]:
    """The map sent on the wire: ``t`` plus the dataclass fields (nested ones as maps)."""
    out: dict[str, Any] = {"t": msg.TYPE.value}
    for name in _field_names(type(msg)):
        out[name] = _plain(getattr(msg, name))
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def encode_map(wire: dict[str, Any], fmt: WireFormat) -> bytes | str:
    """Encode an already-built wire map; used on the hot path to skip dataclass walking."""
    if fmt is WireFormat.MSGPACK:
        return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]
    return json.dumps(wire, separators=(",", ":"))


def encode(msg: Message, fmt: WireFormat = WireFormat.MSGPACK) -> bytes | str:
    return encode_map(to_wire(msg), fmt)


# ---- decoding ---------------------------------------------------------------------


def decode_client(frame: bytes | str) -> Message:
    """Decode a frame a client sent to a server."""
    return _decode(frame, CLIENT_MESSAGES)


def decode_server(frame: bytes | str) -> Message:
    """Decode a frame a server sent to a client (bots, tests)."""
    return _decode(frame, SERVER_MESSAGES)


def json_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(text: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` (ValueError) instead of recursing."""
    if isinstance(text, bytes):
        text = text.decode()
    # Counting brackets is a bound on the depth: the exact scan runs only when that bound is high.
    if text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text)


def load_frame(frame: bytes | str) -> Any:
    if isinstance(frame, str):
        try:
            return load_json(frame)
        except ValueError as exc:
            raise ProtocolError(f"invalid JSON: {str(exc)[:80]}") from None
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"invalid msgpack: {type(exc).__name__}") from None


def _decode(frame: bytes | str, registry: dict[str, type[Message]]) -> Message:
    data = load_frame(frame)
    if not isinstance(data, dict):
        raise ProtocolError("a message must be a map")
    kind = data.get("t")
    cls = registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {str(kind)[:32]!r}")
    return from_wire(cls, data)


def from_wire(cls: type[M], data: dict[str, Any]) -> M:
    return _converter(cls)(data)  # type: ignore[no-any-return]


# ---- per-type converters, built once per type -------------------------------------

_converters: dict[Any, Converter] = {}
_field_cache: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _field_cache.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _field_cache[cls] = names
    return names


def warm() -> None:
    """Build every message type's converter and field names (nested dataclasses included) now.
    Built at a type's first use instead, mid-load in a long-lived process, they live as long as
    the process and keep the memory pages they landed in from going back after the load
    (issue 21; a node calls this at start-up)."""
    pending: list[Any] = [*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values()]
    seen: set[Any] = set()
    while pending:
        hint = pending.pop()
        if hint in seen:
            continue
        seen.add(hint)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            _field_names(hint)
            pending.extend(typing.get_type_hints(hint, include_extras=True).values())
        else:
            pending.extend(typing.get_args(hint))
    for cls in (*CLIENT_MESSAGES.values(), *SERVER_MESSAGES.values()):
        _converter(cls)


def _converter(hint: Any) -> Converter:
    conv = _converters.get(hint)
    if conv is None:
        conv = _build(hint)
        _converters[hint] = conv
    return conv


def _build(hint: Any) -> Converter:
    if typing.get_origin(hint) is typing.Annotated:
        return _bounded(*typing.get_args(hint))
    if dataclasses.is_dataclass(hint):
        return _dataclass_converter(hint)  # type: ignore[arg-type]
    origin = typing.get_origin(hint)
    if origin is list:
        (item_hint,) = typing.get_args(hint)
        return _list_converter(_converter(item_hint))
    if origin in (typing.Union, types.UnionType):
        return _union_converter([_converter(a) for a in typing.get_args(hint)])
    if hint is type(None):
        return _none
    if hint is bool:
        return _bool
    if hint is int:
        return _int
    if hint is float:
        return _float
    if hint is str:
        return _str
    raise TypeError(f"no wire converter for {hint!r}")


def _bounded(base: Any, *bounds: Any) -> Converter:
    """A converter for ``Annotated[int, Range(...)]`` or ``Annotated[str, MaxLen(...)]``."""
    (bound,) = bounds
    if base is int and isinstance(bound, Range):
        return _int_in(bound.lo, bound.hi)
    if base is str and isinstance(bound, MaxLen):
        return _str_up_to(bound.chars)
    raise TypeError(f"no wire converter for {base!r} with {bound!r}")


_int_ranges: dict[Converter, Range] = {}  # bounded int converters, for lists of them


def _int_in(lo: int, hi: int) -> Converter:
    def convert(value: Any) -> int:
        if type(value) is not int or not lo <= value <= hi:
            raise ProtocolError(f"expected an integer from {lo} to {hi}")
        return value

    _int_ranges[convert] = Range(lo, hi)
    return convert


def _str_up_to(chars: int) -> Converter:
    def convert(value: Any) -> str:
        if type(value) is not str or len(value) > chars:
            raise ProtocolError(f"expected a string of at most {chars} characters")
        return value

    return convert


def _dataclass_converter(cls: type) -> Converter:
    hints = typing.get_type_hints(cls, include_extras=True)
    specs: list[tuple[str, Converter, bool]] = []
    for f in dataclasses.fields(cls):
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        specs.append((f.name, _converter(hints[f.name]), has_default))

    def convert(data: Any) -> Any:
        if not isinstance(data, dict):
            raise ProtocolError(f"{cls.__name__} must be a map")
        kwargs: dict[str, Any] = {}
        for name, conv, has_default in specs:
            if name in data:
                try:
                    kwargs[name] = conv(data[name])
                except ProtocolError as exc:
                    raise ProtocolError(f"field {name!r}: {exc}") from None
            elif not has_default:
                raise ProtocolError(f"missing field {name!r}")
        return cls(**kwargs)

    return convert


def _list_converter(item: Converter) -> Converter:
    if item is _int:
        return _int_list
    if item in _int_ranges:
        return _bounded_int_list(_int_ranges[item])

    def convert(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ProtocolError("expected a list")
        return [item(v) for v in value]

    return convert


def _int_list(value: Any) -> list[int]:
    """``list[int]`` without a call per item: every ``input`` carries one (its key times)."""
    if not isinstance(value, list):
        raise ProtocolError("expected a list")
    for v in value:
        if type(v) is not int:
            raise ProtocolError("expected an integer")
    return value


def _bounded_int_list(bound: Range) -> Converter:
    """``list[Annotated[int, Range]]`` (key times) checked in one loop, without a call per item."""
    lo, hi = bound.lo, bound.hi

    def convert(value: Any) -> list[int]:
        if not isinstance(value, list):
            raise ProtocolError("expected a list")
        for v in value:
            if type(v) is not int or not lo <= v <= hi:
                raise ProtocolError(f"expected integers from {lo} to {hi}")
        return value

    return convert


def _union_converter(options: list[Converter]) -> Converter:
    def convert(value: Any) -> Any:
        for option in options:
            try:
                return option(value)
            except ProtocolError:
                continue
        raise ProtocolError(f"unexpected {type(value).__name__}")

    return convert


def _none(value: Any) -> None:
    if value is not None:
        raise ProtocolError("expected null")


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError("expected a boolean")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("expected an integer")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError("expected a number")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ProtocolError("expected a string")
    return value
