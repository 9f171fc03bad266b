"""Commands on heartbeats ("host X, or a glob, or a device team, must send an event every N
minutes"): create, update, delete.

A heartbeat names exactly one of ``host`` (a host name, or a glob such as ``db-*``) and ``team`` (a
device team); an update is checked on the merged result. Names, hosts and teams are stripped of
surrounding blanks, as ingest strips a hostname. The check runs in beat and reads the table afresh,
so a change applies from its next run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mutt_app.commands.changes import Change
from mutt_app.commands.errors import Invalid
from mutt_app.db.models import Heartbeat

DEFAULTS: dict[str, Any] = {
    "host": None,
    "team": None,
    "handling": "Ticket_only",
    "team_assignment": None,
    "is_active": True,
    "description": None,
}
"""A new heartbeat's values for the optional fields it leaves out."""
ONE_TARGET = "a heartbeat watches a host (or glob) or a team: give exactly one of host and team"


def stripped(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with surrounding blanks stripped; :class:`Invalid` if a text field is blank."""
    out = dict(fields)
    for name in ("name", "host", "team", "team_assignment"):
        value = out.get(name)
        if isinstance(value, str):
            out[name] = value.strip()
            if not out[name]:
                raise Invalid(f"{name} must not be blank", {"fields": {name: "blank"}})
    return out


def check_target(fields: Mapping[str, Any]) -> None:
    """:class:`Invalid` unless exactly one of host and team is set in ``fields`` (a whole
    heartbeat)."""
    if (fields.get("host") is None) == (fields.get("team") is None):
        raise Invalid(
            ONE_TARGET, {"fields": {"host": fields.get("host"), "team": fields.get("team")}}
        )


def new_heartbeat(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A new heartbeat's fields: ``fields`` over the defaults, stripped and checked."""
    checked = stripped({**DEFAULTS, **fields})
    check_target(checked)
    return checked


def create(change: Change, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Add the heartbeat ``fields`` (from :func:`new_heartbeat`); its stored values."""
    return change.create(Heartbeat(**fields))


def update(change: Change, heartbeat_id: int, fields: Mapping[str, Any]) -> Heartbeat:
    """Lay the (stripped) ``fields`` over heartbeat ``heartbeat_id`` (locked); the merged heartbeat
    must name a host or a team. Only the fields whose value differs are written."""
    row = change.found(Heartbeat, heartbeat_id, "heartbeat")
    old = row.as_dict()
    check_target({"host": old["host"], "team": old["team"], **fields})
    changed = {name: value for name, value in fields.items() if old[name] != value}
    if changed:
        change.update(row, changed)
    return row


def delete(change: Change, heartbeat_id: int) -> dict[str, Any]:
    """Delete heartbeat ``heartbeat_id``; the next check clears its open alerts."""
    return change.delete(change.found(Heartbeat, heartbeat_id, "heartbeat"))
