"""Events' correlation_ids: a sender's kept in canonical form, new ones made as random UUIDs.

Most senders send none, so ingest makes one per event: that is on the hot path of every request.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["CorrelationIds", "canonical_uuid", "correlation_id", "new_correlation_id"]

# A UUID already in its canonical text (as ingest writes it) needs no parse: uuid.UUID and back cost
# more than deciding the event.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


def correlation_id(value: Any, new_id: Callable[[], str]) -> str:
    """``value`` as the event's correlation_id in canonical form; a new one from ``new_id`` when it
    is absent, not a UUID, or the nil UUID."""
    if isinstance(value, str) and value:
        try:
            canonical = canonical_uuid(value)
        except ValueError:
            pass
        else:
            # The nil UUID is a template placeholder, not an identity: every event would share it.
            if canonical != _NIL_UUID:
                return canonical
    return new_id()


def new_correlation_id() -> str:
    """A random (version 4) UUID in canonical text.

    Most senders send none, so ingest makes one per event; formatting the bytes directly costs
    less than half of ``str(uuid.uuid4())``.
    """
    data = bytearray(os.urandom(16))
    data[6] = (data[6] & 0x0F) | 0x40  # version 4
    data[8] = (data[8] & 0x3F) | 0x80  # the RFC 4122 variant
    text = data.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class CorrelationIds:
    """New correlation_ids for the items of one body, as :func:`new_correlation_id` makes them,
    from one read of the random source for the whole body rather than one per event."""

    def __init__(self, count: int) -> None:
        self._count = max(count, 1)
        self._hex = ""
        self._used = 0

    def next(self) -> str:
        """The next id (more than ``count`` read the random source again)."""
        if self._used == len(self._hex):
            self._hex = os.urandom(16 * self._count).hex()
            self._used = 0
        text = self._hex[self._used : self._used + 32]
        self._used += 32
        # Version 4 in the 13th digit, the RFC 4122 variant in the top bits of the 17th.
        return (
            f"{text[:8]}-{text[8:12]}-4{text[13:16]}-{_VARIANT[text[16]]}{text[17:20]}-{text[20:]}"
        )


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def canonical_uuid(value: str) -> str:
    """``value``, a UUID in any form uuid.UUID reads, in canonical text; ValueError if it is not."""
    if _CANONICAL_UUID.fullmatch(value):
        return value
    return str(uuid.UUID(value))
