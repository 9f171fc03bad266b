"""Revocable web sessions; log-in lock-outs move from the account to (account, client address).

``users.session_generation`` is written into every web session and checked on every request: log-out,
a password change and a role change bump it, which ends every session of that user at once (a signed
cookie cannot be taken back otherwise). ``failed_logins`` and ``locked_until`` locked the account for
everyone, so five wrong passwords from anywhere locked its owner out; failures are now counted per
account and client address in Redis (``mutt_app.web.throttle``), and the columns go.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_generation", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
        batch.drop_constraint("ck_users_failed_logins_nonnegative", type_="check")
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("locked_until", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("failed_logins", sa.Integer, nullable=False, server_default=sa.text("0"))
        )
        batch.create_check_constraint("ck_users_failed_logins_nonnegative", "failed_logins >= 0")
        batch.drop_column("session_generation")
