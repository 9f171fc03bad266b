"""Deduplication as the API and the admin UI show it: the tester, the rule field, the audit filter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mutt_app.db.models import ConfigAuditLog, EventAuditLog
from mutt_app.events.fingerprint import fingerprint
from tests.factories import CRITICAL
from tests.web import call


def test_the_rule_tester_shows_template_fingerprint_and_window(api_client: FlaskClient) -> None:
    rule = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"]
    event = {"hostname": "R1", "message": "CRITICAL fan 3 failed at 10:15:30 (0x1f)"}
    answer = call(api_client, "POST", "/api/v2/rules/test", event, reason=None, status=200)
    # The fan's number names it (kept); the time and the hex id vary between repeats (masked).
    assert answer["template"] == "CRITICAL fan 3 failed at <time> (<hex>)"
    assert answer["fingerprint"] == fingerprint(
        "r1", rule, "CRITICAL fan 3 failed at 1:02:03 (0x2)", None
    )
    assert answer["dedup_key"] == "host, severity, template"
    assert answer["dedup_key_parts"] == [
        {"part": "host", "value": "r1"},
        {"part": "severity", "value": None},
        {"part": "template", "value": "CRITICAL fan 3 failed at <time> (<hex>)"},
    ]
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


PEER_RULE = {
    **CRITICAL,
    "match_type": "regex",
    "match_string": r"CRITICAL BGP peer (?P<peer>\S+) (?P<state>down|up)",
}


def test_a_rules_dedup_key_is_a_checked_nullable_field_and_audited(
    api_client: FlaskClient, engine: Engine
) -> None:
    created = call(api_client, "POST", "/api/v2/rules", PEER_RULE, status=201)
    assert created["rule"]["dedup_key"] is None  # the default key
    rule = created["id"]
    for bad, error in (
        ("host, peer", "dedup_key: unknown part 'peer'; the parts are host, severity, template,"),
        ("group:vrf", "the rule's regex has no group named 'vrf' (its named groups: peer, state)"),
        ("host, host", "dedup_key names host more than once"),
        ("", "dedup_key"),
        (7, "dedup_key"),
    ):
        answer = call(api_client, "PUT", f"/api/v2/rules/{rule}", {"dedup_key": bad}, status=422)
        assert error in answer["error"], answer
    contains = {**CRITICAL, "dedup_key": "group:peer"}
    answer = call(api_client, "POST", "/api/v2/rules", contains, status=422)
    assert "group:peer needs a regex rule" in answer["error"]
    key = {"dedup_key": "host, group:peer"}
    call(api_client, "PUT", f"/api/v2/rules/{rule}", key, status=200)
    assert call(api_client, "GET", f"/api/v2/rules/{rule}")["rule"]["dedup_key"] == key["dedup_key"]
    # The rule's match cannot change under its key: a regex without the group is refused.
    answer = call(
        api_client, "PUT", f"/api/v2/rules/{rule}", {"match_string": "CRITICAL BGP"}, status=422
    )
    assert "no group named 'peer'" in answer["error"]
    call(api_client, "PUT", f"/api/v2/rules/{rule}", {"dedup_key": None}, status=200)
    assert call(api_client, "GET", f"/api/v2/rules/{rule}")["rule"]["dedup_key"] is None
    with Session(engine) as session:
        changes = session.scalars(
            select(ConfigAuditLog)
            .where(ConfigAuditLog.table_name == "alert_rules", ConfigAuditLog.operation == "UPDATE")
            .order_by(ConfigAuditLog.id)
        ).all()
    assert [(c.old_values["dedup_key"], c.new_values["dedup_key"]) for c in changes] == [
        (None, "host, group:peer"),
        ("host, group:peer", None),
    ]


def test_the_rule_tester_shows_a_rules_own_key_and_tries_another(api_client: FlaskClient) -> None:
    body = {**PEER_RULE, "dedup_key": "host, group:peer"}
    rule = call(api_client, "POST", "/api/v2/rules", body, status=201)["id"]
    event = {"hostname": "R1", "message": "CRITICAL BGP peer 10.0.0.1 down after 35ms"}
    answer = call(api_client, "POST", "/api/v2/rules/test", event, reason=None, status=200)
    assert answer["dedup_key"] == "host, group:peer"
    assert answer["dedup_key_parts"] == [
        {"part": "host", "value": "r1"},
        {"part": "group:peer", "value": "10.0.0.1"},
    ]
    up = {**event, "message": "CRITICAL BGP peer 10.0.0.1 up", "severity": 5}
    again = call(api_client, "POST", "/api/v2/rules/test", up, reason=None, status=200)
    assert again["fingerprint"] == answer["fingerprint"]  # one incident per peer, as the key says

    tried = call(
        api_client,
        "POST",
        "/api/v2/rules/test?dedup_key=host,masked",
        event,
        reason=None,
        status=200,
    )
    assert tried["dedup_key_parts"][1] == {
        "part": "masked",
        "value": "CRITICAL BGP peer <ip> down after <n>",
    }
    assert tried["fingerprint"] != answer["fingerprint"]
    assert (
        call(api_client, "GET", f"/api/v2/rules/{rule}")["rule"]["dedup_key"] == body["dedup_key"]
    )
    refused = call(
        api_client, "POST", "/api/v2/rules/test?dedup_key=group:vrf", event, reason=None, status=422
    )
    assert "no group named 'vrf'" in refused["error"]
