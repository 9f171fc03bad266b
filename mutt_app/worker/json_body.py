"""Task bodies read with orjson when that reads them exactly as kombu's JSON decoder does.

Celery decodes every ``application/json`` message with kombu's ``json.loads``: the stdlib parser with
kombu's object hook (``{"__type__": ..., "__value__": ...}`` becomes a datetime, a UUID, bytes...),
called once per object. A classify task carries its events as plain JSON (ingest writes it with
orjson, :mod:`mutt_app.web.ingest.endpoint`), which orjson reads in less time.

orjson reads a body exactly as kombu does unless the body holds (1) kombu's typed marker
``__type__``, whose objects only the hook decodes; (2) a ``\\u00XX`` escape, which could spell that
marker with escaped letters; (3) an integer of 19 digits or more, which orjson reads as a float once
it is past 64 bits, where the stdlib keeps it exact. Such a body, and any body orjson refuses (NaN,
a lone surrogate, invalid UTF-8...), goes to kombu's own decoder, which answers or fails as before.
The checks are conservative: a digit run inside a string or an escaped control character only sends
the body down the old path.
"""

from __future__ import annotations

from typing import Any

import orjson
from kombu.serialization import registry
from kombu.utils import json as kombu_json

CONTENT_TYPE = "application/json"
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_NUMBER = b"0" * 19  # 2**63 has 19 digits


def loads(data: Any) -> Any:
    """``data`` (a message body) decoded as :func:`kombu.utils.json.loads` decodes it."""
    if (
        type(data) is bytes
        and b"__type__" not in data
        # One byte is found faster than four; most bodies have no backslash at all.
        and (b"\\" not in data or b"\\u00" not in data)
        and _LONG_NUMBER not in data.translate(_DIGITS_AS_ZERO)
    ):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # kombu's decoder says what is wrong with it, as before
    return kombu_json.loads(data)


def install() -> None:
    """Decode ``application/json`` message bodies with :func:`loads` in this process (encoding is
    unchanged: kombu's own for ``json``)."""
    registry.register("json", kombu_json.dumps, loads, CONTENT_TYPE, "utf-8")


install()
