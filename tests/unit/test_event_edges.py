"""Ingest's edges, unit by unit: event times outside the accepted range, and JSON that orjson would
read changed (repeated keys, integers beyond 64 bits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client import REGISTRY

from mutt_app.config import load_settings
from mutt_app.events.body import BodyError, ParseFailure, parse_body
from mutt_app.events.event_time import EventTimeRange
from mutt_app.events.exact_json import maybe_lossy
from mutt_app.events.schema import validate_items

RECEIVED = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
RANGE = EventTimeRange(timedelta(days=7), timedelta(minutes=15))


def _parse(body: bytes) -> list[object]:
    return parse_body(body, content_encoding=None, content_type=None, max_bytes=1 << 20)


def _adjusted(direction: str) -> float:
    value = REGISTRY.get_sample_value(
        "mutt_ingest_event_time_adjusted_total", {"direction": direction}
    )
    return value or 0.0


def _validate(*stamps: str, event_time: EventTimeRange | None = RANGE):  # type: ignore[no-untyped-def]
    items = [{"timestamp": s, "hostname": "h", "message": "m"} for s in stamps]
    return validate_items(
        items, required_fields=("hostname",), received_at=RECEIVED, event_time=event_time
    )


def test_an_event_time_within_the_range_is_kept() -> None:
    inside = [RECEIVED - timedelta(days=7), RECEIVED + timedelta(minutes=15), RECEIVED]
    events, rejections = _validate(*(t.isoformat() for t in inside))
    assert not rejections
    assert [e.timestamp for e in events] == inside


def test_an_event_time_outside_the_range_is_audited_under_received_at_with_the_senders_kept() -> (
    None
):
    past, future = _adjusted("past"), _adjusted("future")
    stamps = (
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00Z",
        (RECEIVED - timedelta(days=7, seconds=1)).isoformat(),
        (RECEIVED + timedelta(minutes=16)).isoformat(),
    )
    events, rejections = _validate(*stamps)
    assert not rejections
    assert [e.timestamp for e in events] == [RECEIVED] * 4
    assert [e.raw["timestamp"] for e in events] == list(stamps)
    assert [orjson.loads(e.wire_json)["timestamp"] for e in events] == [RECEIVED.isoformat()] * 4
    assert _adjusted("past") == past + 2
    assert _adjusted("future") == future + 2


def test_without_a_range_validate_items_keeps_any_time() -> None:
    events, _ = _validate("9999-12-31T23:59:59+00:00", event_time=None)
    assert events[0].timestamp.year == 9999


def test_the_event_time_settings_make_the_range() -> None:
    settings = load_settings(
        {"EVENT_TIME_MAX_AGE_DAYS": "30", "EVENT_TIME_MAX_AHEAD_MINUTES": "90"}
    )
    assert EventTimeRange.from_settings(settings) == EventTimeRange(
        timedelta(days=30), timedelta(minutes=90)
    )
    default = EventTimeRange.from_settings(load_settings({}))
    assert default == EventTimeRange(timedelta(days=7), timedelta(minutes=15))
    with pytest.raises(Exception, match=r"(?i)event_time_max_age_days"):
        load_settings({"EVENT_TIME_MAX_AGE_DAYS": "400"})


def test_a_repeated_key_refuses_its_item_only() -> None:
    items = _parse(b'[{"a":1},{"b":{"c":1,"c":2}},{"d":"x"}]')
    assert items[0] == {"a": 1} and items[2] == {"d": "x"}
    assert items[1] == ParseFailure(1, "duplicate key 'c' in a JSON object")
    assert _parse(b'{"a":1,"a":1}') == [ParseFailure(0, "duplicate key 'a' in a JSON object")]


def test_a_repeated_key_in_ndjson_and_kafka_records_refuses_its_item_only() -> None:
    ndjson = _parse(b'{"a":1}\n{"a":1,"a":2}\n')
    assert ndjson[0] == {"a": 1}
    assert ndjson[1] == ParseFailure(1, "line 2: duplicate key 'a' in a JSON object")
    kafka = _parse(
        b'{"records":[{"value":{"k":1,"k":2}},{"value":"{\\"k\\":1,\\"k\\":2}"},{"value":{"ok":1}}]}'
    )
    assert kafka[0] == ParseFailure(0, "duplicate key 'k' in a JSON object")
    assert kafka[1] == ParseFailure(1, "record value: duplicate key 'k' in a JSON object")
    assert kafka[2] == {"ok": 1}


def test_an_integer_beyond_64_bits_refuses_its_item_and_64_bits_are_kept_exactly() -> None:
    items = _parse(
        b'[{"n":340282366920938463463374607431768211456},{"n":-9223372036854775809},'
        b'{"n":18446744073709551615},{"n":-9223372036854775808},{"n":1.5e300}]'
    )
    assert isinstance(items[0], ParseFailure) and "outside 64 bits" in items[0].error
    assert isinstance(items[1], ParseFailure) and "outside 64 bits" in items[1].error
    assert items[2:] == [{"n": 2**64 - 1}, {"n": -(2**63)}, {"n": 1.5e300}]


def test_long_digits_and_escaped_quotes_inside_strings_are_not_losses() -> None:
    body = b'[{"m":"id 123456789012345678901234 \\"quoted\\" \\\\","k":"\\u0022"}]'
    assert _parse(body) == [{"m": 'id 123456789012345678901234 "quoted" \\', "k": '"'}]


def test_a_plain_body_is_not_read_twice() -> None:
    body = orjson.dumps(
        [{"timestamp": "2026-12-06T12:00:00Z", "hostname": "h", "message": 'a"b\\'}]
    )
    assert not maybe_lossy(body, orjson.loads(body))
    assert maybe_lossy(b'{"a":1,"a":2}', {"a": 2})


def test_a_body_too_deep_to_check_for_repeated_keys_is_refused_whole() -> None:
    # orjson reads 1024 levels, the standard library's reader fewer: such a body, which may hide a
    # repeated key, is a 422 as a whole (its deep item could not be stored anyway).
    body = b'[{"a":1},{"d":' + b"[" * 1000 + b"]" * 1000 + b"}]"
    with pytest.raises(BodyError, match="cannot be checked for repeated keys") as refused:
        _parse(body)
    assert refused.value.status == 422
