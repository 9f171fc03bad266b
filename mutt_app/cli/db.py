"""``mutt db``: migrate, seed and partition the database."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from mutt_app.cli.context import Context, pass_context
from mutt_app.commands.changes import audited_change
from mutt_app.commands.seed import SEED_RULES, seed_rules
from mutt_app.db.engine import current_revision, is_postgres
from mutt_app.db.engine import downgrade as run_downgrade
from mutt_app.db.engine import upgrade as run_upgrade
from mutt_app.db.partitions import ensure_partitions


@click.group()
def db() -> None:
    """Migrate, seed and partition the database."""


@db.command()
@click.option("--revision", default="head", show_default=True)
@pass_context
def upgrade(obj: Context, revision: str) -> None:
    """Apply migrations (creates the schema on a new database)."""
    run_upgrade(obj.engine, revision)
    click.echo(f"database at revision {current_revision(obj.engine)} ({obj.where()})")


@db.command()
@click.option("--revision", default="base", show_default=True, help="'base' drops everything.")
@click.confirmation_option(prompt="This drops MUTT's tables and their data. Continue?")
@pass_context
def downgrade(obj: Context, revision: str) -> None:
    """Revert migrations."""
    run_downgrade(obj.engine, revision)
    click.echo(f"database at revision {current_revision(obj.engine) or 'base'} ({obj.where()})")


@db.command()
@pass_context
def seed(obj: Context) -> None:
    """Load the default catch-all rule and the example rules (idempotent)."""
    with audited_change(
        obj.sessions, obj.workers_redis, changed_by="mutt db seed", reason="seed rules"
    ) as change:
        added = seed_rules(change)
    click.echo(f"seed rules: {len(added)} added, {len(SEED_RULES) - len(added)} already present")


@db.command()
@click.option(
    "--months-ahead",
    type=click.IntRange(0, 120),
    default=None,
    help="Months after the current one [default: PARTITION_PRECREATE_MONTHS].",
)
@click.option(
    "--from",
    "first",
    type=click.DateTime(["%Y-%m", "%Y-%m-%d"]),
    default=None,
    help="First month (YYYY-MM) [default: the current month].",
)
@click.option(
    "--drain-default/--keep-default",
    default=True,
    show_default=True,
    help="Also create the months that have rows in the default partition, moving them out.",
)
@pass_context
def partitions(
    obj: Context, months_ahead: int | None, first: datetime | None, drain_default: bool
) -> None:
    """Create monthly event-audit partitions (PostgreSQL; idempotent)."""
    if not is_postgres(obj.engine):
        click.echo("this database has no partitions (SQLite): nothing to do")
        return
    ahead = obj.settings.partition_precreate_months if months_ahead is None else months_ahead
    start = (first or datetime.now(UTC)).date()
    results = ensure_partitions(obj.engine, start, ahead, drain_default=drain_default)
    for result in results:
        status = "created" if result.created else "exists"
        moved = f", moved {result.moved_rows} rows from default" if result.moved_rows else ""
        click.echo(f"{result.name}: {status}{moved}")
    created = sum(r.created for r in results)
    click.echo(f"{len(results)} partitions checked, {created} created")


@db.command()
@pass_context
def current(obj: Context) -> None:
    """Show the database's migration revision."""
    click.echo(f"{current_revision(obj.engine) or 'base'} ({obj.where()})")
