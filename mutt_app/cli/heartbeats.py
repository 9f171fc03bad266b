"""``mutt heartbeats``: hosts that must send an event every N minutes."""

from __future__ import annotations

import click
from sqlalchemy import select

from mutt_app.cli.audited import change_reason, create_audited, remove_audited
from mutt_app.cli.context import Context, pass_context
from mutt_app.db.models import Heartbeat
from mutt_app.watch.heartbeat_quiet import quiet_hosts


@click.group()
def heartbeats() -> None:
    """Hosts (a name, a glob, or a device team's) that must send an event every N minutes."""


@heartbeats.command("list")
@pass_context
def heartbeats_list(obj: Context) -> None:
    """Every heartbeat, with the hosts quiet now (as the last check recorded them)."""
    with obj.sessions() as session:
        rows = session.scalars(select(Heartbeat).order_by(Heartbeat.name)).all()
    client = obj.workers_redis
    quiet = quiet_hosts(client) if client is not None else None
    if not rows:
        click.echo("no heartbeats (add one with: mutt heartbeats add NAME --host H --every 5)")
    for row in rows:
        watched = f"host {row.host}" if row.host is not None else f"team {row.team}"
        state = "active" if row.is_active else "inactive"
        click.echo(
            f"{row.id:>4} {row.name:<24} {watched:<28} every {row.interval_minutes:>5} min"
            f"  {row.handling:<15} {state}"
        )
    if quiet is None:
        click.echo("quiet hosts: unknown (embedded Redis; see the admin page)")
    for entry in quiet or []:
        last = entry["last_event"] or "never"
        click.echo(f"QUIET {entry['host']} ({entry['heartbeat']}): last event {last}")


@heartbeats.command("add")
@click.argument("name")
@click.option("--host", help="A host name, or a glob (db-*) over the hosts heard from.")
@click.option("--team", help="A device team: every host mapped to it.")
@click.option("--every", "minutes", type=click.IntRange(1, 10_080), required=True, help="Minutes.")
@click.option(
    "--handling",
    type=click.Choice(["Page_and_ticket", "Ticket_only", "Email_only", "Log_only"]),
    default="Ticket_only",
    show_default=True,
    help="The alert's lane.",
)
@click.option("--team-assignment", help="The alert's Moog class (default: the host's team).")
@change_reason
@pass_context
def heartbeats_add(
    obj: Context,
    name: str,
    host: str | None,
    team: str | None,
    minutes: int,
    handling: str,
    team_assignment: str | None,
    reason: str,
) -> None:
    """Add heartbeat NAME: --host or --team must send an event every --every minutes."""
    host = (host or "").strip() or None
    team = (team or "").strip() or None
    if not name.strip():
        raise click.ClickException("the name must not be blank")
    if (host is None) == (team is None):
        raise click.UsageError("give exactly one of --host and --team")
    row = Heartbeat(
        name=name.strip(),
        host=host,
        team=team,
        interval_minutes=minutes,
        handling=handling,
        team_assignment=(team_assignment or "").strip() or None,
    )
    exists = f"a heartbeat named {name!r} already exists"
    create_audited(obj, reason, row, exists, f"heartbeat {name!r} added")


@heartbeats.command("remove")
@click.argument("name")
@change_reason
@pass_context
def heartbeats_remove(obj: Context, name: str, reason: str) -> None:
    """Delete heartbeat NAME; the next check clears its open alerts."""
    missing, done = f"no heartbeat {name!r}", f"heartbeat {name!r} removed"
    remove_audited(obj, reason, Heartbeat, {"name": name}, missing, done)
