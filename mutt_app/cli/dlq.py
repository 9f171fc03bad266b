"""``mutt dlq``: inspect, replay and purge dead letters and poison.

A replay or purge is a person's change like any other: ``--reason`` is required and each item
replayed or purged writes one config_audit_log row (who = ``cli:<user>``), through the same commands
as the REST API and the admin UI (:mod:`mutt_app.commands.deadletters`), in one transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import TypeVar

import click

from mutt_app.cli.audited import change_reason, cli_user
from mutt_app.cli.context import Context, pass_context
from mutt_app.commands import deadletters as commands
from mutt_app.commands.changes import Change, audited_change
from mutt_app.commands.errors import CommandError, NotFound
from mutt_app.db.models import DeadLetter, PoisonLetter
from mutt_app.forwarding import deadletters

F = TypeVar("F", bound=Callable[..., object])

_TASKS = click.Choice(["classify_event", "forward_to_moog"])


def _age(value: str | None) -> timedelta | None:
    """'90s', '15m', '2h', '7d' -> timedelta."""
    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    try:
        return timedelta(seconds=float(value[:-1]) * units[value[-1]])
    except (KeyError, ValueError, IndexError):
        raise click.BadParameter(f"{value!r}: use a number with s, m, h or d (e.g. 15m)") from None


def _dlq_filters(func: F) -> F:
    func = click.option("--poison", is_flag=True, help="The poison store instead of the DLQ.")(func)
    func = click.option("--task", type=_TASKS, help="Only this task's items.")(func)
    func = click.option(
        "--older-than", help="Only items that last failed before this age (15m, 2d)."
    )(func)
    return func


@click.group()
def dlq() -> None:
    """Inspect, replay and purge dead letters and poison."""


@dlq.command("list")
@_dlq_filters
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@pass_context
def dlq_list(
    obj: Context, poison: bool, task: str | None, older_than: str | None, limit: int
) -> None:
    """List items, oldest first, with a total."""
    age = _age(older_than)
    with obj.sessions() as session:
        total = deadletters.count(session, poison=poison, task_name=task, older_than=age)
        items = deadletters.find(
            session, poison=poison, task_name=task, older_than=age, limit=limit
        )
        for item in items:
            click.echo(
                f"{item.id:>8}  {item.task_name:<21} {item.last_failed_at:%Y-%m-%d %H:%M:%S}  "
                f"attempts={item.attempts} replays={item.replays}  "
                f"{item.error_type}: {item.error_message[:80]}"
            )
    store = "poison" if poison else "dead letters"
    click.echo(f"{total} {store}" + (f" (showing {len(items)})" if total > len(items) else ""))


@dlq.command("show")
@click.argument("item_id", type=int)
@click.option("--poison", is_flag=True, help="The poison store instead of the DLQ.")
@pass_context
def dlq_show(obj: Context, item_id: int, poison: bool) -> None:
    """Show one item in full (payload as JSON)."""
    with obj.sessions() as session:
        item = session.get(PoisonLetter if poison else DeadLetter, item_id)
        if item is None:
            raise click.ClickException(f"no {'poison item' if poison else 'dead letter'} {item_id}")
        fields = {c.name: getattr(item, c.key) for c in item.__table__.columns}
    click.echo(json.dumps(fields, indent=2, default=str))


def _change(obj: Context, reason: str) -> AbstractContextManager[Change]:
    """One audited change by the terminal's user (no rules-version bump: no rule changes)."""
    if not reason.strip():
        raise click.ClickException("--reason must not be blank")
    return audited_change(obj.sessions, None, changed_by=cli_user(), reason=reason.strip())


def _ids(
    change: Change,
    item_ids: tuple[int, ...],
    poison: bool,
    task: str | None,
    older_than: str | None,
) -> list[int]:
    if item_ids:
        return list(item_ids)
    found = deadletters.find(
        change.session, poison=poison, task_name=task, older_than=_age(older_than), limit=None
    )
    return [item.id for item in found]


@dlq.command("replay")
@click.argument("item_ids", type=int, nargs=-1)
@_dlq_filters
@click.option("--all", "everything", is_flag=True, help="Every item matching the filters.")
@change_reason
@pass_context
def dlq_replay(
    obj: Context,
    item_ids: tuple[int, ...],
    poison: bool,
    task: str | None,
    older_than: str | None,
    everything: bool,
    reason: str,
) -> None:
    """Publish items again now (by id, or --all matching the filters) and remove them, audited."""
    if not item_ids and not everything:
        raise click.UsageError("name item ids, or --all")
    replayed = skipped = 0
    with _change(obj, reason) as change:
        for item_id in _ids(change, item_ids, poison, task, older_than):
            try:
                commands.replay(change, obj.celery, item_id, poison=poison)
            except CommandError as exc:  # NotFound, or a payload that cannot be replayed
                click.echo(f"{item_id}: {exc.message}; left in place", err=True)
                skipped += 1
                continue
            replayed += 1
    click.echo(f"replayed {replayed}, skipped {skipped}")


@dlq.command("purge")
@click.argument("item_ids", type=int, nargs=-1)
@_dlq_filters
@click.option("--all", "everything", is_flag=True, help="Every item matching the filters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@change_reason
@pass_context
def dlq_purge(
    obj: Context,
    item_ids: tuple[int, ...],
    poison: bool,
    task: str | None,
    older_than: str | None,
    everything: bool,
    yes: bool,
    reason: str,
) -> None:
    """Delete items for good (by id, or --all matching the filters), audited (the rows keep them)."""
    if not item_ids and not everything:
        raise click.UsageError("name item ids, or --all")
    deleted = 0
    with _change(obj, reason) as change:
        ids = _ids(change, item_ids, poison, task, older_than)
        if ids and not yes:
            click.confirm(f"Delete {len(ids)} items for good?", abort=True)
        for item_id in ids:
            try:
                commands.purge(change, item_id, poison=poison)
            except NotFound as exc:
                click.echo(f"{item_id}: {exc.message}", err=True)
                continue
            deleted += 1
    click.echo(f"purged {deleted}")
