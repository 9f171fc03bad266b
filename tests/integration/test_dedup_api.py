"""Deduplication as the API and the admin UI show it: the tester, the rule field, the audit filter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mutt_app.db.models import EventAuditLog
from mutt_app.events.fingerprint import fingerprint
from tests.factories import CRITICAL
from tests.web import call


def test_the_rule_tester_shows_template_fingerprint_and_window(api_client: FlaskClient) -> None:
    rule = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"]
    event = {"hostname": "R1", "message": "CRITICAL fan 3 failed at 10:15:30 (0x1f)"}
    answer = call(api_client, "POST", "/api/v2/rules/test", event, reason=None, status=200)
    assert answer["template"] == "CRITICAL fan <n> failed at <time> (<hex>)"
    assert answer["fingerprint"] == fingerprint(
        "r1", rule, "CRITICAL fan 9 failed at 1:02:03 (0x2)"
    )
    assert answer["dedup_window_seconds"] == 60  # DEDUP_WINDOW_SECONDS

    call(api_client, "PUT", f"/api/v2/rules/{rule}", {"dedup_window_seconds": 0}, status=200)
    answer = call(api_client, "POST", "/api/v2/rules/test", event, reason=None, status=200)
    assert answer["dedup_window_seconds"] == 0


def test_a_rules_dedup_window_is_a_checked_nullable_field(api_client: FlaskClient) -> None:
    created = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)
    assert created["rule"]["dedup_window_seconds"] is None
    rule = created["id"]
    for bad in (-1, 86_401):
        answer = call(
            api_client, "PUT", f"/api/v2/rules/{rule}", {"dedup_window_seconds": bad}, status=422
        )
        assert "dedup_window_seconds" in answer["error"]
    call(api_client, "PUT", f"/api/v2/rules/{rule}", {"dedup_window_seconds": 300}, status=200)
    assert call(api_client, "GET", f"/api/v2/rules/{rule}")["rule"]["dedup_window_seconds"] == 300
    call(api_client, "PUT", f"/api/v2/rules/{rule}", {"dedup_window_seconds": None}, status=200)
    assert call(api_client, "GET", f"/api/v2/rules/{rule}")["rule"]["dedup_window_seconds"] is None


def test_the_event_audit_shows_and_filters_by_held_reason(
    api_client: FlaskClient,
    engine: Engine,
) -> None:
    first, repeat = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        for correlation_id, held in ((first, None), (repeat, "duplicate")):
            session.add(
                EventAuditLog(
                    event_timestamp=now,
                    received_at=now,
                    hostname="sw-1",
                    message="link down",
                    handling_decision="Ticket_only",
                    forwarded_to_moog=held is None,
                    correlation_id=correlation_id,
                    held_reason=held,
                    duplicate_of=first if held else None,
                )
            )
    held = call(api_client, "GET", "/api/v2/audit-logs?held_reason=duplicate", status=200)["logs"]
    assert [(log["correlation_id"], log["duplicate_of"]) for log in held] == [
        (str(repeat), str(first))
    ]
    assert len(call(api_client, "GET", "/api/v2/audit-logs", status=200)["logs"]) == 2
    answer = call(api_client, "GET", "/api/v2/audit-logs?held_reason=bogus", status=400)
    assert "held_reason" in answer["error"]


def test_a_rule_names_the_rule_it_clears_checked(api_client: FlaskClient) -> None:
    down = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)
    assert down["rule"]["clears_rule_id"] is None
    up = call(
        api_client, "POST", "/api/v2/rules", {**CRITICAL, "clears_rule_id": down["id"]}, status=201
    )
    assert up["rule"]["clears_rule_id"] == down["id"]
    missing = call(
        api_client, "POST", "/api/v2/rules", {**CRITICAL, "clears_rule_id": 99999}, status=422
    )
    assert "no rule 99999" in missing["error"]
    itself = {"clears_rule_id": down["id"]}
    answer = call(api_client, "PUT", f"/api/v2/rules/{down['id']}", itself, status=422)
    assert "cannot clear itself" in answer["error"]
    call(api_client, "PUT", f"/api/v2/rules/{up['id']}", {"clears_rule_id": None}, status=200)
    assert call(api_client, "GET", f"/api/v2/rules/{up['id']}")["rule"]["clears_rule_id"] is None
