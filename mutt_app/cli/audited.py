"""How a ``mutt`` command makes an audited change: by the terminal's user, with a reason, one line
on what it did.

The rules, dev-hosts, teams, heartbeats and windows commands all go through
:func:`mutt_app.commands.changes.audited_change`; what they share (the ``--reason`` option, the
report, creating a row whose name must be new, removing one that must exist) is written here once.
"""

from __future__ import annotations

import getpass
from contextlib import AbstractContextManager
from typing import Any

import click
from sqlalchemy.exc import IntegrityError

from mutt_app.cli.context import Context
from mutt_app.commands.changes import Change, audited_change

change_reason = click.option(
    "--reason", required=True, help="Why (kept in the configuration audit, as for every change)."
)


def cli_user() -> str:
    """Who changes things from this terminal, as the audit names them."""
    return f"cli:{getpass.getuser()}"


def audited(obj: Context, reason: str) -> AbstractContextManager[Change]:
    """One audited change by the CLI's user (:func:`mutt_app.commands.changes.audited_change`)."""
    if not reason.strip():
        raise click.ClickException("--reason must not be blank")
    return audited_change(
        obj.sessions, obj.workers_redis, changed_by=cli_user(), reason=reason.strip()
    )


def report(change: Change, done: str, unchanged: str) -> None:
    """One line on what the change did; warnings (the rules version not bumped) on stderr."""
    if not change.changed:
        click.echo(unchanged)
        return
    version = change.rules_version if change.rules_version is not None else "not bumped"
    click.echo(f"{done} (rules version {version}, correlation id {change.correlation_id})")
    for warning in change.warnings:
        click.echo(f"warning: {warning}", err=True)


def hostname_of(value: str) -> str:
    """``value`` as a host name, or a one-line error when it is blank."""
    # Stripped, as ingest strips an event's hostname and the API stores it.
    hostname = value.strip()
    if not hostname:
        raise click.ClickException("the hostname must not be blank")
    return hostname


def create_audited(obj: Context, reason: str, row: Any, exists: str, done: str) -> None:
    """Add ``row`` in one audited change; ``exists`` is the error when its key is taken."""
    try:
        with audited(obj, reason) as change:
            change.create(row)
    except IntegrityError:  # the UNIQUE constraint decides, so two concurrent adds cannot both win
        raise click.ClickException(exists) from None
    report(change, done, "")


def remove_audited(
    obj: Context, reason: str, model: type, key: dict[str, Any], missing: str, done: str
) -> None:
    """Delete the ``model`` row with ``key`` in one audited change; ``missing`` when there is none."""
    with audited(obj, reason) as change:
        row = change.locked(model, **key)
        if row is None:
            raise click.ClickException(missing)
        change.delete(row)
    report(change, done, "")
