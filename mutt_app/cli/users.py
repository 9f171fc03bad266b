"""``mutt users``: the web UI's accounts. Every change needs ``--reason``, kept in its audit row."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import click
from sqlalchemy.orm import Session

from mutt_app.cli.audited import change_reason, cli_user
from mutt_app.cli.context import Context, pass_context
from mutt_app.commands import users as accounts
from mutt_app.commands.users import AccountError

T = TypeVar("T")

_ROLE = click.Choice(["viewer", "operator", "admin"])
_password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
_reason = change_reason


@click.group()
def users() -> None:
    """Manage the web UI's accounts (there is no default account)."""


def _read_password(password_stdin: bool) -> str:
    """The new password: the first line of standard input, or asked twice without echo."""
    if password_stdin:
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _account_change(obj: Context, change: Callable[[Session], T]) -> T:
    """Run ``change(session)`` in one transaction; an AccountError becomes a one-line error."""
    if not click.get_current_context().params.get("reason", "").strip():
        raise click.ClickException("--reason must not be blank")
    try:
        with obj.sessions.begin() as session:
            return change(session)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


@users.command("create")
@click.argument("username")
@click.option("--role", type=_ROLE, default="viewer", show_default=True)
@_password_stdin
@_reason
@pass_context
def users_create(obj: Context, username: str, role: str, password_stdin: bool, reason: str) -> None:
    """Create an account (the password is asked for twice, or read with --password-stdin)."""
    password = _read_password(password_stdin)
    user = _account_change(
        obj,
        lambda session: accounts.create_user(
            session, username, password, role, changed_by=cli_user(), reason=reason
        ),
    )
    click.echo(f"user {user.username} created with role {user.role}")


@users.command("set-password")
@click.argument("username")
@_password_stdin
@_reason
@pass_context
def users_set_password(obj: Context, username: str, password_stdin: bool, reason: str) -> None:
    """Set an account's password (ending the account's web sessions)."""
    password = _read_password(password_stdin)
    _account_change(
        obj,
        lambda session: accounts.set_password(
            session, username, password, changed_by=cli_user(), reason=reason
        ),
    )
    click.echo(f"password of {username} changed")


@users.command("set-role")
@click.argument("username")
@click.argument("role", type=_ROLE)
@_reason
@pass_context
def users_set_role(obj: Context, username: str, role: str, reason: str) -> None:
    """Give an account another role (ending the account's web sessions)."""
    _user, changed = _account_change(
        obj,
        lambda session: accounts.set_role(
            session, username, role, changed_by=cli_user(), reason=reason
        ),
    )
    click.echo(f"{username} is now {role}" if changed else f"{username} already is {role}")


@users.command("disable")
@click.argument("username")
@_reason
@pass_context
def users_disable(obj: Context, username: str, reason: str) -> None:
    """Disable an account: it cannot log in, and its web sessions end at once."""
    _set_active(obj, username, False, reason)


@users.command("enable")
@click.argument("username")
@_reason
@pass_context
def users_enable(obj: Context, username: str, reason: str) -> None:
    """Enable a disabled account again."""
    _set_active(obj, username, True, reason)


def _set_active(obj: Context, username: str, active: bool, reason: str) -> None:
    _user, changed = _account_change(
        obj,
        lambda session: accounts.set_active(
            session, username, active, changed_by=cli_user(), reason=reason
        ),
    )
    state = "enabled" if active else "disabled"
    click.echo(f"{username} {state}" if changed else f"{username} already is {state}")


@users.command("list")
@pass_context
def users_list(obj: Context) -> None:
    """Every account: role, state and last log-in."""
    with obj.sessions() as session:
        rows = accounts.list_users(session)
    if not rows:
        click.echo("no users (create one with: mutt users create NAME --role admin --reason WHY)")
        return
    for user in rows:
        state = "active" if user.is_active else "disabled"
        last = user.last_login_at.isoformat(timespec="seconds") if user.last_login_at else "never"
        click.echo(f"{user.username:<24} {user.role:<9} {state:<9} last login {last}")
