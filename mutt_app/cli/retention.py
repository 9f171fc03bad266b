"""``mutt retention``: archive and remove what is past its retention."""

from __future__ import annotations

import click

from mutt_app.cli.context import Context, pass_context
from mutt_app.db import retention as retention_mod


@click.group()
def retention() -> None:
    """Archive and remove what is past its retention (event audit, dead letters, poison)."""


@retention.command("run")
@click.option(
    "--dry-run", is_flag=True, help="Show what would be archived and removed; change nothing."
)
@pass_context
def retention_run(obj: Context, dry_run: bool) -> None:
    """Archive (gzip JSON lines + manifest under ARCHIVE_DIR), verify, then drop or delete."""
    settings = obj.settings
    if dry_run:
        _show_plan(obj)
        return
    try:
        report = retention_mod.run(obj.engine, settings, progress=click.echo)
    except retention_mod.RetentionBusy as exc:
        raise click.ClickException(str(exc)) from None
    archived = ", ".join(f"{t} {n}" for t, n in report.rows_archived.items()) or "nothing"
    click.echo(
        f"retention done: {len(report.partitions_dropped)} partitions dropped; rows archived: "
        f"{archived}; {len(report.archives)} archives in {settings.archive_path}"
    )
    if report.failures:
        for failure in report.failures:
            click.echo(f"failed: {failure}", err=True)
        raise click.ClickException(
            f"{len(report.failures)} retention steps failed; their data is kept"
        )


def _show_plan(obj: Context) -> None:
    """What ``retention run`` would archive and remove now (``--dry-run``)."""
    found = retention_mod.plan(obj.engine, obj.settings)
    click.echo(
        f"dry run ({found.database}): nothing is changed; archives would go to "
        f"{obj.settings.archive_path}"
    )
    click.echo(f"event audit older than {found.event_cutoff:%Y-%m-%d %H:%M} UTC:")
    for item in found.partitions:
        state = " (retiring: a killed run detached it)" if item.retiring else ""
        click.echo(f"  partition {item.table}: {item.rows} rows{state}")
    if found.database == "postgresql" and not found.partitions:
        click.echo("  no partition wholly past retention")
    if found.default_partition_rows:
        click.echo(
            f"  default partition: {found.default_partition_rows} rows of past months "
            "(moved into their month's partition, then archived)"
        )
    for table, rows in found.rows.items():
        click.echo(f"{table} older than {found.cutoffs[table]:%Y-%m-%d %H:%M} UTC: {rows} rows")
    click.echo("config_audit_log: kept (never deleted)")
