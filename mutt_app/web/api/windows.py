"""API v2: maintenance windows (list, active ones, create, read, update, end now, delete).

Fields are checked by type here (the same :class:`~mutt_app.commands.fields.FieldSpec` objects the OpenAPI
document describes), then by the commands of :mod:`mutt_app.commands.windows` (on the merged
result for an update), whose messages name the field. Roles as for rules: viewer reads, admin
changes. Every change is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, request
from sqlalchemy import select

from mutt_app.commands import windows as window_commands
from mutt_app.commands.changes import MAX_DB_INT, Change
from mutt_app.commands.fields import FieldSpec, check_fields
from mutt_app.db.models import WINDOW_ACTIONS, MaintenanceWindow
from mutt_app.holdback import windows as mw
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import change_reason, json_body
from mutt_app.web.api.params import bool_arg
from mutt_app.web.api.resources import sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.context import runtime

_TEXT = FieldSpec(str, min_length=1, max_length=mw.MAX_NAME_CHARS)
_WINDOW_SPECS: dict[str, FieldSpec] = {
    "name": FieldSpec(str, min_length=1, max_length=mw.MAX_NAME_CHARS),
    "starts_at": FieldSpec(
        str, format="date-time", description="RFC 3339 with an offset; a recurring window's DTSTART"
    ),
    "ends_at": FieldSpec(
        str, nullable=True, format="date-time", description="one-off windows (or duration_minutes)"
    ),
    "duration_minutes": FieldSpec(
        int,
        nullable=True,
        minimum=1,
        maximum=mw.MAX_DURATION_MINUTES,
        description="each occurrence of a recurring window; for a one-off, instead of ends_at",
    ),
    "rrule": FieldSpec(
        str,
        nullable=True,
        min_length=1,
        max_length=mw.MAX_RRULE_CHARS,
        description="RFC 5545 RRULE (FREQ=...; at most hourly), in timezone's wall-clock time",
    ),
    "timezone": FieldSpec(str, min_length=1, max_length=64, description="IANA time zone"),
    "hosts": FieldSpec(
        list,
        items=_TEXT,
        max_length=mw.MAX_SCOPE_ITEMS,
        description="host names or globs (core-sw-*), case-insensitive; empty: any host",
    ),
    "teams": FieldSpec(
        list, items=_TEXT, max_length=mw.MAX_SCOPE_ITEMS, description="device teams; empty: any"
    ),
    "rule_ids": FieldSpec(
        list,
        items=FieldSpec(int, minimum=1, maximum=MAX_DB_INT),
        max_length=mw.MAX_SCOPE_ITEMS,
        description="winning rule ids; empty: any",
    ),
    "oid_prefixes": FieldSpec(
        list,
        items=_TEXT,
        max_length=mw.MAX_SCOPE_ITEMS,
        description="trap-OID prefixes; empty: any",
    ),
    "action": FieldSpec(str, enum=WINDOW_ACTIONS),
    "summary_alert": FieldSpec(bool),
}
WINDOW_FIELDS = {name: _WINDOW_SPECS[name] for name in window_commands.FIELD_NAMES}
REQUIRED_ON_CREATE = ("name", "starts_at", "action")
READ_ONLY = ("id", "ended_at", "created_at", "updated_at")


def _described(row: MaintenanceWindow) -> dict[str, Any]:
    """The window with what it means now, its schedule kept per window version (a list request
    walks no rule that has not changed since)."""
    return mw.describe(
        row, datetime.now(UTC), schedules=runtime().component(mw.Schedules.of).of_row
    )


def _after(change: Change, window_id: int, row: MaintenanceWindow | None) -> None:
    if change.changed:
        schedule = None if row is None else mw.schedule_of(row)
        window_commands.rescheduled(runtime(), window_id, schedule)


@bp.get("/maintenance-windows")
def list_windows() -> Response:
    """Maintenance windows by name, each with whether it is open now and its next occurrences.
    ``active=true``: only the windows open now (``false``: only those closed now). Each window's
    schedule is kept per version, and a rule whose walk stopped (stored before rules were checked
    with their INTERVAL) carries ``error`` and no occurrences."""
    active = bool_arg("active")
    with sessions()() as session:
        rows = session.scalars(select(MaintenanceWindow).order_by(MaintenanceWindow.name)).all()
        windows = [_described(row) for row in rows]
    if active is not None:
        windows = [w for w in windows if w["active"] is active]
    return json_response({"maintenance_windows": windows, "total": len(windows)})


@bp.post("/maintenance-windows")
def create_window() -> Response:
    """Create a maintenance window; 201 with its id. 409 if the name is taken."""
    body = json_body()
    fields = check_fields(body, WINDOW_FIELDS, required=REQUIRED_ON_CREATE, read_only=READ_ONLY)
    stored = window_commands.checked(fields)
    reason = change_reason(body)
    with config_change(reason, conflict=f"a window named {stored['name']!r} exists") as change:
        row = window_commands.create(change, stored)
        window = _described(row)
    _after(change, window["id"], row)
    return json_response(
        {"id": window["id"], "maintenance_window": window, **change.summary()},
        201,
        {"Location": f"{request.path}/{window['id']}"},
    )


@bp.get("/maintenance-windows/<int:window_id>")
def get_window(window_id: int) -> Response:
    """One maintenance window, with whether it is open now and its next occurrences."""
    with sessions()() as session:
        row = session.get(MaintenanceWindow, window_id) if window_id <= MAX_DB_INT else None
        if row is None:
            raise ApiError(404, f"no maintenance window {window_id}")
        return json_response({"maintenance_window": _described(row)})


@bp.put("/maintenance-windows/<int:window_id>")
def update_window(window_id: int) -> Response:
    """Change some of a window's fields; the merged window must still be valid."""
    body = json_body()
    fields = check_fields(body, WINDOW_FIELDS, read_only=READ_ONLY)
    if not fields:
        raise ApiError(422, "nothing to update: the body names no window field")
    reason = change_reason(body)
    with config_change(reason, conflict="another window has that name") as change:
        row = window_commands.update(change, window_id, fields)
        window = _described(row)
    _after(change, window_id, row)
    return json_response({"id": window_id, "maintenance_window": window, **change.summary()})


@bp.post("/maintenance-windows/<int:window_id>/end")
def end_window(window_id: int) -> Response:
    """End the window's open occurrence now (later occurrences of a recurring window still run);
    409 if none is open."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        row = window_commands.end(change, window_id)
        window = _described(row)
    _after(change, window_id, row)
    return json_response({"id": window_id, "maintenance_window": window, **change.summary()})


@bp.delete("/maintenance-windows/<int:window_id>")
def delete_window(window_id: int) -> Response:
    """Delete a window (an open occurrence ends at once; its summary, if any, follows)."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        old = window_commands.delete(change, window_id)
    _after(change, window_id, None)
    return json_response({"id": window_id, "deleted": old, **change.summary()})
