"""The trace of each audited event: event_audit_log gets ``trace_id``.

With OTEL_ENABLED the classify task's trace id (32 hex digits, the W3C form) is kept with each event it
audits, so the event's page links to its trace; without tracing it stays NULL. Nullable without a
default, so adding it rewrites no rows (on PostgreSQL the partitions get it from the parent).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("event_audit_log", sa.Column("trace_id", sa.Text))


def downgrade() -> None:
    op.drop_column("event_audit_log", "trace_id")
