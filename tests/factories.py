"""Builders of the things tests need: rules, audit rows, events. One function per thing.

The builders that write take a session and return what a test refers to later (an id, a correlation
id); the rest return plain values.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mutt_app.classify.audit import insert_audit_rows
from mutt_app.db.models import EventAuditLog

# Rule fields as the API takes them.
CRITICAL = {
    "match_string": "CRITICAL",
    "match_type": "contains",
    "priority": 900,
    "prod_handling": "Page_and_ticket",
    "dev_handling": "Ticket_only",
    "team_assignment": "NETO",
}
INTERFACE = {
    "match_string": "Interface.*down",
    "match_type": "regex",
    "priority": 800,
    "prod_handling": "Page_and_ticket",
    "dev_handling": "Email_only",
    "team_assignment": "NETO",
}
CATCH_ALL = {
    "syslog_severity": 7,
    "match_type": "contains",
    "priority": 1,
    "prod_handling": "Log_only",
    "dev_handling": "Suppress",
    "team_assignment": "NETO",
}
BGP = {
    "match_string": "BGP",
    "match_type": "contains",
    "priority": 500,
    "prod_handling": "Ticket_only",
    "dev_handling": "Log_only",
    "team_assignment": "ROUTING",
}
# The live rules of a backtest's known history, by name.
RULES = {"critical": CRITICAL, "interface": INTERFACE, "bgp": BGP}


def audit_event(
    session: Session,
    hostname: str,
    message: str,
    rule_id: int | None,
    handling: str,
    *,
    age: timedelta = timedelta(minutes=5),
    severity: int | None = 3,
) -> str:
    """One event_audit_log row with a known (recorded) decision; returns its correlation id."""
    moment = datetime.now(UTC) - age
    cid = str(uuid.uuid4())
    insert_audit_rows(
        session,
        [
            {
                "event_timestamp": moment,
                "received_at": moment,
                "hostname": hostname,
                "message": message,
                "source": "syslog",
                "syslog_severity": severity,
                "trap_oid": None,
                "matched_rule_id": rule_id,
                "handling_decision": handling,
                "team_assignment": "NETO",
                "is_dev": hostname == "dev-01",
                "forwarded_to_moog": handling in ("Page_and_ticket", "Ticket_only"),
                "correlation_id": cid,
                "raw": {"message": message},
            }
        ],
    )
    return cid


def event_audit_rows(engine: Engine, base: datetime) -> list[uuid.UUID]:
    """Five event_audit_log rows an hour apart from ``base`` ("event 0" to "event 4", db-1 and
    web-1 in turn, the first three matched by rule 7); their correlation ids."""
    ids = [uuid.uuid4() for _ in range(5)]
    with Session(engine) as session, session.begin():
        for i, correlation_id in enumerate(ids):
            session.add(
                EventAuditLog(
                    event_timestamp=base + timedelta(hours=i),
                    received_at=base + timedelta(hours=i),
                    hostname="web-1" if i % 2 else "db-1",
                    message=f"event {i}",
                    matched_rule_id=7 if i < 3 else None,
                    handling_decision="Ticket_only" if i < 3 else "Log_only",
                    team_assignment="NETO",
                    correlation_id=correlation_id,
                )
            )
    return ids
