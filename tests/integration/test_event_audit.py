"""The audit insert on both databases: one statement per new batch, idempotent on correlation_id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.classify.audit import audit_row, audit_values, insert_audit_rows, insert_audit_values
from mutt_app.config import load_settings
from mutt_app.db.engine import database_unavailable, make_engine, session_factory, upgrade
from mutt_app.db.models import EventAuditLog
from mutt_app.events.schema import Event
from mutt_app.holdback.base import Held
from mutt_app.rules.decide import Decision


@pytest.fixture(params=["postgresql", "sqlite"])
def audit_engine(request, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'mutt.db'}"
    engine = make_engine(load_settings({"DATABASE_URL": url, "MUTT_DATA_DIR": str(tmp_path)}))
    if request.param == "sqlite":
        upgrade(engine)
    yield engine
    engine.dispose()


def _event(n: int, **fields: object) -> Event:
    values: dict = {
        "timestamp": datetime(2026, 12, 1, 10, 0, n, tzinfo=UTC),
        "received_at": datetime(2026, 12, 1, 10, 0, n, 500, tzinfo=UTC),
        "hostname": f"router-{n}",
        "message": f"Interface Gi0/{n} changed state to down",
        "source": "rsyslog",
        "syslog_severity": 3,
        "trap_oid": None,
        "correlation_id": str(uuid.uuid4()),
        "raw": {"program": "ios", "n": n, "quote": 'it\'s "quoted"'},
    }
    values.update(fields)
    return Event(**values)


DECISION = Decision(rule_id=7, handling="Page_and_ticket", team="NETO", is_dev=False, matched=True)


def test_rows_are_inserted_with_every_field_and_returned_as_new(audit_engine: Engine) -> None:
    events = [_event(1), _event(2, raw=None, source=None, syslog_severity=None, trap_oid=".1.3.6")]
    with session_factory(audit_engine).begin() as session:
        new = insert_audit_rows(session, [audit_row(e, DECISION) for e in events])
    assert new == {e.correlation_id for e in events}
    with audit_engine.connect() as connection:
        rows = connection.execute(select(EventAuditLog).order_by(EventAuditLog.hostname)).all()
    assert [r.hostname for r in rows] == ["router-1", "router-2"]
    first, second = rows
    assert first.correlation_id == uuid.UUID(events[0].correlation_id)
    assert first.raw == {"program": "ios", "n": 1, "quote": 'it\'s "quoted"'}
    assert first.event_timestamp.replace(tzinfo=UTC) == events[0].timestamp
    assert (first.matched_rule_id, first.handling_decision, first.team_assignment) == (
        7,
        "Page_and_ticket",
        "NETO",
    )
    assert first.forwarded_to_moog is True and first.is_dev is False
    assert (second.raw, second.source, second.syslog_severity, second.trap_oid) == (
        None,
        None,
        None,
        ".1.3.6",
    )


def test_text_and_times_are_stored_exactly_whatever_they_hold(audit_engine: Engine) -> None:
    # The PostgreSQL insert sends the batch as one JSON document: every escape JSON has must come
    # back as the character it stands for, and microseconds must survive (events carry UTC).
    message = 'tab\there, newline\nthere, back\\slash, "quotes", \u00e9t\u00e9 \U0001f6a8 \u2028'
    stamp = datetime(2026, 12, 1, 15, 30, 0, 123456, tzinfo=UTC)
    event = _event(1, message=message, timestamp=stamp, raw={"message": message, "big": 2**63 - 1})
    with session_factory(audit_engine).begin() as session:
        insert_audit_rows(session, [audit_row(event, DECISION)])
    with audit_engine.connect() as connection:
        row = connection.execute(select(EventAuditLog)).one()
    assert row.message == message
    assert row.raw == {"message": message, "big": 2**63 - 1}
    assert row.event_timestamp.replace(tzinfo=UTC) == stamp


def test_a_batch_is_stored_exactly_whether_or_not_its_values_need_escaping(
    audit_engine: Engine,
) -> None:
    # PostgreSQL's COPY text escapes a batch at once unless a value holds a tab or a newline; then
    # that row's values are escaped one by one. Both kinds in one batch, and the NULL marker as text.
    messages = ['C:\\temp "q" \\N\r', "col\tumn", "\\N", "", "line\nbreak \\"]
    events = [_event(n, message=m, raw={"m": m}) for n, m in enumerate(messages)]
    events.append(_event(9, source="\\N", trap_oid=None, raw=None))
    with session_factory(audit_engine).begin() as session:
        new = insert_audit_rows(session, [audit_row(e, DECISION) for e in events])
    assert new == {e.correlation_id for e in events}
    with audit_engine.connect() as connection:
        stored = {str(r.correlation_id): r for r in connection.execute(select(EventAuditLog)).all()}
    for event in events:
        row = stored[event.correlation_id]
        assert (row.message, row.raw, row.source, row.trap_oid) == (
            event.message,
            event.raw,
            event.source,
            None,
        )


def test_a_naive_time_is_stored_as_utc(audit_engine: Engine) -> None:
    event = _event(1, timestamp=datetime(2026, 12, 1, 10, 0, 5))
    with session_factory(audit_engine).begin() as session:
        insert_audit_rows(session, [audit_row(event, DECISION)])
    with audit_engine.connect() as connection:
        stamp = connection.execute(select(EventAuditLog.event_timestamp)).scalar_one()
    assert stamp.replace(tzinfo=stamp.tzinfo or UTC) == datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)


def test_a_redelivered_batch_inserts_nothing_twice(audit_engine: Engine) -> None:
    events = [_event(n) for n in range(5)]
    sessions = session_factory(audit_engine)
    with sessions.begin() as session:
        insert_audit_rows(session, [audit_row(e, DECISION) for e in events[:3]])
    # The redelivered batch overlaps the first: only the two unseen events are new.
    with sessions.begin() as session:
        new = insert_audit_rows(session, [audit_row(e, DECISION) for e in events])
    assert new == {e.correlation_id for e in events[3:]}
    with audit_engine.connect() as connection:
        count = len(connection.execute(select(EventAuditLog.id)).all())
    assert count == 5


def test_rows_given_as_values_are_stored_as_the_same_rows_given_as_dicts(
    audit_engine: Engine,
) -> None:
    # Classify passes audit_values' tuples; a redelivery among them takes the INSERT path too.
    held = Held("duplicate", str(uuid.uuid4()))
    events = [_event(n, source=None if n % 2 else "rsyslog") for n in range(4)]
    twins = [replace(e, correlation_id=str(uuid.uuid4())) for e in events]
    sessions = session_factory(audit_engine)
    with sessions.begin() as session:
        insert_audit_values(session, [audit_values(e, DECISION, held, 3, "t") for e in events[:2]])
        insert_audit_rows(session, [audit_row(e, DECISION, held, 3, "t") for e in twins[:2]])
    with sessions.begin() as session:
        new = insert_audit_values(
            session, [audit_values(e, DECISION, held, 3, "t") for e in events]
        )
        again = insert_audit_rows(session, [audit_row(e, DECISION, held, 3, "t") for e in twins])
    assert new == {e.correlation_id for e in events[2:]}
    assert again == {e.correlation_id for e in twins[2:]}
    columns = [
        c for c in EventAuditLog.__table__.c if c.name not in ("id", "audited_at", "correlation_id")
    ]
    with audit_engine.connect() as connection:
        stored = {
            str(row[0]): tuple(row[1:])
            for row in connection.execute(select(EventAuditLog.correlation_id, *columns))
        }
    assert len(stored) == 8
    for event, twin in zip(events, twins, strict=True):
        assert stored[event.correlation_id] == stored[twin.correlation_id]


def test_a_batch_that_repeats_an_event_audits_it_once(audit_engine: Engine) -> None:
    event, other = _event(1), _event(2)
    rows = [audit_row(e, DECISION) for e in (event, other, event)]
    with session_factory(audit_engine).begin() as session:
        new = insert_audit_rows(session, rows)
    assert new == {event.correlation_id, other.correlation_id}
    with audit_engine.connect() as connection:
        count = len(connection.execute(select(EventAuditLog.id)).all())
    assert count == 2


def test_a_redelivered_batch_keeps_the_transactions_earlier_writes(audit_engine: Engine) -> None:
    # On PostgreSQL the batch is first tried without ON CONFLICT; meeting an audited row, only that
    # attempt is undone, not what the transaction wrote before it (here an earlier batch).
    events = [_event(n) for n in range(4)]
    with session_factory(audit_engine).begin() as session:
        first = insert_audit_rows(session, [audit_row(e, DECISION) for e in events[:2]])
        again = insert_audit_rows(session, [audit_row(e, DECISION) for e in events[1:]])
        session.add(
            EventAuditLog(**audit_row(_event(9), DECISION) | {"correlation_id": uuid.uuid4()})
        )
    assert first == {e.correlation_id for e in events[:2]}
    assert again == {e.correlation_id for e in events[2:]}
    with audit_engine.connect() as connection:
        count = len(connection.execute(select(EventAuditLog.id)).all())
    assert count == 5


def test_an_event_audited_meanwhile_by_another_worker_is_not_new(pg_url: str) -> None:
    # Two workers with the same batch (a redelivery while the first still runs): the second's
    # insert waits for the first's transaction, then skips the rows it committed.
    engine = make_engine(load_settings({"DATABASE_URL": pg_url}))
    sessions = session_factory(engine)
    events = [_event(n) for n in range(3)]
    try:
        with sessions.begin() as first:
            insert_audit_rows(first, [audit_row(e, DECISION) for e in events[:2]])
            with ThreadPoolExecutor(1) as pool:
                second = pool.submit(_insert_in_own_session, sessions, events)
                time.sleep(0.3)
                assert not second.done()
                first.commit()
                assert second.result(timeout=10) == {events[2].correlation_id}
        with engine.connect() as connection:
            assert len(connection.execute(select(EventAuditLog.id)).all()) == 3
    finally:
        engine.dispose()


def _insert_in_own_session(sessions: sessionmaker[Session], events: list[Event]) -> set[str]:
    with sessions.begin() as session:
        return insert_audit_rows(session, [audit_row(e, DECISION) for e in events])


def test_an_empty_batch_writes_nothing(audit_engine: Engine) -> None:
    with session_factory(audit_engine).begin() as session:
        assert insert_audit_rows(session, []) == set()


def test_a_held_event_is_audited_as_not_forwarded_with_its_reason(audit_engine: Engine) -> None:
    first, repeat, quiet = _event(1), _event(2), _event(3)
    held = Held("duplicate", first.correlation_id)
    rows = [audit_row(first, DECISION, None, 12), audit_row(repeat, DECISION, held, 12)]
    rows.append(audit_row(quiet, Decision(None, "Log_only", "NETO", False, False), None, 12))
    with session_factory(audit_engine).begin() as session:
        insert_audit_rows(session, rows)
    with audit_engine.connect() as connection:
        stored = connection.execute(
            select(
                EventAuditLog.forwarded_to_moog,
                EventAuditLog.held_reason,
                EventAuditLog.duplicate_of,
                EventAuditLog.rules_version,
            ).order_by(EventAuditLog.hostname)
        ).all()
    # An event no rule matched was not held back, but it has its reason too.
    assert [tuple(r) for r in stored] == [
        (True, None, None, 12),
        (False, "duplicate", uuid.UUID(first.correlation_id), 12),
        (False, "unmatched", None, 12),
    ]


def test_the_raw_audit_insert_reports_a_read_only_server_as_unavailable(pg_url: str) -> None:
    # The PostgreSQL insert drives psycopg2's cursor itself, outside SQLAlchemy's error handling;
    # a read-only server (a demoted primary) must still read as an outage to classify, and the
    # connection that met it must not go back to the pool.
    engine = make_engine(load_settings({"DATABASE_URL": pg_url}))
    try:
        with pytest.raises(DBAPIError) as caught, session_factory(engine).begin() as session:
            session.execute(text("SET TRANSACTION READ ONLY"))
            insert_audit_rows(session, [audit_row(_event(1), DECISION)])
        assert getattr(caught.value.orig, "pgcode", None) == "25006"
        assert database_unavailable(caught.value)
        assert caught.value.connection_invalidated
    finally:
        engine.dispose()
