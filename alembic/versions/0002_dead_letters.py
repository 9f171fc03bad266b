"""Dead letters and poison: work that failed for good, kept where people and remediation see it.

dead_letters holds what remediation may still replay; poison_letters what it gave up on (or could not
decode), kept for people to inspect and replay by hand. Both are tables, not Redis lists, so an item is
durable before the failed task is acknowledged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column]:
    ts = sa.DateTime(timezone=True)
    return [
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("task_name", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
        sa.Column("raw_payload", sa.Text),
        sa.Column("correlation_id", sa.Uuid),
        sa.Column("error_type", sa.Text, nullable=False),
        sa.Column("error_message", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("replays", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column(
            "first_failed_at", ts, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
        sa.Column(
            "last_failed_at", ts, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        *_columns(),
        sa.Column("next_replay_at", sa.DateTime(timezone=True)),
    )
    op.create_index("idx_dead_letters_task", "dead_letters", ["task_name", "next_replay_at"])
    op.create_index("idx_dead_letters_failed", "dead_letters", ["last_failed_at"])
    op.create_index("idx_dead_letters_correlation", "dead_letters", ["correlation_id"])
    op.create_table(
        "poison_letters",
        *_columns(),
        sa.Column(
            "poisoned_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        ),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("idx_poison_letters_task", "poison_letters", ["task_name"])
    op.create_index("idx_poison_letters_poisoned", "poison_letters", ["poisoned_at"])


def downgrade() -> None:
    op.drop_table("poison_letters")
    op.drop_table("dead_letters")
