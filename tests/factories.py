"""Builders of the things tests need: rules, audit rows, events. One function per thing.

The builders that write take a session and return what a test refers to later (an id, a correlation
id); the rest return plain values.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from mutt_app.classify.audit import insert_audit_rows
from mutt_app.db.models import AlertRule, DevelopmentHost, DeviceTeam, EventAuditLog
from mutt_app.events.schema import validate_item

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
# A rule as the admin form posts it (without its reason and CSRF token).
RULE_FORM = {
    "match_type": "contains",
    "match_string": "LINK-3-UPDOWN",
    "trap_oid": "",
    "syslog_severity": "",
    "priority": "500",
    "prod_handling": "Ticket_only",
    "dev_handling": "Suppress",
    "team_assignment": "NETO",
    "is_active": "y",
}
# The end-to-end pipeline's rules (seed_pipeline).
PIPELINE_RULES = [
    # id 1..4, in this order
    dict(match_string="CRITICAL", match_type="contains", priority=900,
         prod_handling="Page_and_ticket", dev_handling="Ticket_only", team_assignment="NETO"),
    dict(match_string="Interface.*down", match_type="regex", priority=800,
         prod_handling="Page_and_ticket", dev_handling="Email_only", team_assignment="NETO"),
    dict(match_string="disk.*full", match_type="regex", priority=700,
         prod_handling="Ticket_only", dev_handling="Log_only", team_assignment="UNIX"),
    dict(trap_oid="1.3.6.1.4.1.9.9.41", match_type="oid_prefix", priority=600,
         prod_handling="Ticket_only", dev_handling="Suppress", team_assignment="SNMP"),
]  # fmt: skip
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


def seed_pipeline(engine: Engine) -> list[int]:
    """PIPELINE_RULES (ids in their order), lab-router as a development host and db-01's team
    override to DBA; the rule ids."""
    with engine.begin() as conn:
        ids = [conn.execute(insert(AlertRule).values(**r).returning(AlertRule.id)).scalar_one()
               for r in PIPELINE_RULES]  # fmt: skip
        conn.execute(insert(DevelopmentHost), [{"hostname": "lab-router"}])
        conn.execute(insert(DeviceTeam), [{"hostname": "db-01", "team_assignment": "DBA"}])
    return ids


def posted_event(
    message: str, hostname: str = "router-01", *, timestamp: str | None = None, **fields: object
) -> dict:
    """An event as a sender posts it to ingest: its timestamp (now unless given), hostname, message
    and any other ``fields``."""
    when = datetime.now(UTC).isoformat() if timestamp is None else timestamp
    return {"timestamp": when, "hostname": hostname, "message": message, **fields}


def wire_event(
    hostname: str,
    message: str,
    *,
    trap_oid: str | None = None,
    severity: int = 3,
    received_at: datetime | None = None,
) -> dict:
    """An event in the wire form ingest hands to classify, received now unless ``received_at``."""
    item: dict[str, Any] = {"hostname": hostname, "message": message, "syslog_severity": severity}
    if trap_oid:
        item["trap_oid"] = trap_oid
    event = validate_item(
        item, required_fields=("hostname",), received_at=received_at or datetime.now(UTC)
    )
    return event.to_wire()
