"""The workers' JSON body decoder reads every body exactly as kombu's own decoder does."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from kombu.serialization import dumps as encode_body
from kombu.serialization import loads as decode_body
from kombu.utils import json as kombu_json

from mutt_app.events.schema import validate_items
from mutt_app.worker import json_body

BODIES = [
    b'[[{"a": 1, "b": [true, null, 2.5, "x"]}], {}, {"callbacks": null}]',
    b'{"__type__": "datetime", "__value__": "2026-01-02T03:04:05+00:00"}',
    b'[{"__type__": "uuid", "__value__": "9f0c6c43-2c3b-4bd2-8d6b-2b8d7b1d2f6e"}]',
    b'{"__type__": "bogus", "__value__": 1}',  # kombu refuses it; so must we
    b'{"\\u005f_type__": "decimal", "__value__": "1.5"}',  # the marker spelled with an escape
    b"[123456789012345678901234567890]",  # past 64 bits: orjson would make it a float
    b"[-9223372036854775809, 18446744073709551615, 9223372036854775807]",
    b"[NaN, Infinity, -Infinity]",
    b"[1e400, -0.0, 4.9e-324, 0.1000000000000000055511151231257827]",
    b'["\\ud800"]',  # a lone surrogate: the stdlib keeps it
    b'["caf\\u00e9", "caf\xc3\xa9", "line\\nbreak", "quote\\"d"]',
    b'{"a": 1, "a": 2}',
    b'["\xff"]',  # not UTF-8
    b"\xef\xbb\xbf[1]",  # a BOM
    b"[1] trailing",
    b' \n[ "spaced" ] \n',
    b'"just a string"',
]


def _outcome(decode: Any, body: Any) -> tuple[str, Any]:
    try:
        return "value", decode(body)
    except Exception as exc:
        return "error", type(exc).__name__


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0, but not here); NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@pytest.mark.parametrize("body", BODIES)
def test_a_body_decodes_as_kombus_decoder_decodes_it(body: bytes) -> None:
    ours, theirs = _outcome(json_body.loads, body), _outcome(kombu_json.loads, body)
    assert ours[0] == theirs[0]
    assert _same(ours[1], theirs[1]) if ours[0] == "value" else ours == theirs


def test_kombus_typed_values_written_by_another_task_still_decode() -> None:
    args = [datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), uuid.uuid4(), Decimal("1.50"), b"\x00raw"]
    content_type, encoding, body = encode_body(args, "json")
    assert decode_body(body, content_type, encoding, accept={content_type}) == args


def test_an_ingest_written_classify_body_is_read_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    events, _ = validate_items(
        [{"hostname": "h", "message": 'a "quoted" message\twith a tab', "count": 12}],
        required_fields=("hostname",),
        received_at=datetime.now(UTC),
    )
    body = orjson.dumps([[[orjson.Fragment(e.wire_json) for e in events], "b1", 0], {}, {}])
    expected = kombu_json.loads(body)

    def not_this_way(data: Any) -> Any:
        raise AssertionError("went to kombu's decoder")

    monkeypatch.setattr(json_body.kombu_json, "loads", not_this_way)
    assert decode_body(body, "application/json", "utf-8", accept={"application/json"}) == expected
