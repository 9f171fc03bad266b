"""An audit row's values: audit_values' tuple is audit_row's dict, column for column."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mutt_app.classify.audit import audit_row, audit_values
from mutt_app.classify.audit_copy import COLUMNS
from mutt_app.events.schema import Event
from mutt_app.holdback.base import Held
from mutt_app.rules.decide import Decision

EVENT = Event(
    timestamp=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
    received_at=datetime(2026, 12, 1, 10, 0, 1, tzinfo=UTC),
    hostname="router-1",
    message="Interface Gi0/1 down",
    source=None,
    syslog_severity=3,
    trap_oid=".1.3.6",
    correlation_id="0b7f6f3e-8a43-4a3b-9d0e-1f2a3b4c5d6e",
    raw={"program": "ios"},
)
PAGE = Decision(rule_id=7, handling="Page_and_ticket", team="NETO", is_dev=False, matched=True)


@pytest.mark.parametrize(
    ("decision", "held", "forwarded", "reason", "duplicate_of"),
    [
        (PAGE, None, True, None, None),
        (PAGE, Held("duplicate", "first-id"), False, "duplicate", "first-id"),
        (PAGE, Held("storm_budget"), False, "storm_budget", None),
        (Decision(None, "Log_only", "NETO", False, False), None, False, "unmatched", None),
        (Decision(3, "Log_only", "NETO", True, True), None, False, "dev_handling", None),
        (Decision(3, "Email_only", "NETO", False, True), None, False, "email_only", None),
    ],
)
def test_the_values_are_the_rows_columns_in_order(
    decision: Decision,
    held: Held | None,
    forwarded: bool,
    reason: str | None,
    duplicate_of: str | None,
) -> None:
    row = audit_row(EVENT, decision, held, 12, "trace")
    assert tuple(row) == COLUMNS
    assert tuple(row.values()) == audit_values(EVENT, decision, held, 12, "trace")
    assert row == {
        "event_timestamp": EVENT.timestamp,
        "received_at": EVENT.received_at,
        "hostname": "router-1",
        "message": "Interface Gi0/1 down",
        "source": None,
        "syslog_severity": 3,
        "trap_oid": ".1.3.6",
        "matched_rule_id": decision.rule_id,
        "handling_decision": decision.handling,
        "team_assignment": "NETO",
        "is_dev": decision.is_dev,
        "forwarded_to_moog": forwarded,
        "correlation_id": EVENT.correlation_id,
        "raw": {"program": "ios"},
        "held_reason": reason,
        "duplicate_of": duplicate_of,
        "rules_version": 12,
        "trace_id": "trace",
    }
