"""Drop idx_event_audit_correlation: uq_event_audit_correlation's index already leads with it.

The unique constraint (correlation_id, event_timestamp), which makes a redelivered batch insert nothing
twice, is a b-tree on correlation_id first, so it serves every lookup by correlation_id that the spec's
index did. Each audited event paid for both: two random-UUID index insertions instead of one. Measured
side by side, PostgreSQL's CPU per audited event went from 30 to 27 us (BENCHMARKS.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("idx_event_audit_correlation", table_name="event_audit_log")


def downgrade() -> None:
    op.create_index("idx_event_audit_correlation", "event_audit_log", ["correlation_id"])
