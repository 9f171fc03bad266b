"""Commands on device teams (host-to-team mappings that override a rule's team): add, change,
remove. Hostnames are checked as for development hosts (:func:`mutt_app.commands.hosts.hostname`).
"""

from __future__ import annotations

from typing import Any

from mutt_app.commands.changes import Change
from mutt_app.commands.errors import Invalid, NotFound
from mutt_app.commands.hosts import hostname
from mutt_app.db.models import DeviceTeam


def team(value: str) -> str:
    """``value`` unless it is blank (:class:`Invalid`)."""
    if not value.strip():
        raise Invalid("team_assignment must not be blank", {"fields": {"team_assignment": "blank"}})
    return value


def add(change: Change, host: str, team_assignment: str) -> dict[str, Any]:
    """Map ``host`` to ``team_assignment``; its stored values."""
    return change.create(DeviceTeam(hostname=hostname(host), team_assignment=team(team_assignment)))


def mapping(change: Change, host: str) -> DeviceTeam:
    """The mapping of ``host``, locked; :class:`NotFound` if it has none."""
    row = change.locked(DeviceTeam, hostname=host)
    if row is None:
        raise NotFound(f"no team mapping for host {host!r}")
    return row


def set_team(change: Change, host: str, team_assignment: str) -> DeviceTeam:
    """Map ``host`` to another team (the same team: no change, no audit row)."""
    row = mapping(change, host)
    if row.team_assignment != team(team_assignment):
        change.update(row, {"team_assignment": team_assignment})
    return row


def remove(change: Change, host: str) -> dict[str, Any]:
    """Remove the mapping of ``host`` (its events get their rule's team again); its last values."""
    return change.delete(mapping(change, host))
