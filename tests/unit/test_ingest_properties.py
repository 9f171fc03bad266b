"""Property-based tests of the ingest body parser and validator (mutt_app.events.body and
mutt_app.events.schema), with hypothesis.

Whatever a sender posts, every item of the body is either accepted or rejected with its index, and
the parser raises nothing but :class:`BodyError` for a body it cannot read as a whole.
"""

from __future__ import annotations

import gzip
import json
import zlib
from datetime import UTC, datetime

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mutt_app.events.body import BodyError, parse_body
from mutt_app.events.schema import validate_items

REQUIRED = ("timestamp", "message", "hostname")
RECEIVED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
MAX_BYTES = 256 * 1024
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text as senders really send it: any code point but lone surrogates (which no UTF-8 body carries),
# NULs and controls included, with a bias towards odd ones.
odd_text = st.text(
    st.one_of(
        st.characters(exclude_categories=("Cs",)),
        st.sampled_from(["\x00", "\x1e", "\u2028", "\ufeff", "\U0001f4a5", "é", "\\", '"']),
    ),
    max_size=20,
)
numbers = st.one_of(
    st.integers(),  # unbounded: bigger than 64 bits too
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**400, -(10**30), 1e308]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(odd_text, inner, max_size=4)
    ),
    max_leaves=12,
)
timestamps = st.one_of(
    st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat), odd_text, numbers
)
correlation_ids = st.one_of(
    st.uuids().map(str), st.sampled_from(["00000000-0000-0000-0000-000000000000"]), odd_text
)
events = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": timestamps,
        "hostname": st.one_of(st.sampled_from(["router-01", " r2 "]), odd_text, numbers),
        "message": st.one_of(st.sampled_from(["link down", "CRITICAL"]), odd_text),
        "correlation_id": correlation_ids,
        "syslog_severity": st.one_of(st.integers(-2, 9), odd_text, st.none()),
        "trap_oid": st.one_of(st.sampled_from([".1.3.6.1.4.1", "1.3"]), odd_text),
        "source": odd_text,
        "extra": json_values,
    },
)
items = st.one_of(events, events, json_values)


@st.composite
def deep_items(draw: st.DrawFn) -> str:
    """An event carrying a nested array: within what orjson reads or past it, and past what it writes."""
    depth = draw(st.integers(1, 1100))
    return (
        '{"timestamp":"2026-12-01T10:00:00Z","hostname":"h","message":"m","deep":'
        + "[" * depth
        + "]" * depth
        + "}"
    )


def _dumps(value: object) -> str:
    # The stdlib writes what orjson will not (integers past 64 bits, NaN): senders do too.
    return json.dumps(value, ensure_ascii=False)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """A body in one of the formats MUTT reads, or something close to one, or garbage."""
    kind = draw(st.sampled_from(["object", "array", "ndjson", "kafka", "garbage", "deep"]))
    if kind == "object":
        text = _dumps(draw(items))
    elif kind == "array":
        text = _dumps(draw(st.lists(items, max_size=8)))
    elif kind == "kafka":
        values = draw(st.lists(st.one_of(items, items.map(_dumps), odd_text), max_size=6))
        records = [draw(st.sampled_from([{"value": v}, {"key": v}, v])) for v in values]
        text = _dumps({"records": records})
    elif kind == "deep":
        text = "\n".join(draw(st.lists(deep_items(), min_size=1, max_size=3)))
    elif kind == "ndjson":
        lines = draw(st.lists(st.one_of(items.map(_dumps), odd_text, deep_items()), max_size=8))
        text = "\n".join(lines)
    else:
        return draw(st.binary(max_size=200))
    body = text.encode("utf-8")
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    return body


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str | None]:
    """A document as sent: plain, gzip (one member or several), deflate, or damaged gzip."""
    body = draw(documents())
    coding = draw(st.sampled_from([None, None, "gzip", "gzip-members", "deflate", "gzip-cut"]))
    if coding == "gzip":
        return gzip.compress(body), draw(st.sampled_from(["gzip", None]))  # magic bytes suffice
    if coding == "gzip-members":
        cut = draw(st.integers(0, len(body)))
        return gzip.compress(body[:cut]) + gzip.compress(body[cut:]), "gzip"
    if coding == "deflate":
        return zlib.compress(body), "deflate"
    if coding == "gzip-cut":
        packed = gzip.compress(body)
        return packed[: draw(st.integers(0, len(packed) - 1))], "gzip"
    return body, None


@PROPERTIES
@given(bodies())
def test_every_item_is_accepted_or_rejected_with_its_index(body: tuple[bytes, str | None]) -> None:
    data, coding = body
    try:
        parsed = parse_body(
            data, content_encoding=coding, content_type="application/json", max_bytes=MAX_BYTES
        )
    except BodyError as exc:
        assert exc.status in (413, 415, 422)
        return
    accepted, rejections = validate_items(parsed, required_fields=REQUIRED, received_at=RECEIVED)
    indexes = [r.index for r in rejections]
    assert indexes == sorted(set(indexes)) and all(0 <= i < len(parsed) for i in indexes)
    assert len(accepted) + len(rejections) == len(parsed)
    assert all(r.error for r in rejections)
    assert len({e.correlation_id for e in accepted}) == len(accepted)
    for event in accepted:
        # What the ledger and the task carry reads back as the event, here and on a worker
        # (the stdlib's json), and holds nothing PostgreSQL text could not store.
        assert orjson.loads(event.wire_json) == event.to_wire()
        assert json.loads(event.wire_json) == event.to_wire()
        assert b"\\u0000" not in event.wire_json.replace(b"\\\\", b"")


@PROPERTIES
@given(st.lists(events, max_size=6), st.integers(1, 4))
def test_the_same_events_in_any_format_get_the_same_verdicts(values: list, members: int) -> None:
    """An array, NDJSON and gzip of either (in one or more members) get the same verdicts."""
    lines = [orjson.dumps(v) for v in values if _orjson_writable(v)]
    array = b"[" + b",".join(lines) + b"]"
    forms = [array, gzip.compress(array)]
    if len(lines) > 1:
        ndjson = b"\n".join(lines)
        step = max(1, len(ndjson) // members)
        parts = [ndjson[i : i + step] for i in range(0, len(ndjson), step)]
        forms += [ndjson, b"".join(gzip.compress(p) for p in parts)]
    verdicts = set()
    for form in forms:
        parsed = parse_body(form, content_encoding=None, content_type=None, max_bytes=MAX_BYTES)
        accepted, rejections = validate_items(
            parsed, required_fields=REQUIRED, received_at=RECEIVED
        )
        verdicts.add((len(accepted), tuple((r.index, r.error) for r in rejections)))
    assert len(verdicts) == 1


def _orjson_writable(value: object) -> bool:
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True
