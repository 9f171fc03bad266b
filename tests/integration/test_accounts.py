"""Accounts against a real PostgreSQL: hashing, log-ins, ending sessions, the ``mutt users`` commands."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.security import check_password_hash

from mutt_app.cli import main
from mutt_app.commands import users as accounts
from mutt_app.commands.users import AccountError, LoginOutcome
from mutt_app.db.engine import session_factory
from mutt_app.db.models import ConfigAuditLog, User
from tests.records import HEAD

PASSWORD = "correct horse battery staple"


@pytest.fixture
def alice(sessions: sessionmaker[Session]) -> Iterator[str]:
    with sessions.begin() as session:
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
    yield "alice"


def _user(sessions: sessionmaker[Session], name: str) -> User:
    with sessions() as session:
        user = accounts.find_user(session, name)
        assert user is not None
        return user


def _login(
    sessions: sessionmaker[Session], name: str, password: str, now: datetime | None = None
) -> accounts.LoginResult:
    with sessions.begin() as session:
        return accounts.authenticate(session, name, password, now=now)


def test_password_is_stored_as_a_salted_slow_hash(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test", reason="r")
        accounts.create_user(session, "bob", PASSWORD, "viewer", changed_by="test")
    alice, bob = _user(sessions, "alice"), _user(sessions, "bob")
    assert PASSWORD not in alice.password_hash
    assert alice.password_hash.startswith("scrypt:")
    assert alice.password_hash != bob.password_hash  # salted
    assert check_password_hash(alice.password_hash, PASSWORD)
    with sessions() as session:
        audit = session.scalars(select(ConfigAuditLog).order_by(ConfigAuditLog.id)).all()
    assert [(a.operation, a.table_name, a.changed_by) for a in audit] == [
        ("CREATE", "users", "test"),
        ("CREATE", "users", "test"),
    ]
    assert audit[0].new_values == {
        "id": alice.id,
        "username": "alice",
        "role": "admin",
        "is_active": True,
    }
    assert audit[0].reason == "r"
    assert all("password_hash" not in (a.new_values or {}) for a in audit)


def test_create_refuses_duplicates_weak_passwords_and_unknown_roles(
    sessions: sessionmaker[Session], alice: str
) -> None:
    for name, password, role in (
        ("alice", PASSWORD, "viewer"),
        ("carol", "short", "viewer"),
        ("carol", PASSWORD, "root"),
        ("  ", PASSWORD, "viewer"),
    ):
        with pytest.raises(AccountError), sessions.begin() as session:
            accounts.create_user(session, name, password, role, changed_by="test")
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_authenticate_right_and_wrong_password(sessions: sessionmaker[Session], alice: str) -> None:
    result = _login(sessions, "alice", PASSWORD)
    assert result.ok and result.user is not None and result.user.role == "admin"
    assert _user(sessions, "alice").last_login_at is not None

    assert _login(sessions, "alice", "wrong password!").outcome is LoginOutcome.BAD_CREDENTIALS
    assert _login(sessions, "nobody", PASSWORD).outcome is LoginOutcome.BAD_CREDENTIALS
    # Failures are counted by the web app per account and address, never on the account: many
    # of them do not keep its owner out.
    for i in range(10):
        assert _login(sessions, "alice", f"guess-{i}").outcome is LoginOutcome.BAD_CREDENTIALS
    assert _login(sessions, "alice", PASSWORD).ok


def test_password_and_role_changes_end_sessions_and_disabled_users_cannot_log_in(
    sessions: sessionmaker[Session], alice: str
) -> None:
    assert _user(sessions, "alice").session_generation == 0
    new_password = "another long passphrase"
    with sessions.begin() as session:
        accounts.set_password(session, "alice", new_password, changed_by="test")
    assert _user(sessions, "alice").session_generation == 1
    assert not _login(sessions, "alice", PASSWORD).ok
    assert _login(sessions, "alice", new_password).ok
    with sessions.begin() as session:
        accounts.set_role(session, "alice", "viewer", changed_by="test")
        accounts.set_role(session, "alice", "viewer", changed_by="test")  # no change, no bump
        accounts.end_sessions(session, _user(sessions, "alice").id)
    assert _user(sessions, "alice").session_generation == 3
    with sessions.begin() as session:
        accounts.find_user(session, "alice").is_active = False  # type: ignore[union-attr]
    assert _login(sessions, "alice", new_password).outcome is LoginOutcome.INACTIVE


# --- the CLI -------------------------------------------------------------------------------------


R = ("--reason", "test")


def _mutt(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def test_cli_create_set_password_set_role_list(pg_url: str, engine: Engine) -> None:
    env = {"DATABASE_URL": pg_url}
    result = _mutt(
        env,
        "users",
        "create",
        "alice",
        "--role",
        "admin",
        "--password-stdin",
        "--reason",
        "first admin",
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "user alice created with role admin" in result.output
    # Asked twice, not echoed.
    result = _mutt(env, "users", "create", "bob", *R, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "created with role viewer" in result.output
    assert PASSWORD not in result.output

    assert (
        _mutt(env, "users", "create", "bob", "--password-stdin", *R, input=PASSWORD).exit_code == 1
    )
    weak = _mutt(env, "users", "create", "carol", "--password-stdin", *R, input="short\n")
    assert weak.exit_code == 1 and "at least 12 characters" in weak.output

    result = _mutt(
        env,
        "users",
        "set-password",
        "bob",
        "--password-stdin",
        *R,
        input="a brand new passphrase\n",
    )
    assert result.exit_code == 0, result.output
    assert _mutt(env, "users", "set-role", "bob", "admin").exit_code == 2  # no --reason
    assert _mutt(env, "users", "set-role", "bob", "admin", "--reason", " ").exit_code == 1
    assert (
        _mutt(env, "users", "set-role", "bob", "operator", *R).output.strip()
        == "bob is now operator"
    )
    assert "already is operator" in _mutt(env, "users", "set-role", "bob", "operator", *R).output
    assert _mutt(env, "users", "set-role", "nobody", "admin", *R).exit_code == 1

    listing = _mutt(env, "users", "list").output.splitlines()
    assert [line.split()[:3] for line in listing] == [
        ["alice", "admin", "active"],
        ["bob", "operator", "active"],
    ]

    sessions = session_factory(engine)
    with sessions.begin() as session:
        assert accounts.authenticate(session, "bob", "a brand new passphrase").ok
    with sessions() as session:
        audit = session.scalars(select(ConfigAuditLog).order_by(ConfigAuditLog.id)).all()
    assert [(a.operation, a.table_name) for a in audit] == [
        ("CREATE", "users"),
        ("CREATE", "users"),
        ("UPDATE", "users"),
        ("UPDATE", "users"),
    ]
    assert all(a.changed_by.startswith("cli:") for a in audit)
    assert audit[0].reason == "first admin"
    assert audit[3].old_values["role"] == "viewer" and audit[3].new_values["role"] == "operator"
    assert all("scrypt" not in str(a.old_values) + str(a.new_values) for a in audit)


def test_prompted_passwords_must_match(pg_url: str) -> None:
    result = _mutt(
        {"DATABASE_URL": pg_url},
        "users",
        "create",
        "bob",
        *R,
        input=f"{PASSWORD}\nsomething else entirely\n",
    )
    assert result.exit_code != 0
    assert "do not match" in result.output


def test_no_default_user_after_upgrade_and_seed(empty_pg_url: str) -> None:
    env = {"DATABASE_URL": empty_pg_url}
    assert f"revision {HEAD}" in _mutt(env, "db", "upgrade").output
    assert _mutt(env, "db", "seed").exit_code == 0
    assert "no users" in _mutt(env, "users", "list").output
