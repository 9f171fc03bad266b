"""Why, for every event: the rules version of each audited event, and the unmatched-events index.

event_audit_log gets ``rules_version`` (the ``mutt:rules:version`` the event was classified under;
nullable without a default, so adding it rewrites no rows, and rows audited before it stay NULL).
``held_reason`` needs no change of type: it now also takes models.DECISION_REASONS (why an event was
never meant for Moog), written by the classify task. Old rows are not back-filled: on a partitioned
audit of months that would rewrite every row.

``idx_event_audit_unmatched`` indexes the timestamps of unmatched events only (partial index), for
the unhandled templates and the dashboard's top unhandled hosts: they read the newest unmatched
events without walking every event of the window. On PostgreSQL an index on the partitioned parent
is built on every partition, the default one included, and on partitions attached later.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event_audit_log", sa.Column("rules_version", sa.BigInteger))
    op.create_index(
        "idx_event_audit_unmatched",
        "event_audit_log",
        [sa.text("event_timestamp DESC")],
        postgresql_where=sa.text("matched_rule_id IS NULL"),
        sqlite_where=sa.text("matched_rule_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("idx_event_audit_unmatched", table_name="event_audit_log")
    op.drop_column("event_audit_log", "rules_version")
