"""Flapping: a rule may name the rule whose alerts it clears (LINK-UP clears LINK-DOWN).

alert_rules gets ``clears_rule_id``, nullable, referencing alert_rules.id (a deleted rule leaves
its clear rule unpaired: ON DELETE SET NULL), never the rule itself. Nullable without a default,
so adding it rewrites no rows.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The reference and the check go in with the column: SQLite cannot add them to a table later.
    op.execute(
        "ALTER TABLE alert_rules ADD COLUMN clears_rule_id INTEGER"
        " REFERENCES alert_rules (id) ON DELETE SET NULL"
        " CONSTRAINT ck_alert_rules_clears_other"
        " CHECK (clears_rule_id IS NULL OR clears_rule_id <> id)"
    )


def downgrade() -> None:
    # SQLite drops a column whose reference and check are its own column constraints, as here.
    op.drop_column("alert_rules", "clears_rule_id")
