"""Commands on development hosts: mark a host as development, make it production again.

Hostnames are stripped of surrounding blanks, as ingest strips an event's hostname; otherwise they
are matched exactly, as the rule engine matches them. A duplicate hostname is refused by the
table's UNIQUE constraint (an ``IntegrityError`` the edge answers), so that two concurrent changes
cannot both succeed.
"""

from __future__ import annotations

from typing import Any

from mutt_app.commands.changes import Change
from mutt_app.commands.errors import Invalid, NotFound
from mutt_app.db.models import DevelopmentHost


def hostname(value: str) -> str:
    """``value`` stripped; :class:`Invalid` if that leaves nothing."""
    stripped = value.strip()
    if not stripped:
        raise Invalid("hostname must not be blank", {"fields": {"hostname": "blank"}})
    return stripped


def add(change: Change, host: str, description: str | None) -> dict[str, Any]:
    """Mark ``host`` as development (its events get the rules' dev_handling); its stored values."""
    return change.create(DevelopmentHost(hostname=hostname(host), description=description))


def remove(change: Change, host: str) -> dict[str, Any]:
    """Make ``host`` production again; its last values. :class:`NotFound` if it is not development."""
    row = change.locked(DevelopmentHost, hostname=host)
    if row is None:
        raise NotFound(f"no development host {host!r}")
    return change.delete(row)
