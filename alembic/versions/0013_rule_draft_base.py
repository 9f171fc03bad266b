"""What a rule draft was based on: the rules it changes, as they were when it was drafted.

rule_drafts gets ``base``: ``{"<rule id>": {field: value, ...}}`` for every rule the draft updates
or deactivates, taken when the draft is stored (or re-based). Publishing compares it with the rules
as they are now: a rule changed since answers a conflict (409) unless the draft is re-based or the
publish forced (mutt_app.commands.drafts). NULL, every existing draft's value, is a draft from
before this column: it records no base, and publishes as before.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: adding it rewrites no rows.
    op.add_column("rule_drafts", sa.Column("base", sa.JSON().with_variant(JSONB(), "postgresql")))


def downgrade() -> None:
    op.drop_column("rule_drafts", "base")
