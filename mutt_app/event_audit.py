"""The event audit trail: one row per classified event, one INSERT per batch, idempotent.

Rows are keyed on (correlation_id, event_timestamp); a redelivered batch conflicts and inserts nothing,
which is what makes "each accepted event is audited exactly once" hold across crashes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import MetaData, Uuid
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mutt_app.events import Event
from mutt_app.models import EventAuditLog
from mutt_app.rules import Decision

# The audit insert binds correlation_id as the text the event carries and returns it as text: turning
# each one into a uuid.UUID and back (bind, then RETURNING) cost more than deciding the event.
_INSERT_TABLE = EventAuditLog.__table__.to_metadata(MetaData())
_INSERT_TABLE.c.correlation_id.type = Uuid(as_uuid=False)


def audit_row(event: Event, decision: Decision) -> dict[str, Any]:
    """The event_audit_log values for one classified event (correlation_id as text)."""
    return {
        "event_timestamp": event.timestamp,
        "received_at": event.received_at,
        "hostname": event.hostname,
        "message": event.message,
        "source": event.source,
        "syslog_severity": event.syslog_severity,
        "trap_oid": event.trap_oid,
        "matched_rule_id": decision.rule_id,
        "handling_decision": decision.handling,
        "team_assignment": decision.team,
        "is_dev": decision.is_dev,
        "forwarded_to_moog": decision.forward,
        "correlation_id": event.correlation_id,
        "raw": event.raw,
    }


def insert_audit_rows(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert ``rows`` in one statement, skipping any already audited.

    Returns the correlation_ids that were new, so side effects (counters) happen once per event.
    """
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = _INSERT_TABLE
    # One statement with parameter sets, not .values(rows): SQLAlchemy caches its compiled form and
    # sends the rows as multi-row VALUES pages ("insertmanyvalues"); compiling a fresh 100-row VALUES
    # clause for every batch cost more than the database work.
    statement = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["correlation_id", "event_timestamp"])
        .returning(table.c.correlation_id)
    )
    return set(session.connection().execute(statement, list(rows)).scalars())
