"""Accounts of the people who use the web UI: create them, check their passwords, change them.

Passwords are kept only as werkzeug hashes (scrypt by default: salted and deliberately slow). There is
no default account and no default password: the first admin is made with ``mutt users create``.

Wrong passwords are counted per account and client address by the web app
(:mod:`mutt_app.web.throttle`), not here: a lock on the account itself would let anyone lock its owner
out. Every web session carries the user's ``session_generation``; :func:`end_sessions` bumps it,
which ends all of that user's sessions at once; a password or role change and disabling do so.
Every change to an account writes one ``config_audit_log`` row in the same transaction (never with
the password hash in it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from mutt_app.commands.errors import Invalid
from mutt_app.db.config_audit import record_change
from mutt_app.db.models import ROLES, User

TABLE = "users"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing is slow on purpose; a megabyte "password" would be a DoS

# Checked against when the username is unknown, so that such a log-in costs as long as a real one
# and response times do not tell which usernames exist.
_DUMMY_HASH = generate_password_hash("mutt-no-such-user")


class AccountError(Invalid, ValueError):
    """A request about an account that cannot be done (unknown user, bad role, weak password);
    a ValueError too, as it always was."""


class LoginOutcome(Enum):
    """Why a log-in succeeded or not (the web form shows the same message for every failure)."""

    OK = "ok"
    BAD_CREDENTIALS = "bad_credentials"
    INACTIVE = "inactive"


@dataclass(frozen=True)
class LoginResult:
    """The outcome of :func:`authenticate`, with the user when it succeeded."""

    outcome: LoginOutcome
    user: User | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is LoginOutcome.OK


def _now() -> datetime:
    return datetime.now(UTC)


def check_role(role: str) -> str:
    """``role`` if it is one of viewer, operator, admin; else :class:`AccountError`."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    """``password`` if it is long enough (and not absurdly long); else :class:`AccountError`."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"password must have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def check_username(username: str) -> str:
    """``username`` stripped, if non-empty and printable; else :class:`AccountError`."""
    name = username.strip()
    if not name or not name.isprintable() or len(name) > 150:
        raise AccountError("username must be 1 to 150 printable characters")
    return name


def find_user(session: Session, username: str, *, lock: bool = False) -> User | None:
    """The user called ``username`` or None; ``lock`` takes a row lock for an update."""
    query = select(User).where(User.username == username)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def _user_or_error(session: Session, username: str) -> User:
    user = find_user(session, username, lock=True)
    if user is None:
        raise AccountError(f"no user {username!r}")
    return user


def create_user(
    session: Session,
    username: str,
    password: str,
    role: str,
    *,
    changed_by: str,
    reason: str | None = None,
    correlation_id: uuid.UUID | None = None,
) -> User:
    """Add a user (audited) to ``session``'s transaction; :class:`AccountError` if the name is taken."""
    username = check_username(username)
    user = User(
        username=username,
        password_hash=generate_password_hash(check_password(password)),
        role=check_role(role),
        is_active=True,
        session_generation=0,
    )
    if find_user(session, username) is not None:
        raise AccountError(f"user {username!r} already exists")
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # created meanwhile by someone else; the caller's transaction aborts
        raise AccountError(f"user {username!r} already exists") from None
    record_change(
        session,
        changed_by=changed_by,
        operation="CREATE",
        table_name=TABLE,
        record_id=user.id,
        old_values=None,
        new_values=user.audit_dict(),
        reason=reason,
        correlation_id=correlation_id,
    )
    return user


def set_password(
    session: Session,
    username: str,
    password: str,
    *,
    changed_by: str,
    reason: str | None = None,
) -> User:
    """Replace a user's password (audited, without the hash) and end the user's sessions."""
    user = _user_or_error(session, username)
    user.password_hash = generate_password_hash(check_password(password))
    _changed(
        session,
        user,
        {"username": user.username, "password": "(previous)"},
        {"username": user.username, "password": "(changed)"},
        changed_by=changed_by,
        reason=reason,
    )
    return user


def _changed(
    session: Session,
    user: User,
    old: dict[str, Any],
    new: dict[str, Any],
    *,
    changed_by: str,
    reason: str | None,
) -> None:
    """A change to ``user`` was applied: end their sessions and write its audit row."""
    end_sessions(session, user.id)
    record_change(
        session,
        changed_by=changed_by,
        operation="UPDATE",
        table_name=TABLE,
        record_id=user.id,
        old_values=old,
        new_values=new,
        reason=reason,
    )


def set_role(
    session: Session,
    username: str,
    role: str,
    *,
    changed_by: str,
    reason: str | None = None,
) -> tuple[User, bool]:
    """Give a user another role (audited), ending their sessions; returns it and whether it changed.

    The sessions end so that nobody keeps working under the old role's page (or a stolen cookie).
    """
    user = _user_or_error(session, username)
    role = check_role(role)
    if user.role == role:
        return user, False
    old = user.audit_dict()
    user.role = role
    _changed(session, user, old, user.audit_dict(), changed_by=changed_by, reason=reason)
    return user, True


def set_active(
    session: Session,
    username: str,
    active: bool,
    *,
    changed_by: str,
    reason: str | None = None,
) -> tuple[User, bool]:
    """Enable or disable a user (audited); disabling ends their sessions. Returns it and whether
    anything changed."""
    user = _user_or_error(session, username)
    if user.is_active is active:
        return user, False
    old = user.audit_dict()
    user.is_active = active
    _changed(session, user, old, user.audit_dict(), changed_by=changed_by, reason=reason)
    return user, True


def end_sessions(session: Session, user_id: int) -> None:
    """End every web session of the user ``user_id`` when ``session``'s transaction commits.

    The generation is bumped in SQL rather than read and written back, so concurrent bumps all count.
    """
    session.execute(
        update(User)
        .where(User.id == user_id)
        .values(session_generation=User.session_generation + 1)
    )


def list_users(session: Session) -> list[User]:
    """Every user, by username."""
    return list(session.scalars(select(User).order_by(User.username)))


def authenticate(
    session: Session,
    username: str,
    password: str,
    *,
    now: datetime | None = None,
) -> LoginResult:
    """Check a log-in; a success stamps ``last_login_at`` in ``session``'s transaction.

    An unknown username costs a password check too, so response times do not tell which exist.
    Counting failures is the web app's job (per account and client address, in
    :mod:`mutt_app.web.throttle`).
    """
    now = now or _now()
    user = find_user(session, username.strip()) if username.strip() else None
    if user is None:
        check_password_hash(_DUMMY_HASH, password)
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)
    if not check_password_hash(user.password_hash, password):
        return LoginResult(LoginOutcome.BAD_CREDENTIALS)
    if not user.is_active:
        return LoginResult(LoginOutcome.INACTIVE)
    user.last_login_at = now
    return LoginResult(LoginOutcome.OK, user=user)
