"""API v2: maintenance windows (list, active ones, create, read, update, end now, delete).

Fields are checked by type here (the same :class:`~mutt_app.web.api.FieldSpec` objects the OpenAPI
document describes), then by :func:`mutt_app.holdback.windows.validate` on the merged result
(an update lays the body over the stored window), whose messages name the field: a bad RRULE
carries dateutil's text, an unknown time zone its name. Roles as for rules: viewer reads, admin
changes. Every change is audited through :mod:`mutt_app.commands.changes`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Response, request
from sqlalchemy import select

from mutt_app.commands.changes import Change
from mutt_app.db.models import WINDOW_ACTIONS, MaintenanceWindow
from mutt_app.holdback import windows as mw
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change, locked_or_404
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import FieldSpec, change_reason, check_fields, json_body
from mutt_app.web.api.params import MAX_DB_INT, bool_arg
from mutt_app.web.api.resources import redis_connection, sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.context import settings

_TEXT = FieldSpec(str, min_length=1, max_length=mw.MAX_NAME_CHARS)
WINDOW_FIELDS: dict[str, FieldSpec] = {
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
REQUIRED_ON_CREATE = ("name", "starts_at", "action")
READ_ONLY = ("id", "ended_at", "created_at", "updated_at")
_TIMES = ("starts_at", "ends_at")


def _parsed(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` with starts_at and ends_at as datetimes; 422 unless RFC 3339 with an offset."""
    out = dict(fields)
    for name in _TIMES:
        value = out.get(name)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise ApiError(
                    422,
                    f"{name}: an RFC 3339 date-time with an offset, got {value[:64]!r}",
                    {"fields": {name: "not a date-time with an offset"}},
                )
            out[name] = moment
    return out


def _validated(fields: dict[str, Any]) -> dict[str, Any]:
    try:
        return mw.validate(_parsed(fields))
    except mw.WindowError as exc:
        field = str(exc).split(":", 1)[0]
        raise ApiError(422, str(exc), {"fields": {field: str(exc)}}) from None


def _api_fields(row: MaintenanceWindow) -> dict[str, Any]:
    """A stored window as the body fields that would make it."""
    stored = row.as_dict()
    return {name: stored[name] for name in WINDOW_FIELDS}


def _described(row: MaintenanceWindow) -> dict[str, Any]:
    return mw.describe(row, datetime.now(UTC))


def _remember() -> int:
    return 2 * settings().reconcile_after


def _after(change: Change, window_id: int, row: MaintenanceWindow | None) -> None:
    if change.changed:
        schedule = None if row is None else mw.schedule_of(row)
        mw.after_change(redis_connection(), _remember(), window_id, schedule)


@bp.get("/maintenance-windows")
def list_windows() -> Response:
    """Maintenance windows by name, each with whether it is open now and its next occurrences.
    ``active=true``: only the windows open now (``false``: only those closed now)."""
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
    stored = _validated(fields)
    reason = change_reason(body)
    with config_change(reason, conflict=f"a window named {stored['name']!r} exists") as change:
        row = MaintenanceWindow(**stored)
        change.create(row)
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
        row = locked_or_404(change, MaintenanceWindow, window_id, "maintenance window")
        stored = _validated(_merged(_api_fields(row), fields))
        old = row.as_dict()
        changed = {
            name: value
            for name, value in stored.items()
            if _comparable(old[name]) != _comparable(value)
        }
        if changed:
            change.update(row, changed)
        window = _described(row)
    _after(change, window_id, row)
    return json_response({"id": window_id, "maintenance_window": window, **change.summary()})


def _merged(current: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The body laid over the stored window. A new duration or RRULE without an ends_at replaces
    the stored ends_at (a one-off's end, or a one-off becoming recurring), instead of clashing."""
    merged = {**current, **fields}
    if "ends_at" not in fields and ("duration_minutes" in fields or fields.get("rrule")):
        merged["ends_at"] = None
    return merged


def _comparable(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


@bp.post("/maintenance-windows/<int:window_id>/end")
def end_window(window_id: int) -> Response:
    """End the window's open occurrence now (later occurrences of a recurring window still run);
    409 if none is open."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        row = locked_or_404(change, MaintenanceWindow, window_id, "maintenance window")
        try:
            mw.end_now(change, row)
        except mw.WindowError as exc:
            raise ApiError(409, str(exc)) from None
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
        old = change.delete(
            locked_or_404(change, MaintenanceWindow, window_id, "maintenance window")
        )
    _after(change, window_id, None)
    return json_response({"id": window_id, "deleted": old, **change.summary()})
