"""Deduplication: why an audited event was held back, and a per-rule dedup window.

event_audit_log gets ``held_reason`` (one of models.HELD_REASONS, NULL when nothing was held) and
``duplicate_of`` (the forwarded alert's correlation_id, for a duplicate). On PostgreSQL the table is
partitioned: a column added to the parent is added to every partition, the default one included,
and to partitions attached later. Both are nullable without a default, so adding them rewrites no
rows. alert_rules gets ``dedup_window_seconds`` (NULL: the DEDUP_WINDOW_SECONDS setting).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MAX_DEDUP_WINDOW_SECONDS = 86_400  # models.MAX_DEDUP_WINDOW_SECONDS when this was written


def upgrade() -> None:
    op.add_column("event_audit_log", sa.Column("held_reason", sa.Text))
    op.add_column("event_audit_log", sa.Column("duplicate_of", sa.Uuid))
    # The check goes in with the column: SQLite cannot add a constraint to an existing table.
    op.execute(
        "ALTER TABLE alert_rules ADD COLUMN dedup_window_seconds INTEGER"
        " CONSTRAINT ck_alert_rules_dedup_window_range CHECK (dedup_window_seconds IS NULL"
        f" OR dedup_window_seconds BETWEEN 0 AND {MAX_DEDUP_WINDOW_SECONDS})"
    )


def downgrade() -> None:
    op.drop_column("alert_rules", "dedup_window_seconds")
    op.drop_column("event_audit_log", "duplicate_of")
    op.drop_column("event_audit_log", "held_reason")
