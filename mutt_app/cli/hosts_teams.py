"""``mutt dev-hosts`` and ``mutt teams``: what a host is and whose it is (audited)."""

from __future__ import annotations

import click
from sqlalchemy.exc import IntegrityError

from mutt_app.cli.audited import (
    audited,
    change_reason,
    create_audited,
    hostname_of,
    remove_audited,
    report,
)
from mutt_app.cli.context import Context, pass_context
from mutt_app.db.models import DevelopmentHost, DeviceTeam


@click.group("dev-hosts")
def dev_hosts() -> None:
    """Mark hosts as development (their events get the rules' dev_handling), audited."""


@dev_hosts.command("add")
@click.argument("hostname")
@click.option("--description", help="What the host is.")
@change_reason
@pass_context
def dev_hosts_add(obj: Context, hostname: str, description: str | None, reason: str) -> None:
    """Mark HOSTNAME as a development host."""
    hostname = hostname_of(hostname)
    row = DevelopmentHost(hostname=hostname, description=description or None)
    exists = f"development host {hostname!r} already exists"
    create_audited(obj, reason, row, exists, f"{hostname} is a development host")


@dev_hosts.command("remove")
@click.argument("hostname")
@change_reason
@pass_context
def dev_hosts_remove(obj: Context, hostname: str, reason: str) -> None:
    """Make HOSTNAME a production host again."""
    missing, done = f"no development host {hostname!r}", f"{hostname} is a production host again"
    remove_audited(obj, reason, DevelopmentHost, {"hostname": hostname}, missing, done)


@click.group()
def teams() -> None:
    """Map hosts to teams, overriding their rules' team (audited)."""


@teams.command("set")
@click.argument("hostname")
@click.argument("team")
@change_reason
@pass_context
def teams_set(obj: Context, hostname: str, team: str, reason: str) -> None:
    """Map HOSTNAME to TEAM (a new mapping, or a change of the existing one)."""
    hostname = hostname_of(hostname)
    if not team.strip():
        raise click.ClickException("the team must not be blank")
    try:
        with audited(obj, reason) as change:
            mapping = change.locked(DeviceTeam, hostname=hostname)
            if mapping is None:
                change.create(DeviceTeam(hostname=hostname, team_assignment=team))
            else:
                change.update(mapping, {"team_assignment": team})
    except IntegrityError:  # mapped meanwhile by someone else
        raise click.ClickException(f"host {hostname!r} was mapped meanwhile; try again") from None
    report(change, f"{hostname} maps to {team}", f"{hostname} already maps to {team}")


@teams.command("remove")
@click.argument("hostname")
@change_reason
@pass_context
def teams_remove(obj: Context, hostname: str, reason: str) -> None:
    """Remove HOSTNAME's team mapping (its events get their rule's team again)."""
    missing = f"no team mapping for host {hostname!r}"
    done = f"{hostname} has no team mapping any more"
    remove_audited(obj, reason, DeviceTeam, {"hostname": hostname}, missing, done)
