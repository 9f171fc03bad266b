"""``mutt dlq``: inspect, replay and purge dead letters and poison."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import click
from sqlalchemy import delete

from mutt_app.cli.context import Context, pass_context
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


@dlq.command("replay")
@click.argument("item_ids", type=int, nargs=-1)
@_dlq_filters
@click.option("--all", "everything", is_flag=True, help="Every item matching the filters.")
@pass_context
def dlq_replay(
    obj: Context,
    item_ids: tuple[int, ...],
    poison: bool,
    task: str | None,
    older_than: str | None,
    everything: bool,
) -> None:
    """Publish items again now (by id, or --all matching the filters) and remove them."""
    if not item_ids and not everything:
        raise click.UsageError("name item ids, or --all")
    model = PoisonLetter if poison else DeadLetter
    replayed = skipped = 0
    with obj.sessions.begin() as session:
        if item_ids:
            items = [i for i in (session.get(model, n) for n in item_ids) if i is not None]
            skipped += len(item_ids) - len(items)
        else:
            items = deadletters.find(
                session, poison=poison, task_name=task, older_than=_age(older_than), limit=None
            )
        for item in items:
            if deadletters.replay(session, obj.celery, item) is None:
                click.echo(f"{item.id}: payload cannot be replayed; left in place", err=True)
                skipped += 1
                continue
            replayed += 1
    click.echo(f"replayed {replayed}, skipped {skipped}")


@dlq.command("purge")
@click.argument("item_ids", type=int, nargs=-1)
@_dlq_filters
@click.option("--all", "everything", is_flag=True, help="Every item matching the filters.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
def dlq_purge(
    obj: Context,
    item_ids: tuple[int, ...],
    poison: bool,
    task: str | None,
    older_than: str | None,
    everything: bool,
    yes: bool,
) -> None:
    """Delete items for good (by id, or --all matching the filters)."""
    if not item_ids and not everything:
        raise click.UsageError("name item ids, or --all")
    model = PoisonLetter if poison else DeadLetter
    with obj.sessions.begin() as session:
        if item_ids:
            ids = list(item_ids)
        else:
            found = deadletters.find(
                session, poison=poison, task_name=task, older_than=_age(older_than), limit=None
            )
            ids = [item.id for item in found]
        if ids and not yes:
            click.confirm(f"Delete {len(ids)} items for good?", abort=True)
        deleted = session.execute(delete(model).where(model.id.in_(ids))).rowcount if ids else 0
    click.echo(f"purged {deleted}")
