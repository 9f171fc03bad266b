"""Commands on maintenance windows: create, update, end the open occurrence now, delete.

Fields are checked by :func:`mutt_app.holdback.windows.validate` (through :func:`checked`), on the
merged result for an update (the new fields laid over the stored window); its messages name the
field: a bad RRULE carries dateutil's text, an unknown time zone its name. After the commit the
caller moves the end of the window's counted occurrence (:func:`rescheduled`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mutt_app.commands.changes import Change
from mutt_app.commands.errors import Conflict, Invalid
from mutt_app.db.models import MaintenanceWindow
from mutt_app.holdback import windows as mw
from mutt_app.runtime import Runtime

FIELD_NAMES = (
    "name",
    "starts_at",
    "ends_at",
    "duration_minutes",
    "rrule",
    "timezone",
    "hosts",
    "teams",
    "rule_ids",
    "oid_prefixes",
    "action",
    "summary_alert",
)
"""A window's own fields, the ones a person sets."""
_TIMES = ("starts_at", "ends_at")


def _parsed(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with starts_at and ends_at as datetimes; :class:`Invalid` unless a text one is
    RFC 3339 with an offset."""
    out = dict(fields)
    for name in _TIMES:
        value = out.get(name)
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise Invalid(
                    f"{name}: an RFC 3339 date-time with an offset, got {value[:64]!r}",
                    {"fields": {name: "not a date-time with an offset"}},
                )
            out[name] = moment
    return out


def checked(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The stored columns for a window's ``fields``; :class:`Invalid` naming the field."""
    try:
        return mw.validate(_parsed(fields))
    except mw.WindowError as exc:
        field = str(exc).split(":", 1)[0]
        raise Invalid(str(exc), {"fields": {field: str(exc)}}) from None


def create(change: Change, stored: Mapping[str, Any]) -> MaintenanceWindow:
    """Add the window ``stored`` (from :func:`checked`) in ``change``."""
    row = MaintenanceWindow(**stored)
    change.create(row)
    return row


def _merged(current: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """The new fields laid over the stored window. A new duration or RRULE without an ends_at
    replaces the stored ends_at (a one-off's end, or a one-off becoming recurring), instead of
    clashing."""
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


def update(change: Change, window_id: int, fields: Mapping[str, Any]) -> MaintenanceWindow:
    """Change some of window ``window_id``'s fields (locked); the merged window must be valid."""
    row = change.found(MaintenanceWindow, window_id, "maintenance window")
    old = row.as_dict()
    stored = checked(_merged({name: old[name] for name in FIELD_NAMES}, fields))
    changed = {
        name: value
        for name, value in stored.items()
        if _comparable(old[name]) != _comparable(value)
    }
    if changed:
        change.update(row, changed)
    return row


def end(change: Change, window_id: int) -> MaintenanceWindow:
    """End window ``window_id``'s open occurrence now (later occurrences of a recurring window
    still run); :class:`Conflict` if none is open."""
    row = change.found(MaintenanceWindow, window_id, "maintenance window")
    try:
        mw.end_now(change, row)
    except mw.WindowError as exc:
        raise Conflict(str(exc)) from None
    return row


def delete(change: Change, window_id: int) -> dict[str, Any]:
    """Delete window ``window_id`` (an open occurrence ends at once); its last values."""
    return change.delete(change.found(MaintenanceWindow, window_id, "maintenance window"))


def rescheduled(runtime: Runtime, window_id: int, schedule: mw.Schedule | None) -> None:
    """After a committed change of window ``window_id`` (``schedule`` its new one; None: deleted),
    move the end of its counted occurrence; Redis being down is logged, not raised."""
    mw.after_change(runtime.redis, 2 * runtime.settings.ledger_reconcile_after, window_id, schedule)
