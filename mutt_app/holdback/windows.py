"""Maintenance windows: alerts a window scopes are suppressed or downgraded while it is open.

When: a one-off window runs from ``starts_at`` to ``ends_at``; a recurring one runs for
``duration_minutes`` from each occurrence of an RFC 5545 RRULE (python-dateutil's ``rrulestr``),
whose DTSTART is ``starts_at`` seen in the window's IANA ``timezone`` (zoneinfo). The rule recurs
in wall-clock time: "FREQ=WEEKLY;BYDAY=SU;BYHOUR=2" is 02:00 in that zone on every Sunday, winter
and summer alike; an occurrence that falls in a spring-forward gap (02:30 that does not exist) is
moved forward by the gap (dateutil's ``resolve_imaginary``), and one that happens twice (fall back)
is the first of the two. Recurrence is at most hourly (MINUTELY
and SECONDLY are refused: a window that opens every minute is not maintenance). "End now" sets
``ended_at``: the occurrence running then ends at once; later occurrences still run.

What: the scope is a conjunction of four lists, each empty list meaning "any" for that part: host
names or globs (``core-sw-*``, case-insensitive like DNS names), device teams (the team the event's
decision assigns), rule ids (the winning rule), trap-OID prefixes (a leading "." insignificant, as
in the rules). A window with all four empty would silence everything, so it is refused.

How: ``suppress`` holds the alert (audited with ``held_reason='maintenance'``, not forwarded);
``downgrade`` turns a Page_and_ticket alert into Ticket_only (audited as Ticket_only, forwarded in
the ticket lane). Only forwardable alerts are touched; where windows overlap, a suppressing window
wins over a downgrading one, then the lowest id.

Summary: each occurrence that held or downgraded anything is counted in Redis (one hash per window
id and occurrence start, the :class:`~mutt_app.holdback.scripts.ClosingWindows` machinery of storms and
deduplication). When it ends, the flush_held beat job sends Moog one summary alert ("window 'core
upgrade': 412 alerts held, 9 hosts") if the window has ``summary_alert``, through the outbox and the
forward lanes. Its external_id is derived from the window id and occurrence start, so a flush run
twice, or a worker restarted, still delivers it once. A redelivered batch gets its first answer
again and counts nothing twice.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import redis
from dateutil import rrule as rr
from dateutil.tz import resolve_imaginary

from mutt_app import metrics
from mutt_app.db.models import WINDOW_ACTIONS, MaintenanceWindow
from mutt_app.events.schema import Event
from mutt_app.forwarding.moog import maintenance_summary
from mutt_app.holdback.dedup import Held, batch_digest
from mutt_app.holdback.scripts import MaintenanceCounts, Windowed
from mutt_app.names import MAINTENANCE
from mutt_app.rules.engine import Decision

log = logging.getLogger(__name__)

PREFIX = "mutt:maint"
SUPPRESS, DOWNGRADE = WINDOW_ACTIONS
PAGE = "Page_and_ticket"
TICKET = "Ticket_only"
MAX_DURATION_MINUTES = 31 * 24 * 60
MAX_NAME_CHARS = 200
MAX_SCOPE_ITEMS = 500
MAX_RRULE_CHARS = 500
_TOO_FREQUENT = (rr.MINUTELY, rr.SECONDLY)
# Times outside these years are mistakes, and near datetime's limits arithmetic overflows.
_EARLIEST, _LATEST = 1970, 9000


class WindowError(ValueError):
    """Why some fields do not make a maintenance window (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One run of a window, in UTC: from ``start`` until (not including) ``end``."""

    start: datetime
    end: datetime


# --- when --------------------------------------------------------------------------------------


def parse_rrule(text: str, dtstart: datetime) -> rr.rrule:
    """The dateutil rule of ``text`` (``FREQ=...`` with or without ``RRULE:``) from ``dtstart``.

    Raises :class:`WindowError` with dateutil's own message for a rule it cannot read, and for
    what a window must not be: several rules or a DTSTART of its own (``starts_at`` is the start),
    or a recurrence more often than hourly.
    """
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if not body or "\n" in body or ":" in body:
        raise WindowError("rrule: one RRULE value (FREQ=...), without DTSTART or other lines")
    if len(body) > MAX_RRULE_CHARS:
        raise WindowError(f"rrule: at most {MAX_RRULE_CHARS} characters")
    try:
        rule = rr.rrulestr(body, dtstart=dtstart)
    except Exception as exc:  # dateutil's parser fails on garbage in many ways, all "invalid"
        raise WindowError(f"rrule: not a valid RFC 5545 RRULE: {exc}") from None
    if not isinstance(rule, rr.rrule):
        raise WindowError("rrule: one RRULE only")
    if rule._freq in _TOO_FREQUENT:  # dateutil keeps the frequency only there
        raise WindowError("rrule: a maintenance window recurs at most hourly (FREQ=HOURLY)")
    return rule


def _check_recurs(rule: rr.rrule, dtstart: datetime) -> None:
    """:class:`WindowError` for a rule whose BY parts allow no date at all
    (``BYMONTH=2;BYMONTHDAY=30``): dateutil would search for it until the year 9999, seconds of CPU
    at each look (an UNTIL does not stop that search, it is checked only on found dates).

    Probed as a yearly rule with the same BY parts (a fraction of a second in the worst case).
    BYSETPOS, which picks within each period, is kept to MONTHLY and YEARLY rules, where the
    yearly probe and the rule agree closely enough.
    """
    if rule._bysetpos and rule._freq not in (rr.MONTHLY, rr.YEARLY):  # dateutil's attributes
        raise WindowError("rrule: BYSETPOS only with FREQ=MONTHLY or FREQ=YEARLY")
    yearly = rule.replace(freq=rr.YEARLY, interval=1, count=None, until=None)
    if yearly.after(dtstart, inc=True) is None:
        raise WindowError("rrule: its BY parts allow no date at all")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; :class:`WindowError` for one zoneinfo does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"timezone: unknown IANA time zone {name!r}") from None


class Schedule:
    """When a window runs: its occurrences, and the one open at a given moment."""

    def __init__(
        self,
        starts_at: datetime,
        *,
        ends_at: datetime | None = None,
        rrule: str | None = None,
        duration_minutes: int | None = None,
        timezone: str = "UTC",
        ended_at: datetime | None = None,
    ) -> None:
        self.starts_at = _utc(starts_at)
        self.ended_at = None if ended_at is None else _utc(ended_at)
        if rrule:
            if duration_minutes is None:
                raise WindowError("duration_minutes: a recurring window needs a duration")
            self.duration = timedelta(minutes=duration_minutes)
            dtstart = self.starts_at.astimezone(zone(timezone))
            self.rule: rr.rrule | None = parse_rrule(rrule, dtstart)
            _check_recurs(self.rule, dtstart)
        else:
            if ends_at is None:
                raise WindowError("ends_at: a one-off window needs ends_at or duration_minutes")
            self.duration = _utc(ends_at) - self.starts_at
            self.rule = None
        # (from, until, occurrence open then): occurrence_at's answer for a span of time.
        self._memo: tuple[datetime, datetime, Occurrence | None] | None = None
        # occurrence_at's walk: the last moment it was at, the occurrences still to come, and the
        # first of them not ended then.
        self._cursor: tuple[datetime, Iterator[Occurrence], Occurrence | None] | None = None
        self._lock = threading.Lock()

    def _starts(self, after: datetime) -> Iterator[datetime]:
        """Occurrence starts (UTC) later than ``after``, in order."""
        if self.rule is None:
            if self.starts_at > after:
                yield self.starts_at
            return
        for local in self.rule.xafter(after, inc=False):
            yield resolve_imaginary(local).astimezone(UTC)

    def _not_ended(self, now: datetime) -> Iterator[Occurrence]:
        """The occurrences that have not ended by ``now``, in order (their ends never decrease)."""
        for start in self._starts(now - self.duration):
            end = start + self.duration
            if self.ended_at is not None and start <= self.ended_at < end:
                end = self.ended_at  # ended early by "end now"
            if end > now:
                yield Occurrence(start, end)

    def occurrences(self, now: datetime, count: int) -> list[Occurrence]:
        """The next ``count`` occurrences that have not ended by ``now`` (the open one first)."""
        return list(itertools.islice(self._not_ended(_utc(now)), count))

    def occurrence_at(self, now: datetime) -> Occurrence | None:
        """The occurrence open at ``now``, or None.

        Remembered until the next boundary (this one's end, or the next start), so a classify
        batch asks dateutil nothing between boundaries. At a boundary the walk goes on from where
        it stopped (time only moves on), instead of dateutil walking again from ``starts_at``: a
        window with years of hourly occurrences behind it costs that walk once per process.
        """
        now = _utc(now)
        memo = self._memo
        if memo is not None and memo[0] <= now < memo[1]:
            return memo[2]
        with self._lock:
            cursor = self._cursor
            if cursor is None or now < cursor[0]:  # the first look, or a clock that went back
                walk = self._not_ended(now)
                cursor = (now, walk, next(walk, None))
            _, walk, pending = cursor
            while pending is not None and pending.end <= now:
                pending = next(walk, None)
            self._cursor = (now, walk, pending)
            if pending is None:
                answer, until = None, datetime.max.replace(tzinfo=UTC)
            elif pending.start <= now:
                answer, until = pending, pending.end
            else:
                answer, until = None, pending.start
            self._memo = (now, until, answer)
        return answer


def schedule_of(row: MaintenanceWindow) -> Schedule:
    """The :class:`Schedule` of a stored window."""
    return Schedule(
        row.starts_at,
        ends_at=row.ends_at,
        rrule=row.rrule,
        duration_minutes=row.duration_minutes,
        timezone=row.timezone,
        ended_at=row.ended_at,
    )


def _utc(value: datetime) -> datetime:
    # SQLite gives naive datetimes back; every stored time is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    zone (dateutil's and zoneinfo's messages); a scope that restricts something; the action.
    """
    name = (fields.get("name") or "").strip()
    if not name:
        raise WindowError("name: a window needs a name")
    starts_at = fields.get("starts_at")
    if not isinstance(starts_at, datetime):
        raise WindowError("starts_at: required (RFC 3339 with an offset)")
    ends_at, duration = fields.get("ends_at"), fields.get("duration_minutes")
    for label, moment in (("starts_at", starts_at), ("ends_at", ends_at)):
        if isinstance(moment, datetime) and not _EARLIEST <= _utc(moment).year <= _LATEST:
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
        "starts_at": _utc(starts_at),
        "ends_at": None if ends_at is None else _utc(ends_at),
        "rrule": rrule_text,
        "duration_minutes": duration,
        "timezone": timezone,
        "action": action,
        "summary_alert": bool(fields.get("summary_alert", True)),
        **scope,
    }
    Schedule(
        stored["starts_at"],
        ends_at=stored["ends_at"],
        rrule=rrule_text,
        duration_minutes=duration,
        timezone=timezone,
    ).occurrences(now or datetime.now(UTC), 1)  # an RRULE dateutil reads but cannot iterate
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


# --- in classify -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledWindow:
    """A window as workers use it (part of the rules snapshot)."""

    id: int
    name: str
    action: str
    summary_alert: bool
    scope: Scope
    schedule: Schedule


def compile_windows(rows: Iterable[MaintenanceWindow]) -> tuple[CompiledWindow, ...]:
    """The stored windows, suppressing ones first, then by id; a window that no longer compiles
    (a time zone gone from the system's tz database) is logged and skipped."""
    compiled = []
    for row in rows:
        try:
            compiled.append(
                CompiledWindow(
                    row.id,
                    row.name,
                    row.action,
                    row.summary_alert,
                    Scope.of(row.hosts, row.teams, row.rule_ids, row.oid_prefixes),
                    schedule_of(row),
                )
            )
        except WindowError as exc:
            log.error("maintenance window %s skipped: %s", row.id, exc)
    return tuple(sorted(compiled, key=lambda w: (w.action != SUPPRESS, w.id)))


def counts(client: redis.Redis, remember_seconds: int) -> MaintenanceCounts:
    """The shared per-occurrence counts."""
    return MaintenanceCounts(client, PREFIX, remember_seconds)


def apply(
    client: redis.Redis,
    remember_seconds: int,
    windows: Sequence[CompiledWindow],
    decided: list[tuple[Event, Decision]],
    now: datetime | None = None,
) -> tuple[list[tuple[Event, Decision]], dict[str, Held]]:
    """The open windows applied to one batch: ``decided`` with downgraded decisions, and the
    suppressed events by correlation_id.

    Only forwardable alerts are in play, and only Page_and_ticket ones can be downgraded. Redis
    (one script call, only when something matched) has the last word: an occurrence that has
    ended by Redis' clock applies to nothing, and a redelivered batch gets its first answers.
    """
    now = now or datetime.now(UTC)
    open_now = [(w, occ) for w in windows if (occ := w.schedule.occurrence_at(now)) is not None]
    metrics.MAINTENANCE_WINDOWS_OPEN.set(len(open_now))
    if not decided:
        return decided, {}
    if not open_now:
        return decided, {}
    matched: list[tuple[int, CompiledWindow, Occurrence]] = []
    for index, (event, decision) in enumerate(decided):
        if not decision.forward:
            continue
        for window, occurrence in open_now:
            if window.action == DOWNGRADE and decision.handling != PAGE:
                continue
            if window.scope.matches(
                event.hostname, decision.team, decision.rule_id, event.trap_oid
            ):
                matched.append((index, window, occurrence))
                break
    if not matched:
        return decided, {}
    answers = counts(client, remember_seconds).observe(
        _digest(decided),
        [
            Windowed(
                key=f"{window.id}:{int(occurrence.start.timestamp() * 1000)}",
                closes_ms=int(occurrence.end.timestamp() * 1000),
                correlation_id=decided[index][0].correlation_id,
                host=decided[index][0].hostname.lower(),
                action=window.action,
                label=_label(window, occurrence, decided[index][1]),
            )
            for index, window, occurrence in matched
        ],
    )
    out = list(decided)
    held: dict[str, Held] = {}
    downgraded = 0
    for (index, _, _), answer in zip(matched, answers, strict=True):
        event, decision = decided[index]
        if answer == SUPPRESS:
            held[event.correlation_id] = Held(MAINTENANCE)
        elif answer == DOWNGRADE:
            out[index] = (event, replace(decision, handling=TICKET))
            downgraded += 1
    if held or downgraded:
        log.info(
            "maintenance windows: %d alerts suppressed, %d downgraded to Ticket_only",
            len(held),
            downgraded,
        )
    return out, held


def count_downgraded(
    before: Sequence[tuple[Event, Decision]],
    after: Sequence[tuple[Event, Decision]],
    audited: set[str],
) -> None:
    """Count downgrades in ``mutt_maintenance_downgraded_total``, once each: only those audited
    just now (a redelivered batch counts nothing twice)."""
    n = sum(
        1
        for (event, old), (_, new) in zip(before, after, strict=True)
        if old.handling != new.handling and event.correlation_id in audited
    )
    if n:
        metrics.MAINTENANCE_DOWNGRADED.inc(n)


def _digest(decided: Sequence[tuple[Event, Decision]]) -> str:
    return batch_digest([(event, decision, {}) for event, decision in decided])


def _label(window: CompiledWindow, occurrence: Occurrence, decision: Decision) -> bytes:
    return orjson.dumps(
        {
            "window_id": window.id,
            "name": window.name,
            "action": window.action,
            "summary": window.summary_alert,
            "start": occurrence.start.isoformat(),
            "end": occurrence.end.isoformat(),
            "team": decision.team,
        }
    )


# --- after an occurrence ends --------------------------------------------------------------------


def summary(occurrence_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """The summary alert of a closed occurrence (its Redis fields)."""
    label = orjson.loads(data["label"])
    hosts = sum(1 for name in data if name.startswith("h:"))
    return maintenance_summary(
        occurrence_id=occurrence_id,
        window_id=label["window_id"],
        name=label["name"],
        action=label["action"],
        count=int(data["count"]),
        hosts=hosts,
        start=label["start"],
        end=label["end"],
        team=label["team"],
    )


def flush(
    client: redis.Redis, remember_seconds: int, publish: Callable[[list[dict[str, Any]]], None]
) -> int:
    """Send one summary per ended occurrence that held something and whose window asks for one;
    returns how many. Occurrences of windows without ``summary_alert`` are just forgotten."""
    store = counts(client, remember_seconds)
    store.close_due()
    closed = store.pending()
    if not closed:
        return 0
    alerts = [
        summary(occurrence_id, data)
        for occurrence_id, data in closed
        if orjson.loads(data["label"])["summary"]
    ]
    if alerts:
        publish(alerts)
    store.forget([occurrence_id for occurrence_id, _ in closed])
    for alert in alerts:
        metrics.MAINTENANCE_SUMMARIES.inc()
        log.warning("maintenance summary sent: %s", alert["description"])
    return len(alerts)


def reschedule(
    client: redis.Redis, remember_seconds: int, window_id: int, schedule: Schedule | None
) -> int:
    """After a window changed (ended, edited, deleted), close its counted occurrences when they
    now end: at the edited end if the occurrence is still open, else at once. Returns how many.

    Called after the change committed; Redis being down then only delays the summary to the
    occurrence's original end.
    """
    now = datetime.now(UTC)
    current = None if schedule is None else schedule.occurrence_at(now)
    store = counts(client, remember_seconds)
    moved = 0
    for key, start_ms in store.occurrences_of(str(window_id)):
        if current is not None and int(current.start.timestamp() * 1000) == start_ms:
            closes = current.end
        else:
            closes = now
        moved += store.reschedule(key, int(closes.timestamp() * 1000))
    return moved


# --- changes (REST API, admin UI, CLI) -------------------------------------------------------------


def describe(row: MaintenanceWindow, now: datetime, upcoming: int = 3) -> dict[str, Any]:
    """A stored window with what it means now: ``active``, the open ``occurrence`` (or None) and
    the next ``upcoming`` occurrences (the open one first)."""
    body = row.as_dict()
    try:
        schedule = schedule_of(row)
    except WindowError as exc:  # a time zone the system's database lost since
        return {
            **body,
            "active": False,
            "occurrence": None,
            "next_occurrences": [],
            "error": str(exc),
        }
    current = schedule.occurrence_at(now)
    return {
        **body,
        "active": current is not None,
        "occurrence": None if current is None else _occurrence_dict(current),
        "next_occurrences": [_occurrence_dict(o) for o in schedule.occurrences(now, upcoming)],
    }


def _occurrence_dict(occurrence: Occurrence) -> dict[str, str]:
    return {"start": occurrence.start.isoformat(), "end": occurrence.end.isoformat()}


def end_now(change: Any, row: MaintenanceWindow, now: datetime | None = None) -> Occurrence:
    """End the occurrence of ``row`` open now, in ``change`` (an audited UPDATE of ``ended_at``);
    returns it as it was. :class:`WindowError` if none is open."""
    now = now or datetime.now(UTC)
    current = schedule_of(row).occurrence_at(now)
    if current is None:
        raise WindowError(f"window {row.name!r} is not open now")
    change.update(row, {"ended_at": now})
    log.warning("maintenance window %s (%r) ended early by %s", row.id, row.name, change.changed_by)
    return current


def after_change(
    client: redis.Redis | None, remember_seconds: int, window_id: int, schedule: Schedule | None
) -> None:
    """After a committed change of a window (``schedule`` its new one; None: deleted), move the
    end of its counted occurrence (:func:`reschedule`); Redis being down is logged, not raised."""
    if client is None:
        return
    try:
        reschedule(client, remember_seconds, window_id, schedule)
    except (redis.RedisError, OSError) as exc:
        log.warning(
            "maintenance window %s changed but its summary was not rescheduled: %s", window_id, exc
        )
