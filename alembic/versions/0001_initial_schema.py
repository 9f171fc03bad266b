"""The five tables of MUTT v2.5: rules, dev hosts, device teams, event audit, config audit.

On PostgreSQL event_audit_log is RANGE-partitioned by month with a default partition, so an insert never
fails for lack of a partition; `mutt db partitions` creates the monthly ones. On SQLite (the embedded
default) it is a plain table with the same columns and keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MATCH_TYPES = "'contains', 'regex', 'oid_prefix'"
PROD = "'Page_and_ticket', 'Ticket_only', 'Email_only', 'Log_only'"
DEV = "'Ticket_only', 'Email_only', 'Log_only', 'Suppress'"


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _now() -> sa.sql.elements.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    ts = sa.DateTime(timezone=True)

    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("match_string", sa.Text),
        sa.Column("trap_oid", sa.Text),
        sa.Column("syslog_severity", sa.SmallInteger),
        sa.Column("match_type", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default=sa.text("100")),
        sa.Column("prod_handling", sa.Text, nullable=False),
        sa.Column("dev_handling", sa.Text, nullable=False),
        sa.Column("team_assignment", sa.Text, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", ts, nullable=False, server_default=_now()),
        sa.Column("updated_at", ts, nullable=False, server_default=_now()),
        sa.CheckConstraint(f"match_type IN ({MATCH_TYPES})", name="ck_alert_rules_match_type"),
        sa.CheckConstraint(f"prod_handling IN ({PROD})", name="ck_alert_rules_prod_handling"),
        sa.CheckConstraint(f"dev_handling IN ({DEV})", name="ck_alert_rules_dev_handling"),
        sa.CheckConstraint("priority BETWEEN 1 AND 1000", name="ck_alert_rules_priority_range"),
        sa.CheckConstraint(
            "syslog_severity IS NULL OR syslog_severity BETWEEN 0 AND 7",
            name="ck_alert_rules_severity_range",
        ),
        sa.CheckConstraint(
            "match_string IS NOT NULL OR trap_oid IS NOT NULL OR syslog_severity IS NOT NULL",
            name="ck_alert_rules_has_criterion",
        ),
        sa.CheckConstraint(
            "match_type <> 'oid_prefix' OR trap_oid IS NOT NULL",
            name="ck_alert_rules_oid_needs_oid",
        ),
        sa.CheckConstraint(
            "match_type = 'oid_prefix' OR match_string IS NOT NULL"
            " OR (trap_oid IS NULL AND syslog_severity IS NOT NULL)",
            name="ck_alert_rules_text_needs_string",
        ),
        sa.CheckConstraint(
            "match_string IS NULL OR match_string <> ''",
            name="ck_alert_rules_match_string_nonempty",
        ),
        sa.CheckConstraint(
            "trap_oid IS NULL OR trap_oid <> ''", name="ck_alert_rules_trap_oid_nonempty"
        ),
        sa.CheckConstraint("team_assignment <> ''", name="ck_alert_rules_team_nonempty"),
    )
    op.create_index(
        "idx_alert_rules_active",
        "alert_rules",
        ["is_active"],
        postgresql_where=sa.text("is_active"),
        sqlite_where=sa.text("is_active"),
    )
    op.create_index("idx_alert_rules_priority", "alert_rules", [sa.text("priority DESC")])

    op.create_table(
        "development_hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("added_at", ts, nullable=False, server_default=_now()),
        sa.UniqueConstraint("hostname", name="uq_development_hosts_hostname"),
        sa.CheckConstraint("hostname <> ''", name="ck_development_hosts_hostname_nonempty"),
    )
    op.create_table(
        "device_teams",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("team_assignment", sa.Text, nullable=False),
        sa.Column("updated_at", ts, nullable=False, server_default=_now()),
        sa.UniqueConstraint("hostname", name="uq_device_teams_hostname"),
        sa.CheckConstraint("hostname <> ''", name="ck_device_teams_hostname_nonempty"),
        sa.CheckConstraint("team_assignment <> ''", name="ck_device_teams_team_nonempty"),
    )

    op.create_table(
        "config_audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("changed_at", ts, nullable=False, server_default=_now()),
        sa.Column("changed_by", sa.Text, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("record_id", sa.Integer),
        sa.Column("old_values", _json()),
        sa.Column("new_values", _json()),
        sa.Column("reason", sa.Text),
        sa.Column("correlation_id", sa.Uuid),
        sa.CheckConstraint(
            "operation IN ('CREATE', 'UPDATE', 'DELETE')", name="ck_config_audit_log_operation"
        ),
    )
    op.create_index("idx_config_audit_timestamp", "config_audit_log", [sa.text("changed_at DESC")])
    op.create_index("idx_config_audit_table", "config_audit_log", ["table_name"])
    op.create_index("idx_config_audit_operation", "config_audit_log", ["operation"])
    op.create_index("idx_config_audit_user", "config_audit_log", ["changed_by"])
    op.create_index("idx_config_audit_record", "config_audit_log", ["table_name", "record_id"])
    op.create_index("idx_config_audit_correlation", "config_audit_log", ["correlation_id"])

    if pg:
        _event_audit_postgres()
        _updated_at_triggers_postgres()
    else:
        _event_audit_sqlite()
        _updated_at_triggers_sqlite()

    op.create_index("idx_event_audit_hostname", "event_audit_log", ["hostname"])
    op.create_index(
        "idx_event_audit_timestamp", "event_audit_log", [sa.text("event_timestamp DESC")]
    )
    op.create_index("idx_event_audit_correlation", "event_audit_log", ["correlation_id"])
    op.create_index("idx_event_audit_rule", "event_audit_log", ["matched_rule_id"])


def _event_audit_postgres() -> None:
    # A partitioned table's primary and unique keys must include the partition key.
    op.execute(
        """
        CREATE TABLE event_audit_log (
            id                BIGSERIAL NOT NULL,
            event_timestamp   TIMESTAMPTZ NOT NULL,
            received_at       TIMESTAMPTZ NOT NULL,
            audited_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
            hostname          TEXT NOT NULL,
            message           TEXT NOT NULL,
            source            TEXT,
            syslog_severity   SMALLINT,
            trap_oid          TEXT,
            matched_rule_id   INTEGER,
            handling_decision TEXT NOT NULL,
            team_assignment   TEXT,
            is_dev            BOOLEAN NOT NULL DEFAULT false,
            forwarded_to_moog BOOLEAN NOT NULL DEFAULT false,
            correlation_id    UUID NOT NULL,
            raw               JSONB,
            CONSTRAINT pk_event_audit_log PRIMARY KEY (id, event_timestamp),
            CONSTRAINT uq_event_audit_correlation UNIQUE (correlation_id, event_timestamp)
        ) PARTITION BY RANGE (event_timestamp)
        """
    )
    op.execute("CREATE TABLE event_audit_log_default PARTITION OF event_audit_log DEFAULT")


def _event_audit_sqlite() -> None:
    op.create_table(
        "event_audit_log",
        # SQLite only auto-increments a lone INTEGER PRIMARY KEY.
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("event_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("audited_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("syslog_severity", sa.SmallInteger),
        sa.Column("trap_oid", sa.Text),
        sa.Column("matched_rule_id", sa.Integer),
        sa.Column("handling_decision", sa.Text, nullable=False),
        sa.Column("team_assignment", sa.Text),
        sa.Column("is_dev", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("forwarded_to_moog", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("correlation_id", sa.Uuid, nullable=False),
        sa.Column("raw", sa.JSON),
        sa.UniqueConstraint("correlation_id", "event_timestamp", name="uq_event_audit_correlation"),
    )


def _updated_at_triggers_postgres() -> None:
    op.execute(
        """
        CREATE FUNCTION update_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at = now();
            RETURN NEW;
        END
        $$
        """
    )
    for table in ("alert_rules", "device_teams"):
        op.execute(
            f"CREATE TRIGGER update_{table}_updated_at BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION update_updated_at()"
        )


def _updated_at_triggers_sqlite() -> None:
    # SQLite has no BEFORE-UPDATE assignment; an AFTER trigger that writes back is the idiom
    # (recursive triggers are off by default, so it does not fire itself).
    for table in ("alert_rules", "device_teams"):
        op.execute(
            f"CREATE TRIGGER update_{table}_updated_at AFTER UPDATE ON {table} FOR EACH ROW "
            f"BEGIN UPDATE {table} SET updated_at = CURRENT_TIMESTAMP WHERE id = NEW.id; END"
        )


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    for table in ("alert_rules", "device_teams"):
        op.execute(
            f"DROP TRIGGER IF EXISTS update_{table}_updated_at" + (f" ON {table}" if pg else "")
        )
    if pg:
        op.execute("DROP FUNCTION IF EXISTS update_updated_at()")
        # Dropping the parent drops every partition with it.
        op.execute("DROP TABLE event_audit_log")
    else:
        op.drop_table("event_audit_log")
    op.drop_table("config_audit_log")
    op.drop_table("device_teams")
    op.drop_table("development_hosts")
    op.drop_table("alert_rules")
