"""Maintenance windows (issue 15): one-off or recurring (RFC 5545 RRULE, duration, time zone),
scoped by hosts, teams, rule ids and trap-OID prefixes, that suppress or downgrade alerts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSON_LIST = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "maintenance_windows",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True)),
        sa.Column("rrule", sa.Text),
        sa.Column("duration_minutes", sa.Integer),
        sa.Column("timezone", sa.Text, nullable=False, server_default=sa.text("'UTC'")),
        sa.Column("hosts", JSON_LIST, nullable=False),
        sa.Column("teams", JSON_LIST, nullable=False),
        sa.Column("rule_ids", JSON_LIST, nullable=False),
        sa.Column("oid_prefixes", JSON_LIST, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("summary_alert", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_maintenance_windows"),
        sa.UniqueConstraint("name", name="uq_maintenance_windows_name"),
        sa.CheckConstraint(
            "action IN ('suppress', 'downgrade')", name="ck_maintenance_windows_action"
        ),
        sa.CheckConstraint("name <> ''", name="ck_maintenance_windows_name_nonempty"),
        sa.CheckConstraint(
            "(rrule IS NULL AND ends_at IS NOT NULL)"
            " OR (rrule IS NOT NULL AND duration_minutes IS NOT NULL)",
            name="ck_maintenance_windows_one_off_or_recurring",
        ),
        sa.CheckConstraint(
            "duration_minutes IS NULL OR duration_minutes > 0",
            name="ck_maintenance_windows_duration_positive",
        ),
    )


def downgrade() -> None:
    op.drop_table("maintenance_windows")
