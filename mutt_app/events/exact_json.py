"""What orjson's reading of an ingest body would silently change: long integers and repeated keys.

orjson, the ingest hot path, reads an integer outside [-2**63, 2**64) as a float (rounded: the
audit would keep another number than the sender's) and keeps the last of an object's repeated keys
(the others vanish). MUTT refuses an item holding either, with the reason, rather than store it
changed: nothing downstream (orjson for the wire, Celery, jsonb via the audit) keeps such an
integer exactly either.

Checking costs little when neither is present, which is every normal body:

- an integer orjson would round has at least 19 digits (every one of 18 fits in 64 bits), so a text
  without a run of 19 digits holds none;
- a repeated key drops at least its key string from the decoded value, so orjson writing the decoded
  value back produces fewer strings than the text holds; as many strings means no key was dropped.

Only when one of these says "maybe" is the text read again, by the standard library's json (which
sees every pair and every integer exactly), to say which items hold what.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Loss", "loss_in", "maybe_lossy", "read_exactly"]

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1  # orjson keeps integers up to here exactly (as unsigned 64-bit)

# Every digit as "0", every other byte as " ": a run of 19 digits is then a plain substring search
# (a regex for it cost more than orjson reading the body).
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGITS = b"0" * 19
_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash escape inside a JSON string


@dataclass(frozen=True, slots=True)
class Loss:
    """Stands, in :func:`read_exactly`'s value, for what orjson would have changed.

    ``kind`` is ``duplicate_key`` or ``long_integer`` (the metric's label); ``reason`` is the
    item's rejection message.
    """

    kind: str
    reason: str


def maybe_lossy(text: bytes, value: object) -> bool:
    """Whether orjson's ``value`` for JSON ``text`` may differ from what the text says.

    False is certain: no integer was rounded and no key dropped. True asks for
    :func:`read_exactly`.
    """
    if _LONG_DIGITS in text.translate(_DIGITS_AS_ZEROS):
        return True
    try:
        again = orjson.dumps(value)
    except orjson.JSONEncodeError:  # deeper than orjson writes: cannot tell cheaply
        return True
    return _quotes(again) != _quotes(text)


def read_exactly(text: bytes | str) -> Any:
    """``text`` decoded with each object holding a repeated key, and each integer outside 64 bits,
    replaced by a :class:`Loss`.

    Raises ValueError when the standard library cannot read ``text`` (RecursionError, a
    ValueError, past its nesting limit).
    """
    try:
        return json.loads(text, object_pairs_hook=_object, parse_int=_integer)
    except RecursionError:
        raise ValueError("nested deeper than the standard JSON reader goes") from None


def loss_in(value: object) -> Loss | None:
    """The first :class:`Loss` in a value :func:`read_exactly` returned, or None."""
    stack = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, Loss):
            return value
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None


def _quotes(text: bytes) -> int:
    """The double quotes that open or close a string in JSON ``text`` (twice its strings)."""
    if b"\\" in text:
        text = _ESCAPE.sub(b"", text)
    return text.count(b'"')


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any] | Loss:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return Loss("duplicate_key", f"duplicate key {_short(key)!r} in a JSON object")
        seen.add(key)
    raise AssertionError("unreachable: fewer keys than pairs without a repeat")


def _integer(digits: str) -> int | Loss:
    # Length first: int() of thousands of digits is slow (and refused past 4300 digits).
    if len(digits.lstrip("-")) <= 20:
        number = int(digits)
        if INT64_MIN <= number <= UINT64_MAX:
            return number
    return Loss(
        "long_integer",
        f"integer {_short(digits)} is outside 64 bits and would not be stored exactly",
    )


def _short(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
