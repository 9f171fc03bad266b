"""Accounts for people: the users of the web UI, their roles and log-in throttling.

Passwords are stored only as werkzeug hashes (scrypt, salted). ``failed_logins`` and ``locked_until``
let the log-in lock an account for a while after repeated failures, whichever web process served
them. No account is created here: the first admin is made with ``mutt users create``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ROLES = "'viewer', 'operator', 'admin'"


def upgrade() -> None:
    ts = sa.DateTime(timezone=True)
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("is_active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("created_at", ts, nullable=False, server_default=sa.text("CURRENT_TIMESTAMP")),
        sa.Column("last_login_at", ts),
        sa.Column("failed_logins", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("locked_until", ts),
        sa.UniqueConstraint("username", name="uq_users_username"),
        sa.CheckConstraint(f"role IN ({ROLES})", name="ck_users_role"),
        sa.CheckConstraint("username <> ''", name="ck_users_username_nonempty"),
        sa.CheckConstraint("password_hash <> ''", name="ck_users_password_hash_nonempty"),
        sa.CheckConstraint("failed_logins >= 0", name="ck_users_failed_logins_nonnegative"),
    )


def downgrade() -> None:
    op.drop_table("users")
