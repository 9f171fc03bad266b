"""Rule drafts: proposed rule changes kept apart from the live rules until published.

One table, ``rule_drafts``: a name, the draft as one JSON document (``create``, ``update``,
``deactivate``; see mutt_app.rules.drafts), who made it and when, and when and by whom it was
published (NULL while it is a draft). A document rather than a row per proposed rule: a draft is
read, backtested and published whole, and its entries are rule fields the rule API already checks.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rule_drafts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("document", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Column("published_by", sa.Text),
        sa.CheckConstraint("name <> ''", name="ck_rule_drafts_name_nonempty"),
        sa.CheckConstraint(
            "(published_at IS NULL) = (published_by IS NULL)", name="ck_rule_drafts_published"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_rule_drafts"),
    )


def downgrade() -> None:
    op.drop_table("rule_drafts")
