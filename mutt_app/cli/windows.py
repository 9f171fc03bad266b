"""``mutt windows``: maintenance windows, listed, added and ended now (audited)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import click
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mutt_app.cli.audited import audited, change_reason, report
from mutt_app.cli.context import Context, pass_context
from mutt_app.db.models import MaintenanceWindow
from mutt_app.holdback import windows as mw


@click.group()
def windows() -> None:
    """Maintenance windows: list them, add one, end an open one now (audited)."""


def _when(value: str | None, option: str, tz: tzinfo) -> datetime | None:
    """An ISO 8601 date-time option; one without an offset is read in the window's time zone,
    as an operator typing "2026-12-24T02:00" means it."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("an ISO 8601 date-time", param_hint=option) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


@windows.command("list")
@click.option("--active", is_flag=True, help="Only windows open now.")
@pass_context
def windows_list(obj: Context, active: bool) -> None:
    """Every window: id, name, action, open now or not, its schedule and next occurrence."""
    now = datetime.now(UTC)
    with obj.sessions() as session:
        rows = session.scalars(select(MaintenanceWindow).order_by(MaintenanceWindow.name)).all()
        described = [mw.describe(row, now, upcoming=1) for row in rows]
    shown = [w for w in described if w["active"] or not active]
    if not shown:
        click.echo("no maintenance windows" + (" open now" if active else ""))
        return
    for w in shown:
        state = f"OPEN until {w['occurrence']['end']}" if w["active"] else "closed"
        when = (
            f"{w['rrule']} for {w['duration_minutes']} min ({w['timezone']})"
            if w["rrule"]
            else (f"{w['starts_at']} .. {w['ends_at']}")
        )
        upcoming = w["next_occurrences"]
        nxt = f"; next {upcoming[0]['start']}" if upcoming and not w["active"] else ""
        click.echo(f"{w['id']:>4} {w['name']!r} {w['action']} {state}; {when}{nxt}")


@windows.command("add")
@click.argument("name")
@click.option("--starts-at", required=True, help="ISO 8601 date-time (offset, else --timezone).")
@click.option("--ends-at", help="One-off: ISO 8601 date-time (or --duration).")
@click.option("--duration", "duration_minutes", type=int, help="Minutes (each occurrence).")
@click.option("--rrule", help='RFC 5545 RRULE, e.g. "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2".')
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone.")
@click.option("--host", "hosts", multiple=True, help="Host name or glob (repeatable).")
@click.option("--team", "teams", multiple=True, help="Device team (repeatable).")
@click.option("--rule", "rule_ids", type=int, multiple=True, help="Rule id (repeatable).")
@click.option("--oid-prefix", "oid_prefixes", multiple=True, help="Trap-OID prefix (repeatable).")
@click.option(
    "--action", type=click.Choice(["suppress", "downgrade"]), required=True, help="What it does."
)
@click.option("--no-summary", is_flag=True, help="No summary alert when an occurrence ends.")
@change_reason
@pass_context
def windows_add(
    obj: Context,
    name: str,
    starts_at: str,
    ends_at: str | None,
    duration_minutes: int | None,
    rrule: str | None,
    timezone: str,
    hosts: tuple[str, ...],
    teams: tuple[str, ...],
    rule_ids: tuple[int, ...],
    oid_prefixes: tuple[str, ...],
    action: str,
    no_summary: bool,
    reason: str,
) -> None:
    """Add the maintenance window NAME (validated as the REST API validates it)."""
    try:
        tz = mw.zone(timezone)
        stored = mw.validate(
            {
                "name": name,
                "starts_at": _when(starts_at, "--starts-at", tz),
                "ends_at": _when(ends_at, "--ends-at", tz),
                "duration_minutes": duration_minutes,
                "rrule": rrule,
                "timezone": timezone,
                "hosts": list(hosts),
                "teams": list(teams),
                "rule_ids": list(rule_ids),
                "oid_prefixes": list(oid_prefixes),
                "action": action,
                "summary_alert": not no_summary,
            }
        )
    except mw.WindowError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with audited(obj, reason) as change:
            row = MaintenanceWindow(**stored)
            change.create(row)
            described = mw.describe(row, datetime.now(UTC), upcoming=1)
    except IntegrityError:
        raise click.ClickException(f"a window named {stored['name']!r} exists") from None
    state = "open now" if described["active"] else "closed now"
    upcoming = described["next_occurrences"]
    nxt = f", next occurrence {upcoming[0]['start']}" if upcoming else ", no occurrence to come"
    report(change, f"window {described['id']} {stored['name']!r} added ({state}{nxt})", "")


@windows.command("end")
@click.argument("window")
@change_reason
@pass_context
def windows_end(obj: Context, window: str, reason: str) -> None:
    """End the open occurrence of WINDOW (its id or name) now; later occurrences still run."""
    with audited(obj, reason) as change:
        by = {"id": int(window)} if window.isdigit() else {"name": window}
        row = change.locked(MaintenanceWindow, **by)
        if row is None:
            raise click.ClickException(f"no maintenance window {window!r}")
        try:
            occurrence = mw.end_now(change, row)
        except mw.WindowError as exc:
            raise click.ClickException(str(exc)) from None
        window_id, schedule = row.id, mw.schedule_of(row)
    mw.after_change(obj.workers_redis, 2 * obj.settings.ledger_reconcile_after, window_id, schedule)
    report(
        change,
        f"window {window_id} ended (its occurrence since {occurrence.start.isoformat()})",
        "",
    )
