"""Why, for every event: each audited event's reason for not reaching Moog and its rules version,
through classify_batch on a real PostgreSQL and Redis, and as the API and the admin UI filter them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import redis
from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import (
    HELD_REASONS,
    NOT_FORWARDED_REASONS,
    AlertRule,
    DevelopmentHost,
    EventAuditLog,
)
from mutt_app.rules.cache import bump_rules_version
from mutt_app.runtime import Runtime, runtime_of
from mutt_app.watch.dashboard import held_by_reason
from tests.factories import wire_event
from tests.web import call

RULES = (
    # match, prod handling, dev handling
    ("LINK-DOWN", "Page_and_ticket", "Log_only"),
    ("FAN-FAIL", "Email_only", "Email_only"),
    ("DEBUG", "Log_only", "Suppress"),
    ("DISK-FULL", "Ticket_only", "Ticket_only"),
)


def _seed(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        for match, prod, dev in RULES:
            session.add(
                AlertRule(
                    match_string=match,
                    match_type="contains",
                    prod_handling=prod,
                    dev_handling=dev,
                    team_assignment="NETO",
                )
            )
        session.add(DevelopmentHost(hostname="lab-1"))


def test_every_event_not_forwarded_has_its_reason_and_every_event_its_rules_version(
    settings: Settings, redis_client: redis.Redis, engine: Engine
) -> None:
    _seed(engine)
    for _ in range(3):
        bump_rules_version(redis_client)  # the rules version is now 3
    celery = Runtime(settings).celery
    runtime = runtime_of(celery)
    expected = [
        (wire_event("core-1", "LINK-DOWN Gi0/1 (flap 1)"), None),  # forwarded
        (wire_event("core-1", "LINK-DOWN Gi0/1 (flap 2)"), "duplicate"),  # same template and rule
        (wire_event("core-2", "FAN-FAIL tray 2"), "email_only"),
        (wire_event("core-2", "DEBUG cpu sample"), "log_only"),
        (wire_event("lab-1", "LINK-DOWN Gi0/9"), "dev_handling"),  # dev host, dev Log_only
        (wire_event("lab-1", "DEBUG cpu sample"), "dev_handling"),  # dev host, dev Suppress
        (wire_event("lab-1", "DISK-FULL /var"), None),  # dev host, dev Ticket_only: forwarded
        (wire_event("core-3", "nothing matches this"), "unmatched"),
    ]
    wires = [wire for wire, _ in expected]
    assert classify_batch(runtime, celery, wires)["audited"] == len(wires)

    with runtime.sessions() as session:
        rows = {
            r.correlation_id: r
            for r in session.scalars(select(EventAuditLog)).all()  # type: ignore[misc]
        }
    assert len(rows) == len(wires)
    for wire, reason in expected:
        row = rows[uuid.UUID(wire["correlation_id"])]
        assert (row.held_reason, row.forwarded_to_moog) == (reason, reason is None), wire
        assert row.rules_version == 3
    assert {r.held_reason for r in rows.values()} - {None} <= set(NOT_FORWARDED_REASONS)

    # A rule change moves the version the next events are recorded with.
    bump_rules_version(redis_client)
    later = wire_event("core-3", "still nothing matches")
    classify_batch(runtime, celery, [later])
    with runtime.sessions() as session:
        row = session.scalars(
            select(EventAuditLog).where(
                EventAuditLog.correlation_id == uuid.UUID(later["correlation_id"])
            )
        ).one()
    assert (row.held_reason, row.rules_version) == ("unmatched", 4)

    # The dashboard's "held back" figures still count the storm stages' reasons only.
    with runtime.sessions() as session:
        held = held_by_reason(session, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC))
    assert held == {reason: 0 for reason in HELD_REASONS} | {"duplicate": 1}


def _audit(engine: Engine, *rows: tuple[str, str | None, int | None]) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    ids = []
    with Session(engine) as session, session.begin():
        for hostname, reason, version in rows:
            ids.append(uuid.uuid4())
            session.add(
                EventAuditLog(
                    event_timestamp=now,
                    received_at=now,
                    hostname=hostname,
                    message="m",
                    handling_decision="Log_only",
                    forwarded_to_moog=reason is None,
                    correlation_id=ids[-1],
                    held_reason=reason,
                    rules_version=version,
                )
            )
    return ids


def test_the_api_filters_by_every_reason_and_by_rules_version(
    api_client: FlaskClient,
    engine: Engine,
) -> None:
    rows = [(f"h-{reason}", reason, 5) for reason in NOT_FORWARDED_REASONS]
    _audit(engine, *rows, ("h-sent", None, 6))
    for reason in NOT_FORWARDED_REASONS:
        logs = call(api_client, "GET", f"/api/v2/audit-logs?held_reason={reason}")["logs"]
        assert [(log["hostname"], log["rules_version"]) for log in logs] == [(f"h-{reason}", 5)]
    logs = call(api_client, "GET", "/api/v2/audit-logs?rules_version=6")["logs"]
    assert [log["hostname"] for log in logs] == ["h-sent"]
    assert call(api_client, "GET", "/api/v2/audit-logs?rules_version=x", status=400)["error"]
