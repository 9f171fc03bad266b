"""A rule's own dedup key: which parts of an alert make one incident.

alert_rules gets ``dedup_key``: a short comma-separated list of parts (``host, severity,
group:peer``; see mutt_app.rules.dedup_key), checked by the rule commands before it is saved. NULL,
every existing rule's value, is the default key (host, severity, incident template). Nullable
without a default, so adding it rewrites no rows.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

MAX_DEDUP_KEY_CHARS = 200  # mutt_app.rules.dedup_key.MAX_DEDUP_KEY_CHARS when this was written


def upgrade() -> None:
    # The check goes in with the column: SQLite cannot add a constraint to an existing table.
    op.execute(
        "ALTER TABLE alert_rules ADD COLUMN dedup_key TEXT"
        " CONSTRAINT ck_alert_rules_dedup_key_length CHECK (dedup_key IS NULL"
        f" OR length(dedup_key) BETWEEN 1 AND {MAX_DEDUP_KEY_CHARS})"
    )


def downgrade() -> None:
    op.drop_column("alert_rules", "dedup_key")
