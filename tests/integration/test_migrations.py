"""Migrations on real PostgreSQL: the schema, the monthly partitions, and a clean downgrade."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import insert, inspect, text
from sqlalchemy.exc import IntegrityError

from mutt_app.config import load_settings
from mutt_app.db.engine import downgrade, make_engine, upgrade
from mutt_app.db.models import EventAuditLog
from mutt_app.db.partitions import ensure_partitions, existing_partitions

TABLES = {"alert_rules", "development_hosts", "device_teams", "event_audit_log", "config_audit_log"}


def _event(when: datetime) -> dict:
    return {
        "event_timestamp": when,
        "received_at": when,
        "hostname": "router-1",
        "message": "Interface Gi0/1 down",
        "handling_decision": "Log_only",
        "correlation_id": uuid.uuid4(),
        "raw": {"hostname": "router-1"},
    }


def _partition_of(conn, correlation_id: uuid.UUID) -> str:
    return conn.execute(
        text("SELECT tableoid::regclass::text FROM event_audit_log WHERE correlation_id = :c"),
        {"c": correlation_id},
    ).scalar_one()


def test_upgrade_partitions_and_downgrade_on_postgres(empty_pg_url: str) -> None:
    engine = make_engine(load_settings({"DATABASE_URL": empty_pg_url}))
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES

    months = [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    created = ensure_partitions(engine, months[0], 2, drain_default=False)
    assert [r.name for r in created] == [
        "event_audit_log_202601",
        "event_audit_log_202602",
        "event_audit_log_202603",
    ]
    assert all(r.created for r in created)

    rows = [_event(datetime(m.year, m.month, 15, 12, tzinfo=UTC)) for m in months]
    far = _event(datetime(2031, 7, 4, tzinfo=UTC))
    with engine.begin() as conn:
        conn.execute(insert(EventAuditLog), [*rows, far])
        for row, month in zip(rows, months, strict=True):
            assert _partition_of(conn, row["correlation_id"]) == f"event_audit_log_{month:%Y%m}"
        assert _partition_of(conn, far["correlation_id"]) == "event_audit_log_default"

    again = ensure_partitions(engine, months[0], 2)
    moved = {r.name: r.moved_rows for r in again if r.created}
    assert moved == {"event_audit_log_203107": 1}
    with engine.connect() as conn:
        assert _partition_of(conn, far["correlation_id"]) == "event_audit_log_203107"
        assert conn.execute(text("SELECT count(*) FROM event_audit_log_default")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM event_audit_log")).scalar() == 4
        assert "event_audit_log_203107" in existing_partitions(conn)
        # The moved partition carries the parent's unique key, so idempotent inserts still work.
        indexes = {i["name"] for i in inspect(conn).get_indexes("event_audit_log_203107")}
        assert any("correlation" in name for name in indexes)

    downgrade(engine, "base")
    remaining = set(inspect(engine).get_table_names()) - {"alembic_version"}
    assert remaining == set()
    engine.dispose()


def test_partition_creation_is_idempotent(pg_url: str) -> None:
    engine = make_engine(load_settings({"DATABASE_URL": pg_url}))
    first = ensure_partitions(engine, date(2027, 5, 1), 1)
    second = ensure_partitions(engine, date(2027, 5, 1), 1)
    assert [r.created for r in first] == [True, True]
    assert [r.created for r in second] == [False, False]
    engine.dispose()


def test_migrations_build_a_working_sqlite_schema(tmp_path) -> None:
    engine = make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)}))
    assert engine.dialect.name == "sqlite"
    upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.begin() as conn:
        conn.execute(insert(EventAuditLog), [_event(datetime(2026, 1, 1, tzinfo=UTC))])
    assert ensure_partitions(engine, date(2026, 1, 1), 3) == []
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_a_lookup_by_correlation_id_uses_the_unique_keys_index(pg_url: str) -> None:
    # Migration 0004 dropped the spec's idx_event_audit_correlation as redundant with this one.
    engine = make_engine(load_settings({"DATABASE_URL": pg_url}))
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = conn.execute(
            text("EXPLAIN SELECT * FROM event_audit_log WHERE correlation_id = :c"),
            {"c": uuid.uuid4()},
        ).scalars()
        plan = "\n".join(plan)
    assert "idx_event_audit_correlation" not in plan
    assert "Index Scan" in plan or "Bitmap Index Scan" in plan
    assert "correlation" in plan  # the partitions' indexes of uq_event_audit_correlation
    engine.dispose()


def _dedup_columns_round_trip(engine, partitions: list[str]) -> None:  # type: ignore[no-untyped-def]
    """0006 adds held_reason/duplicate_of (to every partition) and the per-rule window, and undoes it."""
    upgrade(engine)
    first = uuid.uuid4()
    row = {**_event(datetime(2026, 1, 15, tzinfo=UTC)), "held_reason": "duplicate"}
    with engine.begin() as conn:
        conn.execute(insert(EventAuditLog), [{**row, "duplicate_of": first}])
        stored = conn.execute(text("SELECT held_reason, duplicate_of FROM event_audit_log")).one()
        assert stored[0] == "duplicate"
        assert uuid.UUID(str(stored[1])) == first
        for table in partitions:
            assert {"held_reason", "duplicate_of"} <= {
                c["name"] for c in inspect(conn).get_columns(table)
            }
    rule = (
        "INSERT INTO alert_rules (match_string, match_type, prod_handling, dev_handling,"
        " team_assignment, dedup_window_seconds) VALUES ('x', 'contains', 'Ticket_only',"
        " 'Log_only', 'NETO', {})"
    )
    with engine.begin() as conn:
        conn.execute(text(rule.format(0)))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(rule.format(-1)))
    downgrade(engine, "0005")
    with engine.connect() as conn:
        assert "held_reason" not in {
            c["name"] for c in inspect(conn).get_columns("event_audit_log")
        }
        assert "dedup_window_seconds" not in {
            c["name"] for c in inspect(conn).get_columns("alert_rules")
        }
    engine.dispose()


def test_dedup_migration_on_postgres_partitions(empty_pg_url: str) -> None:
    engine = make_engine(load_settings({"DATABASE_URL": empty_pg_url}))
    upgrade(engine, "0004")
    ensure_partitions(engine, date(2026, 1, 1), 0, drain_default=False)
    _dedup_columns_round_trip(engine, ["event_audit_log_202601", "event_audit_log_default"])


def test_dedup_migration_on_sqlite(tmp_path) -> None:
    engine = make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)}))
    _dedup_columns_round_trip(engine, [])


def _users_0005_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    upgrade(engine, "0004")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, password_hash, role, failed_logins)"
                " VALUES ('alice', 'scrypt:x', 'admin', 3)"
            )
        )
    upgrade(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("users")}
    assert "session_generation" in columns
    assert not columns & {"failed_logins", "locked_until"}
    with engine.begin() as conn:
        assert conn.execute(text("SELECT username, session_generation FROM users")).all() == [
            ("alice", 0)
        ]
        conn.execute(text("UPDATE users SET session_generation = session_generation + 1"))
    downgrade(engine, "0004")
    columns = {c["name"] for c in inspect(engine).get_columns("users")}
    assert {"failed_logins", "locked_until"} <= columns and "session_generation" not in columns
    with engine.connect() as conn:
        assert conn.execute(text("SELECT username, failed_logins FROM users")).all() == [
            ("alice", 0)
        ]
    downgrade(engine, "base")
    engine.dispose()


def test_0005_session_generation_on_postgres(empty_pg_url: str) -> None:
    _users_0005_round_trip(make_engine(load_settings({"DATABASE_URL": empty_pg_url})))


def test_0005_session_generation_on_sqlite(tmp_path) -> None:
    _users_0005_round_trip(make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)})))


def _clears_rule_0007_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    upgrade(engine, "0006")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alert_rules (id, match_string, match_type, prod_handling,"
                " dev_handling, team_assignment) VALUES"
                " (1, 'down', 'contains', 'Ticket_only', 'Log_only', 'NETO'),"
                " (2, 'up', 'contains', 'Ticket_only', 'Log_only', 'NETO')"
            )
        )
    upgrade(engine, "0007")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alert_rules SET clears_rule_id = 1 WHERE id = 2"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE alert_rules SET clears_rule_id = 1 WHERE id = 1"))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alert_rules WHERE id = 1"))
        assert conn.execute(text("SELECT id, clears_rule_id FROM alert_rules")).all() == [(2, None)]
    downgrade(engine, "0006")
    assert "clears_rule_id" not in {c["name"] for c in inspect(engine).get_columns("alert_rules")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM alert_rules")).all() == [(2,)]
    downgrade(engine, "base")
    engine.dispose()


def test_0007_clears_rule_on_postgres(empty_pg_url: str) -> None:
    _clears_rule_0007_round_trip(make_engine(load_settings({"DATABASE_URL": empty_pg_url})))


def test_0007_clears_rule_on_sqlite(tmp_path) -> None:
    _clears_rule_0007_round_trip(make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)})))


def _heartbeats_0009_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    upgrade(engine, "0009")
    insert_sql = (
        "INSERT INTO heartbeats (name, host, team, interval_minutes)"
        " VALUES (:name, :host, :team, :minutes)"
    )
    with engine.begin() as conn:
        conn.execute(text(insert_sql), {"name": "db", "host": "db-*", "team": None, "minutes": 5})
        row = conn.execute(text("SELECT handling, is_active FROM heartbeats")).one()
        assert (row.handling, bool(row.is_active)) == ("Ticket_only", True)
    for bad in (
        {"name": "both", "host": "h", "team": "NETO", "minutes": 5},  # host or team, not both
        {"name": "none", "host": None, "team": None, "minutes": 5},
        {"name": "zero", "host": "h", "team": None, "minutes": 0},
        {"name": "db", "host": "h", "team": None, "minutes": 5},  # duplicate name
    ):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(insert_sql), bad)
    downgrade(engine, "0007")
    assert "heartbeats" not in inspect(engine).get_table_names()


def _why_0010_round_trip(engine, partitions: list[str]) -> None:  # type: ignore[no-untyped-def]
    """0010 adds rules_version (to every partition) and the unmatched-events index, and undoes it."""
    upgrade(engine, "0010")
    row = {**_event(datetime(2026, 1, 15, tzinfo=UTC)), "rules_version": 9}
    with engine.begin() as conn:
        conn.execute(insert(EventAuditLog), [row])
        assert conn.execute(text("SELECT rules_version FROM event_audit_log")).scalar_one() == 9
    for table in ["event_audit_log", *partitions]:
        assert "rules_version" in {c["name"] for c in inspect(engine).get_columns(table)}
    assert "idx_event_audit_unmatched" in {
        i["name"] for i in inspect(engine).get_indexes("event_audit_log")
    }
    if partitions:  # PostgreSQL built the partial index on every partition too
        with engine.connect() as conn:
            partial = conn.execute(
                text(
                    "SELECT tablename FROM pg_indexes WHERE indexdef LIKE"
                    " '%(event_timestamp DESC) WHERE (matched_rule_id IS NULL)'"
                )
            ).scalars()
            assert set(partial) >= set(partitions)
    downgrade(engine, "0007")
    assert "rules_version" not in {
        c["name"] for c in inspect(engine).get_columns("event_audit_log")
    }
    assert "idx_event_audit_unmatched" not in {
        i["name"] for i in inspect(engine).get_indexes("event_audit_log")
    }
    downgrade(engine, "base")
    engine.dispose()


def test_0009_heartbeats_on_postgres(empty_pg_url: str) -> None:
    _heartbeats_0009_round_trip(make_engine(load_settings({"DATABASE_URL": empty_pg_url})))


def test_0009_heartbeats_on_sqlite(tmp_path) -> None:
    _heartbeats_0009_round_trip(make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)})))


def test_0010_rules_version_on_postgres_partitions(empty_pg_url: str) -> None:
    engine = make_engine(load_settings({"DATABASE_URL": empty_pg_url}))
    upgrade(engine, "0007")
    ensure_partitions(engine, date(2026, 1, 1), 0, drain_default=False)
    _why_0010_round_trip(engine, ["event_audit_log_202601", "event_audit_log_default"])


def test_0010_rules_version_on_sqlite(tmp_path) -> None:
    _why_0010_round_trip(make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)})), [])


def _dedup_key_0012_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    upgrade(engine, "0011")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alert_rules (id, match_string, match_type, prod_handling,"
                " dev_handling, team_assignment) VALUES"
                " (1, 'down', 'contains', 'Ticket_only', 'Log_only', 'NETO')"
            )
        )
    upgrade(engine, "0012")
    with engine.begin() as conn:
        # An existing rule keeps the default key.
        assert conn.execute(text("SELECT dedup_key FROM alert_rules")).scalar_one() is None
        conn.execute(text("UPDATE alert_rules SET dedup_key = 'host, masked' WHERE id = 1"))
    for bad in ("''", f"'{'x' * 201}'"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(f"UPDATE alert_rules SET dedup_key = {bad} WHERE id = 1"))
    downgrade(engine, "0011")
    assert "dedup_key" not in {c["name"] for c in inspect(engine).get_columns("alert_rules")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM alert_rules")).all() == [(1,)]
    downgrade(engine, "base")
    engine.dispose()


def test_0012_rule_dedup_key_on_postgres(empty_pg_url: str) -> None:
    _dedup_key_0012_round_trip(make_engine(load_settings({"DATABASE_URL": empty_pg_url})))


def test_0012_rule_dedup_key_on_sqlite(tmp_path) -> None:
    _dedup_key_0012_round_trip(make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)})))


def _draft_base_0013_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    upgrade(engine, "0012")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO rule_drafts (id, name, document, created_by) VALUES"
                """ (1, 'old', '{"create": [], "update": [], "deactivate": []}', 'alice')"""
            )
        )
    upgrade(engine, "0013")
    with engine.begin() as conn:
        # A draft from before records no base.
        assert conn.execute(text("SELECT base FROM rule_drafts")).scalar_one() is None
        conn.execute(
            text("""UPDATE rule_drafts SET base = '{"3": {"priority": 5}}' WHERE id = 1""")
        )
    downgrade(engine, "0012")
    assert "base" not in {c["name"] for c in inspect(engine).get_columns("rule_drafts")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM rule_drafts")).all() == [(1, "old")]
    downgrade(engine, "base")
    engine.dispose()


def _trace_id_0014_round_trip(engine) -> None:  # type: ignore[no-untyped-def]
    upgrade(engine, "0014")
    assert "trace_id" in {c["name"] for c in inspect(engine).get_columns("event_audit_log")}
    downgrade(engine, "0013")
    assert "trace_id" not in {c["name"] for c in inspect(engine).get_columns("event_audit_log")}
    downgrade(engine, "base")
    engine.dispose()


def test_0014_event_trace_id_on_postgres(empty_pg_url: str) -> None:
    _trace_id_0014_round_trip(make_engine(load_settings({"DATABASE_URL": empty_pg_url})))


def test_0014_event_trace_id_on_sqlite(tmp_path) -> None:
    _trace_id_0014_round_trip(make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)})))


def test_0013_rule_draft_base_on_postgres(empty_pg_url: str) -> None:
    _draft_base_0013_round_trip(make_engine(load_settings({"DATABASE_URL": empty_pg_url})))


def test_0013_rule_draft_base_on_sqlite(tmp_path) -> None:
    _draft_base_0013_round_trip(make_engine(load_settings({"MUTT_DATA_DIR": str(tmp_path)})))
