"""The event audit trail: one row per classified event, one statement per batch, idempotent.

Rows are keyed on (correlation_id, event_timestamp); a redelivered batch conflicts and inserts nothing,
which is what makes "each accepted event is audited exactly once" hold across crashes.

Each row says why the event was not forwarded (:func:`not_forwarded_reason`, in ``held_reason``;
NULL exactly when it was) and the rules version it was classified under (``rules_version``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, MetaData, Uuid
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session

from mutt_app.classify import audit_copy
from mutt_app.db.engine import raise_dbapi_error
from mutt_app.db.models import EventAuditLog
from mutt_app.events.schema import Event
from mutt_app.holdback.base import Held
from mutt_app.rules.decide import Decision

# models.DECISION_REASONS, by what the decision says.
UNMATCHED = "unmatched"
DEV_HANDLING = "dev_handling"
_PROD_HANDLING_REASONS = {"Email_only": "email_only", "Log_only": "log_only"}

# The audit insert binds correlation_id as the text the event carries and returns it as text: turning
# each one into a uuid.UUID and back (bind, then RETURNING) cost more than deciding the event.
_INSERT_TABLE = EventAuditLog.__table__.to_metadata(MetaData())
_INSERT_TABLE.c.correlation_id.type = Uuid(as_uuid=False)
_INSERT_TABLE.c.duplicate_of.type = Uuid(as_uuid=False)


def not_forwarded_reason(decision: Decision, held: Held | None) -> str | None:
    """Why an event with ``decision`` was not sent to Moog (models.NOT_FORWARDED_REASONS), or None.

    A storm stage's verdict (``held``) comes first; otherwise the decision's handling says: no rule
    matched, a development host's handling, or a rule whose prod handling does not forward.
    """
    if held is not None:
        return held.reason
    if decision.forward:
        return None
    if not decision.matched:
        return UNMATCHED
    if decision.is_dev:
        return DEV_HANDLING
    return _PROD_HANDLING_REASONS[decision.handling]


def audit_values(
    event: Event,
    decision: Decision,
    held: Held | None = None,
    rules_version: int | None = None,
    trace_id: str | None = None,
) -> tuple[Any, ...]:
    """:func:`audit_row`'s values as a tuple in ``audit_copy.COLUMNS`` order, what
    :func:`insert_audit_values` takes: classify writes a batch's rows without a dict each."""
    return (
        event.timestamp,
        event.received_at,
        event.hostname,
        event.message,
        event.source,
        event.syslog_severity,
        event.trap_oid,
        decision.rule_id,
        decision.handling,
        decision.team,
        decision.is_dev,
        decision.forward and held is None,
        event.correlation_id,
        event.raw,
        not_forwarded_reason(decision, held),
        None if held is None else held.duplicate_of,
        rules_version,
        trace_id,
    )


def audit_row(
    event: Event,
    decision: Decision,
    held: Held | None = None,
    rules_version: int | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """The event_audit_log values for one classified event (correlation_id as text).

    ``held`` says why a forwardable event was held back (None: it was not); ``rules_version`` is
    the rules version the decision was made under; ``trace_id`` the trace it was classified in.
    """
    return dict(
        zip(
            audit_copy.COLUMNS,
            audit_values(event, decision, held, rules_version, trace_id),
            strict=True,
        )
    )


def insert_audit_rows(session: Session, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert ``rows`` (:func:`audit_row`'s dicts) in one statement, skipping any already audited.

    On PostgreSQL a batch holding a row already audited (a redelivery) takes a second statement:
    the first, a COPY of the whole batch, is undone to a savepoint and the batch is inserted again
    skipping those rows.
    Returns the correlation_ids that were new, so side effects (counters) happen once per event.
    """
    if not rows:
        return set()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _insert_postgresql(connection, audit_copy.row_values(rows))
    return _insert_other(connection, rows)


def insert_audit_values(session: Session, values: Sequence[tuple[Any, ...]]) -> set[str]:
    """:func:`insert_audit_rows` for rows given as :func:`audit_values`' tuples."""
    if not values:
        return set()
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        return _insert_postgresql(connection, values)
    return _insert_other(connection, _as_rows(values))


def _as_rows(values: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [dict(zip(audit_copy.COLUMNS, v, strict=True)) for v in values]


def _insert_other(connection: Connection, rows: Sequence[dict[str, Any]]) -> set[str]:
    # One statement with parameter sets, not .values(rows): SQLAlchemy caches its compiled form and
    # sends the rows as multi-row VALUES pages ("insertmanyvalues").
    table = _INSERT_TABLE
    statement = (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["correlation_id", "event_timestamp"])
        .returning(table.c.correlation_id)
    )
    return set(connection.execute(statement, list(rows)).scalars())


# PostgreSQL, the production path. A batch is nearly always new (only a redelivered or replayed
# batch holds rows already audited), so it is first written with COPY, under a savepoint: no SQL
# text to parse, no document to unpack, the rows written a page at a time, and no ON CONFLICT, whose
# per-row work (an index probe before each insert, a speculative insertion lock, a WAL record to
# confirm the row) came on top of that. The unique key still refuses a row already audited; then
# the savepoint undoes the COPY and the batch goes again as _PG_INSERT, which skips those rows. The
# savepoint is set in the COPY's own round trip and not released (that would cost one more per
# batch): the transaction's COMMIT or ROLLBACK ends it with the rest.
_PG_COLUMNS = ", ".join(audit_copy.COLUMNS)
_SAVEPOINT = "mutt_audit_batch"
_PG_COPY = f"SAVEPOINT {_SAVEPOINT}; COPY {EventAuditLog.__tablename__} ({_PG_COLUMNS}) FROM STDIN"
# The idempotent insert, for a batch that holds audited rows: one JSON document that the server
# unpacks (json_populate_recordset, by the table's own row type) into one INSERT ... SELECT ... ON
# CONFLICT DO NOTHING; RETURNING names the new rows. A key a row leaves out is NULL.
_PG_INSERT = (
    f"INSERT INTO {EventAuditLog.__tablename__} ({_PG_COLUMNS}) SELECT {_PG_COLUMNS}"
    f" FROM json_populate_recordset(NULL::{EventAuditLog.__tablename__}, %s)"
    " ON CONFLICT (correlation_id, event_timestamp) DO NOTHING RETURNING correlation_id::text"
)
_CORRELATION_ID = audit_copy.COLUMNS.index("correlation_id")
_PG_INSERT_AGAIN = f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; {_PG_INSERT}"
UNIQUE_VIOLATION = "23505"
"""PostgreSQL's unique_violation: the COPY met a row already audited."""


def _insert_postgresql(connection: Connection, values: Sequence[tuple[Any, ...]]) -> set[str]:
    statement = _PG_COPY
    try:
        with connection.connection.dbapi_connection.cursor() as cursor:  # type: ignore[union-attr]
            try:
                cursor.copy_expert(statement, io.StringIO(audit_copy.copy_values(values)))
            except connection.dialect.loaded_dbapi.Error as exc:
                if getattr(exc, "pgcode", None) != UNIQUE_VIOLATION:
                    raise
            else:
                # Every row was new. correlation_id is canonical text (Event keeps it so).
                return {str(v[_CORRELATION_ID]) for v in values}
            statement = _PG_INSERT_AGAIN
            rows = _as_rows(values)
            # Naive datetimes are UTC, as everywhere in MUTT (never the session's time zone).
            document = orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode()
            cursor.execute(statement, (document,))
            returned = cursor.fetchall()
    except connection.dialect.loaded_dbapi.Error as exc:
        raise_dbapi_error(connection, exc, statement)
    return {correlation_id for (correlation_id,) in returned}
