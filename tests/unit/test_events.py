"""Ingest bodies and event validation: mutt_app.events.body and mutt_app.events.schema."""

from __future__ import annotations

import dataclasses
import gzip
import json
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from mutt_app.events.body import MAX_GZIP_MEMBERS, BodyError, ParseFailure, parse_body
from mutt_app.events.correlation_ids import CorrelationIds
from mutt_app.events.schema import (
    MAX_HOSTNAME_CHARS,
    MAX_MESSAGE_CHARS,
    Event,
    InvalidEvent,
    Rejection,
    new_correlation_id,
    trap_oid_from_varbinds,
    validate_item,
    validate_items,
)

REQUIRED = ("timestamp", "message", "hostname")
RECEIVED = datetime(2025, 1, 12, 10, 31, 0, 250_000, tzinfo=UTC)
MAX = 1024 * 1024
RS = "\x1e"


def _event(**fields: Any) -> dict[str, Any]:
    item = {
        "timestamp": "2025-01-12T10:30:00Z",
        "hostname": "router-01.example.com",
        "message": "Interface GigabitEthernet0/1 changed state to down",
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not ...}


def _parse(body: bytes, encoding: str | None = None, max_bytes: int = MAX) -> list[object]:
    return parse_body(
        body, content_encoding=encoding, content_type="application/json", max_bytes=max_bytes
    )


def _valid(item: object, required: tuple[str, ...] = REQUIRED) -> Event:
    return validate_item(item, required_fields=required, received_at=RECEIVED)


def _error(item: object, required: tuple[str, ...] = REQUIRED) -> str:
    with pytest.raises(InvalidEvent) as caught:
        _valid(item, required)
    return str(caught.value)


def _trap_message(separator: str = RS, trap_oid: str = ".1.3.6.1.4.1.9.9.41.2.0.1") -> str:
    """What ``format syslog2 %B [%b]: trap%V<sep>%#v`` with -On makes of a CISCO-SYSLOG trap."""
    varbinds = [
        ".1.3.6.1.2.1.1.3.0 = Timeticks: (12345) 0:02:03.45",
        f".1.3.6.1.6.3.1.1.4.1.0 = OID: {trap_oid}",
        '.1.3.6.1.4.1.9.9.41.1.2.3.1.2.1 = STRING: "LINK"',
    ]
    return "switch-9 [UDP: [10.0.0.9]:50123->[10.0.0.2]:162]: trap" + "".join(
        separator + v for v in varbinds
    )


# --- body formats ------------------------------------------------------------------------------


def test_a_single_object_is_one_item() -> None:
    assert _parse(orjson.dumps(_event())) == [_event()]


def test_a_json_array_is_its_elements_in_order() -> None:
    events = [_event(message=f"m{i}") for i in range(3)]
    assert _parse(orjson.dumps(events)) == events


def test_an_empty_array_is_no_items() -> None:
    assert _parse(b"[]") == []


def test_ndjson_is_one_item_per_line_and_skips_blank_lines() -> None:
    lines = [orjson.dumps(_event(message=f"m{i}")) for i in range(3)]
    body = b"\n" + lines[0] + b"\r\n\n   \n" + lines[1] + b"\n" + lines[2] + b"\n\n"
    items = parse_body(body, content_encoding=None, content_type="text/plain", max_bytes=MAX)
    assert items == [_event(message=f"m{i}") for i in range(3)]


def test_a_broken_ndjson_line_costs_only_that_line() -> None:
    body = b"\n".join(
        [orjson.dumps(_event(message="first")), b'{"hostname": "x", "message": ', b"",
         orjson.dumps(_event(message="third"))]
    )  # fmt: skip
    items = _parse(body)
    assert items[0] == _event(message="first")
    assert isinstance(items[1], ParseFailure) and items[1].index == 1
    assert items[1].error.startswith("line 2: not valid JSON")
    assert items[2] == _event(message="third")

    events, rejections = validate_items(items, required_fields=REQUIRED, received_at=RECEIVED)
    assert [e.message for e in events] == ["first", "third"]
    assert rejections == [Rejection(1, items[1].error)]


def test_a_broken_single_document_is_a_body_error() -> None:
    with pytest.raises(BodyError) as caught:
        parse_body(b'{"hostname": "x",', content_encoding=None, content_type=None, max_bytes=MAX)
    assert caught.value.status == 422
    assert str(caught.value).startswith("body is not JSON, a JSON array or NDJSON")


def test_a_broken_pretty_printed_document_is_a_body_error_not_rejected_lines() -> None:
    body = b'{\n  "hostname": "x",\n  "message": "y",\n}\n'
    with pytest.raises(BodyError) as caught:
        _parse(body)
    assert caught.value.status == 422


def test_a_broken_multiline_array_is_a_body_error() -> None:
    body = b"[\n" + orjson.dumps(_event()) + b",\n" + orjson.dumps(_event()) + b"\n"
    with pytest.raises(BodyError):
        _parse(body)


def test_body_error_names_the_content_type_it_was_sent_as() -> None:
    with pytest.raises(BodyError, match=r"sent as text/plain"):
        parse_body(b"hello", content_encoding=None, content_type="text/plain", max_bytes=MAX)


def test_an_empty_body_is_a_body_error() -> None:
    with pytest.raises(BodyError, match="empty") as caught:
        _parse(b"  \n ")
    assert caught.value.status == 422


def test_a_utf8_byte_order_mark_is_ignored() -> None:
    assert _parse(b"\xef\xbb\xbf" + orjson.dumps(_event())) == [_event()]


def test_kafka_rest_records_with_object_values() -> None:
    events = [_event(message="a"), _event(message="b")]
    body = orjson.dumps({"records": [{"value": e} for e in events]})
    assert _parse(body) == events


def test_kafka_rest_records_with_json_string_values() -> None:
    events = [_event(message="a"), _event(message="b")]
    body = orjson.dumps({"records": [{"value": json.dumps(e)} for e in events]})
    assert _parse(body) == events


def test_a_bad_kafka_rest_record_costs_only_that_record() -> None:
    body = orjson.dumps({"records": [{"value": "{not json"}, {"key": "k"}, {"value": _event()}]})
    items = _parse(body)
    assert isinstance(items[0], ParseFailure) and items[0].index == 0
    assert items[0].error.startswith("record value is not valid JSON")
    assert items[1] == ParseFailure(1, "Kafka REST record has no 'value'")
    assert items[2] == _event()


def test_an_event_with_a_records_field_is_an_event_not_a_kafka_batch() -> None:
    item = _event(records=[{"value": 1}])
    assert _parse(orjson.dumps(item)) == [item]


def test_gzip_body_is_decompressed() -> None:
    events = [_event(message=f"m{i}") for i in range(5)]
    ndjson = b"\n".join(orjson.dumps(e) for e in events)
    assert _parse(gzip.compress(ndjson), encoding="gzip") == events
    assert _parse(gzip.compress(ndjson), encoding="x-gzip") == events


def test_gzip_without_content_encoding_is_detected_by_its_magic_bytes() -> None:
    assert _parse(gzip.compress(orjson.dumps(_event()))) == [_event()]


def test_concatenated_gzip_members_are_all_read() -> None:
    body = gzip.compress(orjson.dumps(_event(message="a")) + b"\n") + gzip.compress(
        orjson.dumps(_event(message="b"))
    )
    assert _parse(body, encoding="gzip") == [_event(message="a"), _event(message="b")]


def test_deflate_body_is_decompressed() -> None:
    assert _parse(zlib.compress(orjson.dumps(_event())), encoding="deflate") == [_event()]


def test_gzip_bomb_over_the_cap_is_too_large_not_inflated() -> None:
    bomb = gzip.compress(b" " * (16 * 1024 * 1024))  # ~16 KiB on the wire
    assert len(bomb) < MAX
    with pytest.raises(BodyError) as caught:
        _parse(bomb, encoding="gzip")
    assert caught.value.status == 413
    assert str(caught.value) == f"decompressed body larger than {MAX} bytes"


def test_gzip_that_inflates_exactly_to_the_cap_is_accepted() -> None:
    body = orjson.dumps([_event()] * 50)
    assert _parse(gzip.compress(body), encoding="gzip", max_bytes=len(body)) == [_event()] * 50
    with pytest.raises(BodyError, match="decompressed body larger"):
        _parse(gzip.compress(body), encoding="gzip", max_bytes=len(body) - 1)


def test_truncated_gzip_is_a_body_error() -> None:
    body = gzip.compress(orjson.dumps([_event()] * 50))
    with pytest.raises(BodyError, match="truncated") as caught:
        _parse(body[: len(body) // 2], encoding="gzip")
    assert caught.value.status == 422


def test_content_encoding_gzip_on_a_plain_body_is_a_body_error() -> None:
    with pytest.raises(BodyError, match="not valid gzip") as caught:
        _parse(orjson.dumps(_event()), encoding="gzip")
    assert caught.value.status == 422


def test_an_unsupported_content_encoding_is_415() -> None:
    with pytest.raises(BodyError) as caught:
        _parse(orjson.dumps(_event()), encoding="br")
    assert caught.value.status == 415


def test_identity_content_encoding_is_plain() -> None:
    assert _parse(orjson.dumps(_event()), encoding="identity") == [_event()]


def test_an_oversize_body_is_413() -> None:
    body = orjson.dumps([_event()] * 100)
    with pytest.raises(BodyError) as caught:
        _parse(body, max_bytes=len(body) - 1)
    assert caught.value.status == 413


def test_gzip_members_past_the_cap_are_413_at_once() -> None:
    member = gzip.compress(b" ")
    body = member * 100_000  # decompressed before in time quadratic in the members (25 s)
    started = time.perf_counter()
    with pytest.raises(BodyError, match=f"more than {MAX_GZIP_MEMBERS} gzip members") as caught:
        _parse(body, encoding="gzip", max_bytes=10 * MAX)
    assert caught.value.status == 413
    assert time.perf_counter() - started < 1


def test_gzip_members_up_to_the_cap_are_read() -> None:
    lines = [orjson.dumps(_event(message=f"m{i}")) + b"\n" for i in range(MAX_GZIP_MEMBERS)]
    body = b"".join(gzip.compress(line) for line in lines)
    assert [item["message"] for item in _parse(body, encoding="gzip")] == [  # type: ignore[index]
        f"m{i}" for i in range(MAX_GZIP_MEMBERS)
    ]


def test_gzip_decompression_is_linear_in_the_body() -> None:
    # Many members ahead of a long rest (here zero padding): each member used to copy the rest.
    lines = [orjson.dumps(_event(message=f"m{i}")) + b"\n" for i in range(MAX_GZIP_MEMBERS)]
    body = b"".join(gzip.compress(line) for line in lines) + b"\x00" * (4 * MAX)
    started = time.perf_counter()
    assert len(_parse(body, encoding="gzip", max_bytes=10 * MAX)) == MAX_GZIP_MEMBERS
    assert time.perf_counter() - started < 0.5


def test_zero_padding_after_the_last_gzip_member_is_ignored() -> None:
    body = gzip.compress(orjson.dumps(_event())) + b"\x00" * 512
    assert _parse(body, encoding="gzip") == [_event()]
    with pytest.raises(BodyError, match="not valid gzip"):
        _parse(body + b"junk", encoding="gzip")


# --- validation --------------------------------------------------------------------------------


def test_a_valid_item_becomes_a_normalised_event() -> None:
    event = _valid(_event(syslog_severity=3, source="syslog"))
    assert event.timestamp == datetime(2025, 1, 12, 10, 30, tzinfo=UTC)
    assert event.received_at == RECEIVED
    assert event.hostname == "router-01.example.com"
    assert event.message == "Interface GigabitEthernet0/1 changed state to down"
    assert (event.source, event.syslog_severity, event.trap_oid) == ("syslog", 3, None)


@pytest.mark.parametrize("field", REQUIRED)
@pytest.mark.parametrize("absent", [..., None, ""])
def test_a_missing_required_field_is_named(field: str, absent: object) -> None:
    assert _error(_event(**{field: absent})) == f"missing required field {field!r}"


def test_the_required_set_is_configurable() -> None:
    item = {"message": "no host, no time"}
    assert _error(item) == "missing required field 'timestamp'"
    event = _valid(item, required=("message",))
    assert event.timestamp == RECEIVED  # no timestamp: the time it was received
    assert event.hostname == "unknown"
    assert _error(_event(source=...), required=(*REQUIRED, "source")) == (
        "missing required field 'source'"
    )


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ([1, 2], "item is not a JSON object (got array)"),
        ("text", "item is not a JSON object (got string)"),
        (42, "item is not a JSON object (got number)"),
        (None, "item is not a JSON object (got null)"),
    ],
)
def test_an_item_that_is_not_an_object_is_rejected(item: object, error: str) -> None:
    assert _error(item) == error


@pytest.mark.parametrize(
    ("hostname", "error"),
    [
        (17, "hostname must be a string, got number"),
        ("   ", "hostname is blank"),
        ("h" * (MAX_HOSTNAME_CHARS + 1), f"hostname longer than {MAX_HOSTNAME_CHARS} characters"),
    ],
)
def test_bad_hostnames_are_rejected(hostname: object, error: str) -> None:
    assert _error(_event(hostname=hostname)) == error


def test_hostname_surrounding_whitespace_is_dropped() -> None:
    assert _valid(_event(hostname=" router-01 ")).hostname == "router-01"


def test_message_must_be_a_string_of_sane_length() -> None:
    assert _error(_event(message={"text": "x"})) == "message must be a string, got object"
    too_long = "x" * (MAX_MESSAGE_CHARS + 1)
    assert _error(_event(message=too_long)) == (
        f"message longer than {MAX_MESSAGE_CHARS} characters"
    )
    assert _valid(_event(message="x" * MAX_MESSAGE_CHARS)).message == "x" * MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-01-12T10:30:00Z", datetime(2025, 1, 12, 10, 30, tzinfo=UTC)),
        ("2025-01-12T11:30:00.123456+01:00", datetime(2025, 1, 12, 10, 30, 0, 123456, tzinfo=UTC)),
        ("2025-01-12T10:30:00", datetime(2025, 1, 12, 10, 30, tzinfo=UTC)),  # naive: UTC
        ("2025-01-12 10:30:00-05:00", datetime(2025, 1, 12, 15, 30, tzinfo=UTC)),
        ("2025-01-12t10:30:00z", datetime(2025, 1, 12, 10, 30, tzinfo=UTC)),  # RFC 3339 lower case
    ],
)
def test_timestamps_become_aware_utc(timestamp: str, expected: datetime) -> None:
    parsed = _valid(_event(timestamp=timestamp)).timestamp
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("timestamp", "error"),
    [
        ("yesterday", "timestamp is not ISO 8601: 'yesterday'"),
        ("12/01/2025 10:30", "timestamp is not ISO 8601: '12/01/2025 10:30'"),
        (1736677800, "timestamp must be an ISO 8601 string, got number"),
        ("0001-01-01T00:00:00+01:00", "timestamp is out of range: '0001-01-01T00:00:00+01:00'"),
    ],
)
def test_bad_timestamps_are_rejected(timestamp: object, error: str) -> None:
    assert _error(_event(timestamp=timestamp)) == error


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (7, 7), ("3", 3), (" 5 ", 5), (4.0, 4), ("err", 3), ("WARNING", 4), (None, None)],
)
def test_syslog_severity_accepts_integers_digit_strings_and_keywords(
    value: object, expected: int | None
) -> None:
    assert _valid(_event(syslog_severity=value)).syslog_severity == expected


@pytest.mark.parametrize(
    ("value", "shown"),
    [(9, "9"), (-1, "-1"), (True, "true"), (2.5, "2.5"), ("high", "'high'"), ("3.0", "'3.0'"),
     ([3], "array")],
)  # fmt: skip
def test_bad_syslog_severity_is_rejected(value: object, shown: str) -> None:
    assert _error(_event(syslog_severity=value)) == (
        f"syslog_severity must be an integer 0..7, got {shown}"
    )


def test_severity_is_an_alias_of_syslog_severity() -> None:
    # The rebuild guide's own ingest examples send "severity".
    assert _valid(_event(severity=3)).syslog_severity == 3
    assert _valid(_event(severity=3, syslog_severity=5)).syslog_severity == 5
    assert _valid(_event(severity=3, syslog_severity="")).syslog_severity == 3
    assert _error(_event(severity=12)) == "severity must be an integer 0..7, got 12"
    assert _valid(_event(severity=2), required=(*REQUIRED, "syslog_severity")).syslog_severity == 2


def test_host_is_not_an_alias_of_hostname() -> None:
    assert _error(_event(hostname=..., host="router-01")) == "missing required field 'hostname'"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".1.3.6.1.4.1.9.9.41", "1.3.6.1.4.1.9.9.41"),
        ("1.3.6.1.4.1.9.9.41.2.0.1", "1.3.6.1.4.1.9.9.41.2.0.1"),
        ("", None),
    ],
)
def test_trap_oid_is_kept_without_its_leading_dot(value: str, expected: str | None) -> None:
    assert _valid(_event(trap_oid=value)).trap_oid == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("1.3.6.a", "trap_oid is not a dotted numeric OID: '1.3.6.a'"),
        ("1", "trap_oid is not a dotted numeric OID: '1'"),
        ("1..3", "trap_oid is not a dotted numeric OID: '1..3'"),
        ("1.3.", "trap_oid is not a dotted numeric OID: '1.3.'"),
        ("SNMPv2-MIB::coldStart", "trap_oid is not a dotted numeric OID: 'SNMPv2-MIB::coldStart'"),
        ("1.3.\u0661", "trap_oid is not a dotted numeric OID: '1.3.\u0661'"),  # non-ASCII digit
        (1.3, "trap_oid must be a string, got number"),
    ],
)
def test_bad_trap_oids_are_rejected(value: object, error: str) -> None:
    assert _error(_event(trap_oid=value)) == error


def test_source_is_a_short_string() -> None:
    assert _valid(_event(source="snmp")).source == "snmp"
    assert _valid(_event(source="")).source is None
    assert _error(_event(source=["syslog"])) == "source must be a string, got array"
    assert _error(_event(source="s" * 65)) == "source longer than 64 characters"


def test_a_valid_correlation_id_is_kept_in_canonical_form() -> None:
    given = uuid.uuid4()
    assert _valid(_event(correlation_id=str(given))).correlation_id == str(given)
    assert _valid(_event(correlation_id=str(given).upper())).correlation_id == str(given)


@pytest.mark.parametrize(
    "value", [..., None, "", "not-a-uuid", 12345, "00000000-0000-0000-0000-000000000000"]
)
def test_a_missing_or_invalid_correlation_id_is_replaced_not_rejected(value: object) -> None:
    first = _valid(_event(correlation_id=value)).correlation_id
    second = _valid(_event(correlation_id=value)).correlation_id
    assert uuid.UUID(first).version == 4
    assert first != second


def test_raw_is_the_original_item_with_unknown_fields() -> None:
    item = _event(facility=1, severity=3, program="sshd", trap_oid=".1.3.6.1")
    event = _valid(item)
    assert event.raw is item
    assert event.raw["facility"] == 1 and event.raw["program"] == "sshd"
    assert event.raw["trap_oid"] == ".1.3.6.1"  # as sent, not as normalised


def test_validate_items_reports_rejections_by_body_position() -> None:
    body = orjson.dumps(
        [_event(message="ok 0"), {"hostname": "x"}, _event(message="ok 2"), "not an object",
         _event(syslog_severity=9)]
    )  # fmt: skip
    events, rejections = validate_items(
        _parse(body), required_fields=REQUIRED, received_at=RECEIVED
    )
    assert [e.message for e in events] == ["ok 0", "ok 2"]
    assert rejections == [
        Rejection(1, "missing required field 'timestamp'"),
        Rejection(3, "item is not a JSON object (got string)"),
        Rejection(4, "syslog_severity must be an integer 0..7, got 9"),
    ]


# --- items that cannot be stored ----------------------------------------------------------------


def _nested(depth: int) -> object:
    return orjson.loads(b"[" * depth + b"]" * depth)


def test_an_item_too_deep_to_write_is_rejected_with_its_index() -> None:
    deep = _event(detail=_nested(300))  # orjson reads 1024 levels but writes only 254
    body = orjson.dumps([_event(message="ok 0"), _event(message="ok 1")])[:-1]
    body += b"," + b'{"timestamp":"2025-01-12T10:30:00Z","hostname":"h","message":"m","d":'
    body += b"[" * 300 + b"]" * 300 + b"}]"
    events, rejections = validate_items(
        _parse(body), required_fields=REQUIRED, received_at=RECEIVED
    )
    assert [e.message for e in events] == ["ok 0", "ok 1"]
    assert rejections == [Rejection(2, "item is nested too deeply to store")]
    assert _error(deep) == "item is nested too deeply to store"


def test_an_accepted_events_json_is_written_once_and_reads_back_as_its_wire_form() -> None:
    event = _valid(_event(detail=_nested(200)))
    assert orjson.loads(event.wire_json) == event.to_wire()


@pytest.mark.parametrize(
    "timestamp",
    [
        "2025-01-12T10:30:00Z",
        "2025-01-12T10:30:00.000001+00:00",
        "2025-01-12T10:30:00.5-07:30",
        "0999-03-01T00:00:00",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
    ],
)
def test_an_events_json_is_byte_for_byte_its_wire_form_written_by_orjson(timestamp: str) -> None:
    # The ledger and the task carry these bytes: datetimes written as isoformat() writes them.
    for received_at in (RECEIVED, datetime(2025, 1, 12, 10, 31, tzinfo=UTC)):
        event = validate_item(
            _event(timestamp=timestamp), required_fields=REQUIRED, received_at=received_at
        )
        assert event.wire_json == orjson.dumps(event.to_wire())


@pytest.mark.parametrize(
    "item",
    [
        _event(message="link\x00down"),
        _event(hostname="router\x00"),
        _event(**{"vendor\x00field": 1}),
        _event(detail={"deep": ["x", {"y": "\x00"}]}),
    ],
    ids=["message", "hostname", "key", "nested"],
)
def test_a_nul_character_anywhere_in_an_item_is_rejected(item: dict) -> None:
    # PostgreSQL text and jsonb cannot hold U+0000: reject it the same way on every database.
    assert _error(item) == "item holds a NUL character (U+0000), which cannot be stored"


def test_a_backslash_u0000_written_out_is_not_a_nul() -> None:
    event = _valid(_event(message="C:\\u0000 is not a NUL"))
    assert event.message == "C:\\u0000 is not a NUL"


def test_a_later_item_with_the_same_correlation_id_is_rejected() -> None:
    cid = str(uuid.uuid4())
    items = [
        _event(message="first", correlation_id=cid),
        _event(message="other"),
        _event(message="again", correlation_id=cid.upper()),  # the same id, spelled otherwise
    ]
    events, rejections = validate_items(items, required_fields=REQUIRED, received_at=RECEIVED)
    assert [e.message for e in events] == ["first", "other"]
    assert rejections == [Rejection(2, f"duplicate correlation_id {cid} (also item 0)")]


def test_a_rejected_item_does_not_claim_its_correlation_id() -> None:
    cid = str(uuid.uuid4())
    items = [_event(message="\x00", correlation_id=cid), _event(message="ok", correlation_id=cid)]
    events, rejections = validate_items(items, required_fields=REQUIRED, received_at=RECEIVED)
    assert [e.message for e in events] == ["ok"]
    assert [r.index for r in rejections] == [0]


def test_received_at_is_normalised_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    event = validate_item(
        _event(), required_fields=REQUIRED, received_at=datetime(2025, 1, 12, 11, 31, tzinfo=paris)
    )
    assert event.received_at == datetime(2025, 1, 12, 10, 31, tzinfo=UTC)
    assert event.received_at.tzinfo is UTC


# --- the wire form -----------------------------------------------------------------------------


def test_to_wire_and_from_wire_round_trip_exactly_through_json() -> None:
    event = _valid(
        _event(
            timestamp="2025-01-12T11:30:00.123456+01:00",
            syslog_severity="2",
            source="snmp",
            trap_oid=".1.3.6.1.4.1.9.9.41.2.0.1",
            extra={"nested": [1, "two", None]},
        )
    )
    wire = event.to_wire()
    assert orjson.loads(orjson.dumps(wire)) == wire  # JSON-safe as it stands
    assert Event.from_wire(json.loads(json.dumps(wire))) == event
    assert Event.from_wire(orjson.loads(orjson.dumps(wire))) == event
    assert wire["timestamp"] == "2025-01-12T10:30:00.123456+00:00"


def test_to_wire_round_trips_an_event_with_no_optional_fields() -> None:
    event = _valid({"message": "m"}, required=("message",))
    assert Event.from_wire(json.loads(json.dumps(event.to_wire()))) == event


def test_from_wire_makes_the_event_its_dataclass_init_makes_field_by_field() -> None:
    # from_wire sets Event's slots itself (cheaper than the frozen dataclass's __init__): the
    # event must be the same in every field, wire_json included, and still frozen.
    assert not hasattr(Event, "__post_init__")  # nothing that __init__ would run is skipped
    event = _valid(_event(source="snmp", trap_oid=".1.3.6.1.4.1.9.9.41.2.0.1", extra={"k": [1]}))
    wire = orjson.loads(orjson.dumps(event.to_wire()))
    rebuilt = Event.from_wire(wire)
    by_init = Event(
        **{f.name: getattr(rebuilt, f.name) for f in dataclasses.fields(Event) if f.init}
    )
    for f in dataclasses.fields(Event):
        assert getattr(rebuilt, f.name) == getattr(by_init, f.name), f.name
        assert type(getattr(rebuilt, f.name)) is type(getattr(by_init, f.name)), f.name
    assert rebuilt == event and rebuilt.wire_json == b""
    assert rebuilt.received_at.tzinfo is UTC and rebuilt.timestamp.tzinfo is UTC
    with pytest.raises(dataclasses.FrozenInstanceError):
        rebuilt.hostname = "elsewhere"  # type: ignore[misc]


def test_validation_makes_the_event_its_dataclass_init_makes_field_by_field() -> None:
    # validate_item sets Event's slots itself, as from_wire does: the same event in every field.
    for item in (_event(), _event(source=" s ", syslog_severity="err", extra={"k": [1]}),
                 {"message": _trap_message()}):  # fmt: skip
        event = validate_item(item, required_fields=(), received_at=RECEIVED)
        by_init = Event(**{f.name: getattr(event, f.name) for f in dataclasses.fields(Event)})
        for f in dataclasses.fields(Event):
            assert getattr(event, f.name) is getattr(by_init, f.name), f.name
        assert event == by_init and repr(event) == repr(by_init)
        assert event.wire_json == orjson.dumps(event.to_wire())
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.hostname = "elsewhere"  # type: ignore[misc]


@pytest.mark.parametrize(
    "wire",
    [{}, {"correlation_id": "x"}, "not a dict",
     {**_valid(_event()).to_wire(), "timestamp": "yesterday"}],
)  # fmt: skip
def test_from_wire_rejects_what_to_wire_did_not_make(wire: Any) -> None:
    with pytest.raises(ValueError, match="not a wire event"):
        Event.from_wire(wire)


def test_from_wire_reports_the_first_damaged_field_in_field_order() -> None:
    # A dead letter's reason names what is wrong with it: the fields are read in their order.
    wire = {**_valid(_event()).to_wire(), "received_at": "later", "message": None}
    del wire["hostname"]
    with pytest.raises(ValueError, match=r"^not a wire event: ValueError: .*'later'$"):
        Event.from_wire(wire)
    del wire["received_at"]
    with pytest.raises(ValueError, match=r"^not a wire event: KeyError: 'received_at'$"):
        Event.from_wire(wire)
    wire["received_at"] = wire["timestamp"]
    with pytest.raises(ValueError, match=r"^not a wire event: KeyError: 'hostname'$"):
        Event.from_wire(wire)


# --- snmptrapd varbinds ------------------------------------------------------------------------


def test_trap_oid_comes_from_the_snmptrapoid_varbind() -> None:
    assert trap_oid_from_varbinds(_trap_message()) == "1.3.6.1.4.1.9.9.41.2.0.1"


def test_trap_oid_is_found_after_rsyslogs_escaped_separator() -> None:
    # rsyslog's default parser.escapeControlCharactersOnReceive turns RS into "#036".
    assert trap_oid_from_varbinds(_trap_message("#036")) == "1.3.6.1.4.1.9.9.41.2.0.1"


@pytest.mark.parametrize("separator", ["\t", ", ", " ␞ "])
def test_the_varbind_separator_is_configurable(separator: str) -> None:
    message = _trap_message(separator)
    assert trap_oid_from_varbinds(message, separator) == "1.3.6.1.4.1.9.9.41.2.0.1"
    assert trap_oid_from_varbinds(message) is None  # not one of the default separators


def test_snmptrapds_default_syslog_format_is_read_with_its_comma_separator() -> None:
    # snmptrapd's built-in v2 syslog format is "%B [%b]: Trap %#v" (", " before each varbind).
    message = (
        "switch-9 [UDP: [10.0.0.9]:50123->[10.0.0.2]:162]: Trap , "
        ".1.3.6.1.2.1.1.3.0 = Timeticks: (1) 0:00:00.01, "
        ".1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.1.6.3.1.1.5.3"
    )
    assert trap_oid_from_varbinds(message, ", ") == "1.3.6.1.6.3.1.1.5.3"


@pytest.mark.parametrize(
    "varbind",
    [
        "SNMPv2-MIB::snmpTrapOID.0 = OID: .1.3.6.1.4.1.9.9.41.2.0.1",  # symbolic name, -On value
        "1.3.6.1.6.3.1.1.4.1.0 = OID: 1.3.6.1.4.1.9.9.41.2.0.1",  # no leading dots
        ".1.3.6.1.6.3.1.1.4.1.0 = .1.3.6.1.4.1.9.9.41.2.0.1",  # -OQ
        ".1.3.6.1.6.3.1.1.4.1.0 .1.3.6.1.4.1.9.9.41.2.0.1",  # -Oq
    ],
)
def test_trap_oid_is_read_from_other_snmptrapd_layouts(varbind: str) -> None:
    assert trap_oid_from_varbinds(f"host: trap{RS}{varbind}") == "1.3.6.1.4.1.9.9.41.2.0.1"


@pytest.mark.parametrize(
    "message",
    [
        "Interface GigabitEthernet0/1 changed state to down",
        # Quoted inside a string value, not a varbind of its own: no spoofing the trap OID.
        f'host: trap{RS}.1.3.6.1.4.1.9.1 = STRING: "x .1.3.6.1.6.3.1.1.4.1.0 = OID: .1.2.3"',
        # Symbolic value (snmptrapd without -On): not a numeric OID.
        f"host: trap{RS}.1.3.6.1.6.3.1.1.4.1.0 = OID: CISCO-SYSLOG-MIB::clogMessageGenerated",
        f"host: trap{RS}.1.3.6.1.6.3.1.1.4.1.0 = OID: .1.3.6.",
    ],
)
def test_no_trap_oid_without_a_numeric_snmptrapoid_varbind(message: str) -> None:
    assert trap_oid_from_varbinds(message) is None


def test_the_first_snmptrapoid_varbind_wins() -> None:
    message = _trap_message() + f"{RS}.1.3.6.1.6.3.1.1.4.1.0 = OID: .1.9.9"
    assert trap_oid_from_varbinds(message) == "1.3.6.1.4.1.9.9.41.2.0.1"


def test_a_relayed_trap_gets_its_trap_oid_and_source_snmp() -> None:
    event = _valid(_event(message=_trap_message()))
    assert (event.trap_oid, event.source) == ("1.3.6.1.4.1.9.9.41.2.0.1", "snmp")
    assert _valid(_event(message=_trap_message(), source="relay")).source == "relay"


def test_an_explicit_trap_oid_wins_over_the_varbind() -> None:
    event = _valid(_event(message=_trap_message(), trap_oid="1.3.6.1.4.1.9"))
    assert (event.trap_oid, event.source) == ("1.3.6.1.4.1.9", None)


def test_a_relayed_trap_in_json_survives_the_body_parser() -> None:
    # RS travels JSON-escaped (\u001e) and must reach the varbind reader intact.
    body = orjson.dumps(_event(message=_trap_message())) + b"\n" + orjson.dumps(_event())
    assert b"\\u001e" in body
    events, rejections = validate_items(
        _parse(body), required_fields=REQUIRED, received_at=RECEIVED
    )
    assert rejections == []
    assert events[0].trap_oid == "1.3.6.1.4.1.9.9.41.2.0.1"


def test_the_correlation_ids_made_for_a_body_are_distinct_version_4_uuids() -> None:
    # One read of the random source serves a whole body; each id is still a canonical uuid4.
    items = [_event(message=f"event {n}") for n in range(500)]
    events, rejections = validate_items(items, required_fields=REQUIRED, received_at=RECEIVED)
    assert rejections == []
    made = [e.correlation_id for e in events]
    assert len(set(made)) == 500
    for text in made:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    assert all(orjson.loads(e.wire_json)["correlation_id"] == e.correlation_id for e in events)


def test_a_bodys_correlation_id_supply_reads_again_once_used_up() -> None:
    supply = CorrelationIds(2)
    made = [supply.next() for _ in range(5)]
    assert len(set(made)) == 5
    assert all(uuid.UUID(text).version == 4 for text in made)


def test_new_correlation_ids_are_random_version_4_uuids_in_canonical_text() -> None:
    made = {new_correlation_id() for _ in range(1000)}
    assert len(made) == 1000
    for text in made:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
