"""The Moogsoft event payload: mutt_app.forwarding.moog."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from mutt_app.events.schema import Event, validate_item
from mutt_app.forwarding.moog import (
    build_payload,
    severity_for,
    signature_for,
    unhandled_meta_alert,
)

REQUIRED = ("timestamp", "message", "hostname")
RECEIVED = datetime(2025, 1, 12, 10, 30, 1, tzinfo=UTC)
# What Moog's REST LAM / webhook needs on every event.
MOOG_FIELDS = {
    "signature", "source_id", "external_id", "manager", "source", "class", "agent",
    "agent_location", "type", "severity", "description", "agent_time", "custom_info",
}  # fmt: skip


def _event(**fields: Any) -> Event:
    item = {
        "timestamp": "2025-01-12T10:30:00Z",
        "hostname": "router-01",
        "message": "Interface Gi0/1 changed state to down",
        **fields,
    }
    return validate_item(item, required_fields=REQUIRED, received_at=RECEIVED)


def _payload(event: Event, rule_id: int | None = 42, **kwargs: Any) -> dict[str, Any]:
    return build_payload(
        event, rule_id=rule_id, handling=kwargs.pop("handling", "Page_and_ticket"),
        team=kwargs.pop("team", "NETO"), **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("syslog_severity", "moog_severity"),
    [
        (0, 5),  # emergency -> critical
        (1, 5),  # alert -> critical
        (2, 5),  # critical -> critical
        (3, 4),  # error -> major
        (4, 3),  # warning -> minor
        (5, 2),  # notice -> warning
        (6, 1),  # informational -> indeterminate
        (7, 1),  # debug -> indeterminate
        (None, 2),  # absent -> warning
        (8, 2),  # out of range (never valid at ingest) -> warning
        (-1, 2),
    ],
)
def test_severity_mapping(syslog_severity: int | None, moog_severity: int) -> None:
    assert severity_for(syslog_severity) == moog_severity


def test_payload_carries_every_moog_field() -> None:
    event = _event(syslog_severity=3, source="syslog")
    payload = _payload(event, is_dev=True)
    assert set(payload) == MOOG_FIELDS
    assert payload["source_id"] == payload["source"] == payload["agent_location"] == "router-01"
    assert payload["external_id"] == event.correlation_id
    assert (payload["manager"], payload["agent"], payload["class"]) == ("MUTT", "MUTT", "NETO")
    assert payload["type"] == "syslog"
    assert payload["severity"] == 4
    assert payload["description"] == "Interface Gi0/1 changed state to down"
    assert payload["agent_time"] == int(datetime(2025, 1, 12, 10, 30, tzinfo=UTC).timestamp())
    assert isinstance(payload["agent_time"], int)
    assert payload["custom_info"] == {
        "handling": "Page_and_ticket",
        "rule_id": 42,
        "correlation_id": event.correlation_id,
        "team": "NETO",
        "is_dev": True,
        "event_source": "syslog",
        "syslog_severity": 3,
        "received_at": "2025-01-12T10:30:01+00:00",
    }
    assert orjson.loads(orjson.dumps(payload)) == payload  # travels as JSON


def test_payload_type_is_the_trap_oid_for_traps() -> None:
    payload = _payload(_event(trap_oid=".1.3.6.1.4.1.9.9.41.2.0.1"))
    assert payload["type"] == "1.3.6.1.4.1.9.9.41.2.0.1"


def test_payload_without_syslog_severity_is_a_warning() -> None:
    assert _payload(_event())["severity"] == 2


def test_the_same_alert_recurring_has_the_same_signature() -> None:
    first = _event(syslog_severity=3)
    later = replace(
        _event(syslog_severity=3, timestamp="2025-01-13T08:00:00Z"),
        received_at=RECEIVED + timedelta(days=1),
    )
    assert first.correlation_id != later.correlation_id
    assert _payload(first)["signature"] == _payload(later)["signature"]
    assert _payload(first)["signature"] == "router-01::42::Interface Gi0/1 changed state to down"


def test_signature_differs_by_host_rule_and_text() -> None:
    base = _payload(_event())["signature"]
    assert _payload(_event(hostname="router-02"))["signature"] != base
    assert _payload(_event(), rule_id=43)["signature"] != base
    assert _payload(_event(message="Interface Gi0/2 changed state to down"))["signature"] != base


def test_signature_ignores_host_name_case() -> None:
    assert _payload(_event(hostname="Router-01"))["signature"] == _payload(_event())["signature"]


def test_signature_of_a_trap_is_its_oid_not_its_text() -> None:
    one = _payload(_event(trap_oid="1.3.6.1.4.1.9", message="varbinds at 10:30"))
    two = _payload(_event(trap_oid="1.3.6.1.4.1.9", message="varbinds at 10:31"))
    assert one["signature"] == two["signature"] == "router-01::42::1.3.6.1.4.1.9"


def test_signature_without_a_rule_says_none() -> None:
    assert signature_for("h", None, None, "m") == "h::none::m"


def test_signature_of_a_long_message_is_bounded_and_stable() -> None:
    message = "x" * 10_000
    signature = signature_for("h", 1, None, message)
    assert len(signature) < 100
    assert signature == signature_for("h", 1, None, message)
    assert signature != signature_for("h", 1, None, message + "y")


def test_unhandled_meta_alert_keeps_one_moog_alert_per_host() -> None:
    now = datetime(2025, 1, 12, 10, 30, tzinfo=UTC)
    first = unhandled_meta_alert("Busy-Host", 100, team="NETO", window=86_400, now=now)
    second = unhandled_meta_alert("busy-host", 250, team="NETO", window=86_400, now=now)
    assert set(first) == MOOG_FIELDS
    assert first["signature"] == second["signature"] == "busy-host::unhandled"
    assert first["external_id"] != second["external_id"]  # each is delivered, not deduplicated
    assert first["agent_time"] == int(now.timestamp())
    assert first["class"] == "NETO" and first["manager"] == "MUTT"
    assert "100 events from Busy-Host" in first["description"]
    assert first["custom_info"]["unhandled_count"] == 100
    assert first["custom_info"]["correlation_id"] == first["external_id"]


def test_request_body_in_either_format() -> None:
    from mutt_app.forwarding.moog import request_body

    alerts = [
        {"external_id": f"e-{i}", "signature": f"h::1::m{i}", "severity": s, "source": "h",
         "type": "syslog", "description": f"m{i}", "agent_time": 7, "class": "NETO",
         "custom_info": {"handling": "Ticket_only", "rule_id": None}}
        for i, s in enumerate((0, 1, 2, 3, 4, 5, 9))
    ]  # fmt: skip
    assert request_body(alerts, "rest_lam") == {"events": alerts}
    cloud = request_body(alerts, "cloud")
    assert [e["severity"] for e in cloud] == [
        "clear", "unknown", "warning", "minor", "major", "critical", "warning",
    ]  # fmt: skip
    assert cloud[0]["dedupe_key"] == "h::1::m0" and cloud[0]["check"] == "syslog"
    assert cloud[0]["tags"] == {"handling": "Ticket_only", "rule_id": "", "external_id": "e-0"}
    assert cloud[0]["time"] == 7 and cloud[0]["class"] == "NETO"
