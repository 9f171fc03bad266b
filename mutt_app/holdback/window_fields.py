"""What a maintenance window covers, and the checks its fields pass before it is stored.

The scope is a conjunction of four lists, each empty list meaning "any" for that part: host names
or globs (case-insensitive like DNS names), device teams, rule ids, trap-OID prefixes (a leading
"." insignificant). A window with all four empty would silence everything, so it is refused.
:func:`validate` turns the fields the REST API, the admin UI and the CLI take into stored columns.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mutt_app.db.models import WINDOW_ACTIONS
from mutt_app.holdback.schedule import Schedule, WindowError, utc, zone

MAX_DURATION_MINUTES = 31 * 24 * 60
MAX_NAME_CHARS = 200
MAX_SCOPE_ITEMS = 500
# Times outside these years are mistakes, and near datetime's limits arithmetic overflows.
_EARLIEST, _LATEST = 1970, 9000


# --- what ----------------------------------------------------------------------------------------


def _oid(value: str) -> str:
    return value.lstrip(".")


@dataclass(frozen=True)
class Scope:
    """The alerts a window applies to: each non-empty part must match (empty: any)."""

    hosts: tuple[str, ...] = ()
    teams: frozenset[str] = frozenset()
    rule_ids: frozenset[int] = frozenset()
    oid_prefixes: tuple[str, ...] = ()
    _hosts: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        hosts: Iterable[str] = (),
        teams: Iterable[str] = (),
        rule_ids: Iterable[int] = (),
        oid_prefixes: Iterable[str] = (),
    ) -> Scope:
        """A scope from the stored lists (host globs compiled once, into one pattern)."""
        globs = tuple(h.lower() for h in hosts)
        pattern = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None
        return cls(
            globs,
            frozenset(teams),
            frozenset(rule_ids),
            tuple(_oid(p) for p in oid_prefixes),
            pattern,
        )

    @property
    def empty(self) -> bool:
        """True when no part restricts anything (such a window is refused)."""
        return not (self.hosts or self.teams or self.rule_ids or self.oid_prefixes)

    def matches(
        self, hostname: str, team: str | None, rule_id: int | None, trap_oid: str | None
    ) -> bool:
        """Whether an alert from ``hostname``, for ``team``, of ``rule_id`` is in scope."""
        if self.empty:
            return False
        if self._hosts is not None and not self._hosts.match(hostname.lower()):
            return False
        if self.teams and team not in self.teams:
            return False
        if self.rule_ids and rule_id not in self.rule_ids:
            return False
        if self.oid_prefixes:
            oid = _oid(trap_oid or "")
            if not oid or not any(oid.startswith(p) for p in self.oid_prefixes):
                return False
        return True


# --- validation ----------------------------------------------------------------------------------


def validate(fields: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The stored columns for a window's fields (API names), or :class:`WindowError`.

    ``duration_minutes`` of a one-off window becomes its ``ends_at``; a recurring window keeps it.
    Checks: a name; start and end (ends_at after starts_at, at most 31 days); the RRULE and time
    zone (dateutil's and zoneinfo's messages), and that the rule occurs with its real INTERVAL
    within the walk's bound (:mod:`mutt_app.holdback.schedule`); a scope that restricts something; the action.
    """
    name = (fields.get("name") or "").strip()
    if not name:
        raise WindowError("name: a window needs a name")
    starts_at = fields.get("starts_at")
    if not isinstance(starts_at, datetime):
        raise WindowError("starts_at: required (RFC 3339 with an offset)")
    ends_at, duration = fields.get("ends_at"), fields.get("duration_minutes")
    for label, moment in (("starts_at", starts_at), ("ends_at", ends_at)):
        if isinstance(moment, datetime) and not _EARLIEST <= utc(moment).year <= _LATEST:
            raise WindowError(f"{label}: a year from {_EARLIEST} to {_LATEST}")
    rrule_text = fields.get("rrule") or None
    timezone = fields.get("timezone") or "UTC"
    zone(timezone)
    if duration is not None and not 1 <= duration <= MAX_DURATION_MINUTES:
        raise WindowError(f"duration_minutes: between 1 and {MAX_DURATION_MINUTES}")
    if rrule_text:
        if ends_at is not None:
            raise WindowError("ends_at: a recurring window has duration_minutes, not ends_at")
        if duration is None:
            raise WindowError("duration_minutes: a recurring window needs a duration")
    else:
        if ends_at is not None and duration is not None:
            raise WindowError("give ends_at or duration_minutes, not both")
        if ends_at is None and duration is None:
            raise WindowError("ends_at: a one-off window needs ends_at or duration_minutes")
        if ends_at is None:
            ends_at = starts_at + timedelta(minutes=duration)
            duration = None
        if not isinstance(ends_at, datetime):
            raise WindowError("ends_at: RFC 3339 with an offset")
        if ends_at <= starts_at:
            raise WindowError("ends_at: must be after starts_at")
        if ends_at - starts_at > timedelta(minutes=MAX_DURATION_MINUTES):
            raise WindowError(f"ends_at: a window lasts at most {MAX_DURATION_MINUTES} minutes")
    action = fields.get("action")
    if action not in WINDOW_ACTIONS:
        raise WindowError(f"action: one of {', '.join(WINDOW_ACTIONS)}")
    scope = {
        "hosts": _strings(fields.get("hosts"), "hosts", strip=True),
        "teams": _strings(fields.get("teams"), "teams", strip=True),
        "rule_ids": _ints(fields.get("rule_ids")),
        "oid_prefixes": [_oid(p) for p in _strings(fields.get("oid_prefixes"), "oid_prefixes")],
    }
    if Scope.of(**scope).empty:
        raise WindowError(
            "scope: a window needs at least one of hosts, teams, rule_ids or oid_prefixes"
            ' (a window over everything is refused; hosts ["*"] says so explicitly)'
        )
    stored = {
        "name": name,
        "starts_at": utc(starts_at),
        "ends_at": None if ends_at is None else utc(ends_at),
        "rrule": rrule_text,
        "duration_minutes": duration,
        "timezone": timezone,
        "action": action,
        "summary_alert": bool(fields.get("summary_alert", True)),
        **scope,
    }
    schedule = Schedule(
        stored["starts_at"],
        ends_at=stored["ends_at"],
        rrule=rrule_text,
        duration_minutes=duration,
        timezone=timezone,
    )
    # The rule with its real INTERVAL, walked within its bound (ScheduleStalled names why).
    if schedule.first() is None:
        raise WindowError(
            "rrule: never occurs: no date from starts_at on, with its INTERVAL, UNTIL and COUNT"
        )
    schedule.occurrences(now or datetime.now(UTC), 1)  # an RRULE dateutil reads but cannot iterate
    if schedule.stalled is not None:  # its walk from starts_at to now stopped at a bound
        raise WindowError(schedule.stalled)
    return stored


def _strings(value: Any, name: str, *, strip: bool = False) -> list[str]:
    items = list(value or [])
    if len(items) > MAX_SCOPE_ITEMS:
        raise WindowError(f"{name}: at most {MAX_SCOPE_ITEMS} items")
    out = []
    for item in items:
        if not isinstance(item, str) or not item.strip() or "\x00" in item:
            raise WindowError(f"{name}: every item must be a non-empty string")
        out.append(item.strip() if strip else item)
    return sorted(set(out), key=out.index)


def _ints(value: Any) -> list[int]:
    items = list(value or [])
    if len(items) > MAX_SCOPE_ITEMS:
        raise WindowError(f"rule_ids: at most {MAX_SCOPE_ITEMS} items")
    if any(type(i) is not int or not 1 <= i < 2**31 for i in items):
        raise WindowError("rule_ids: every item must be a rule id (a positive integer)")
    return sorted(set(items))
