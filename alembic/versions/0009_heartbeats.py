"""Heartbeats: "host X (or a glob, or a device team) must send an event every N minutes".

A new table, ``heartbeats``: a name (unique), exactly one of ``host`` (a host name or a glob) and
``team`` (a device team), ``interval_minutes`` (1 .. a week), the alerts' ``handling`` (a prod
handling: their lane) and ``team_assignment`` (their Moog class; NULL: the host's device team),
``is_active``, ``description``, and the creation and last-change times. The hosts' last-seen times
are in Redis, not here (see mutt_app.watch.heartbeats).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# models.MAX_HEARTBEAT_MINUTES and models.PROD_HANDLINGS when this was written.
MAX_HEARTBEAT_MINUTES = 10_080
PROD_HANDLINGS = "'Page_and_ticket', 'Ticket_only', 'Email_only', 'Log_only'"


def upgrade() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("host", sa.Text),
        sa.Column("team", sa.Text),
        sa.Column("interval_minutes", sa.Integer, nullable=False),
        sa.Column("handling", sa.Text, nullable=False, server_default=sa.text("'Ticket_only'")),
        sa.Column("team_assignment", sa.Text),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("description", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint("name", name="uq_heartbeats_name"),
        sa.CheckConstraint("(host IS NULL) <> (team IS NULL)", name="ck_heartbeats_host_or_team"),
        sa.CheckConstraint("host IS NULL OR host <> ''", name="ck_heartbeats_host_nonempty"),
        sa.CheckConstraint("team IS NULL OR team <> ''", name="ck_heartbeats_team_nonempty"),
        sa.CheckConstraint("name <> ''", name="ck_heartbeats_name_nonempty"),
        sa.CheckConstraint(
            f"interval_minutes BETWEEN 1 AND {MAX_HEARTBEAT_MINUTES}",
            name="ck_heartbeats_interval_range",
        ),
        sa.CheckConstraint(f"handling IN ({PROD_HANDLINGS})", name="ck_heartbeats_handling"),
        sa.CheckConstraint(
            "team_assignment IS NULL OR team_assignment <> ''",
            name="ck_heartbeats_team_assignment_nonempty",
        ),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
