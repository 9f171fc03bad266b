"""When a maintenance window runs: its schedule, one-off or an RFC 5545 RRULE in its time zone.

A one-off window runs from ``starts_at`` to ``ends_at``; a recurring one runs for
``duration_minutes`` from each occurrence of an RRULE (python-dateutil's ``rrulestr``), whose
DTSTART is ``starts_at`` seen in the window's IANA ``timezone`` (zoneinfo). The rule recurs in
wall-clock time; an occurrence in a spring-forward gap is moved forward by the gap, one that
happens twice (fall back) is the first of the two; recurrence is at most hourly. "End now" sets
``ended_at``: the occurrence running then ends at once. :mod:`mutt_app.holdback.windows` says what a
window does while open.

Bounded walks. dateutil searches for a rule's next date period by period until the year 9999, and
with an INTERVAL its BY parts may allow dates no period ever reaches (``FREQ=DAILY;INTERVAL=7;
BYDAY=TU`` from a Monday: every seventh day is a Monday): seconds of CPU at each look. So a rule
with an INTERVAL is walked as the same rule every period (whose dates are dense: the check below
proves it has some) with only the dates in every INTERVAL-th period kept, and at most
:data:`MAX_SKIPPED_DATES` dates skipped in a row: past that the walk stops
(:class:`ScheduleStalled`, a log line, ``mutt_schedule_walks_stopped_total``). Every walk is also
bounded in time: finding a rule's next date (from ``starts_at`` to now, the first time) may take at
most :data:`MAX_WALK_SECONDS`, after which the walk stops the same way. A new window's rule must
reach its first date, and now, within both bounds, or it is refused (422 naming why); a stored
window whose walk stopped has no more occurrences in that process until it is edited, and the API
lists it with its ``error``. Listing windows is cheap: a schedule keeps its next occurrences until
the first of them ends (:meth:`Schedule.occurrences`), and :class:`Schedules` keeps each window's
schedule per version.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil import rrule as rr
from dateutil.tz import resolve_imaginary

from mutt_app import metrics
from mutt_app.db.models import MaintenanceWindow

log = logging.getLogger(__name__)

MAX_RRULE_CHARS = 500
MAX_SKIPPED_DATES = 5_000
"""Dates of a rule with an INTERVAL skipped in a row (in periods the interval passes over) before a
walk stops: about 96 years of a weekly date, far more than any rule that occurs needs."""
MAX_WALK_SECONDS = 2.0
"""Wall-clock time one step of a walk (finding the next date) may take. Walks run in classify
batches and API requests: a rule must not stall either. Far longer than a rule that occurs needs,
even an hourly one started decades back; a starts_at that far back is refused on create and edit
(move it closer: the occurrences are the same)."""
_TOO_FREQUENT = (rr.MINUTELY, rr.SECONDLY)


class WindowError(ValueError):
    """Why some fields do not make a maintenance window (the message names the field)."""


class ScheduleStalled(WindowError):
    """A rule's walk skipped :data:`MAX_SKIPPED_DATES` dates in a row without an occurrence."""


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


def _period(rule: rr.rrule, moment: datetime) -> int:
    """The index of the period (of the rule's FREQ, counted from DTSTART's) holding ``moment``, in
    wall-clock time as dateutil steps: years, months, weeks from WKST, days or hours."""
    start, at = rule._dtstart.replace(tzinfo=None), moment.replace(tzinfo=None)
    freq = rule._freq  # dateutil's attributes
    if freq == rr.YEARLY:
        return at.year - start.year
    if freq == rr.MONTHLY:
        return (at.year - start.year) * 12 + at.month - start.month
    if freq == rr.WEEKLY:
        wkst = rule._wkst

        def week(day: datetime) -> datetime:
            return day - timedelta(days=(day.weekday() - wkst) % 7)

        return (week(at).date() - week(start).date()).days // 7
    days = (at.date() - start.date()).days
    return days if freq == rr.DAILY else days * 24 + at.hour - start.hour


def _stopped(rule: rr.rrule, moment: datetime, why: str, message: str) -> ScheduleStalled:
    """Count and log a walk that stopped at ``moment``; the error to raise."""
    metrics.SCHEDULE_WALKS_STOPPED.inc()
    log.warning(
        "schedule walk stopped: rrule %s %s (up to %s)",
        str(rule).replace("\n", " "),
        why,
        moment.isoformat(),
    )
    return ScheduleStalled(message)


def walk(rule: rr.rrule, after: datetime | None = None) -> Iterator[datetime]:
    """The rule's dates later than ``after`` (all of them if None), in order; a rule with an
    INTERVAL walked within :data:`MAX_SKIPPED_DATES`, and each step within
    :data:`MAX_WALK_SECONDS` (module docstring), else :class:`ScheduleStalled`.

    The step's clock starts again each time the caller resumes the walk: a walk kept between
    classify batches (:meth:`Schedule.occurrence_at`) is charged only for the time it walks."""
    interval, count = rule._interval, rule._count
    every = rule if interval == 1 else rule.replace(interval=1, count=None)
    skipped = kept = 0
    deadline = time.monotonic() + MAX_WALK_SECONDS
    for moment in every:
        if time.monotonic() > deadline:
            raise _stopped(
                rule,
                moment,
                f"took longer than {MAX_WALK_SECONDS:g} s",
                f"rrule: walking its dates took longer than {MAX_WALK_SECONDS:g} s"
                " (MAX_WALK_SECONDS): move starts_at closer to now",
            )
        if interval > 1 and _period(rule, moment) % interval:
            skipped += 1
            if skipped >= MAX_SKIPPED_DATES:
                raise _stopped(
                    rule,
                    moment,
                    f"skipped {skipped} dates in a row",
                    f"rrule: no occurrence within {MAX_SKIPPED_DATES} dates its BY parts allow:"
                    f" its INTERVAL={interval} passes over all of them",
                )
            continue
        skipped = 0
        kept += 1
        if after is None or moment > after:
            yield moment
            deadline = time.monotonic() + MAX_WALK_SECONDS
        if interval > 1 and count is not None and kept >= count:
            return


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
        self.starts_at = utc(starts_at)
        self.ended_at = None if ended_at is None else utc(ended_at)
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
            self.duration = utc(ends_at) - self.starts_at
            self.rule = None
        # (from, until, occurrence open then): occurrence_at's answer for a span of time.
        self._memo: tuple[datetime, datetime, Occurrence | None] | None = None
        # occurrence_at's walk: the last moment it was at, the occurrences still to come, and the
        # first of them not ended then.
        self._cursor: tuple[datetime, Iterator[Occurrence], Occurrence | None] | None = None
        self._lock = threading.Lock()
        # (asked at, how many, the answer): occurrences' answer, good until its first one ends.
        self._listed: tuple[datetime, int, list[Occurrence]] | None = None
        # Why its walk stopped (ScheduleStalled), once it has: then it has no more occurrences,
        # and no later look walks again.
        self.stalled: str | None = None

    def _starts(self, after: datetime) -> Iterator[datetime]:
        """Occurrence starts (UTC) later than ``after``, in order; none after a stalled walk."""
        if self.rule is None:
            if self.starts_at > after:
                yield self.starts_at
            return
        if self.stalled is not None:
            return
        try:
            for local in walk(self.rule, after):
                yield resolve_imaginary(local).astimezone(UTC)
        except ScheduleStalled as exc:
            self.stalled = str(exc)

    def first(self) -> Occurrence | None:
        """The first occurrence (at ``starts_at`` or after), or None if the rule has none;
        :class:`ScheduleStalled` if its walk finds none within its bound."""
        if self.rule is None:
            return Occurrence(self.starts_at, self.starts_at + self.duration)
        for local in walk(self.rule):
            start = resolve_imaginary(local).astimezone(UTC)
            return Occurrence(start, start + self.duration)
        return None

    def _not_ended(self, now: datetime) -> Iterator[Occurrence]:
        """The occurrences that have not ended by ``now``, in order (their ends never decrease)."""
        for start in self._starts(now - self.duration):
            end = start + self.duration
            if self.ended_at is not None and start <= self.ended_at < end:
                end = self.ended_at  # ended early by "end now"
            if end > now:
                yield Occurrence(start, end)

    def occurrences(self, now: datetime, count: int) -> list[Occurrence]:
        """The next ``count`` occurrences that have not ended by ``now`` (the open one first).

        The answer is kept until the first of them ends: until then no occurrence can join or
        leave the list (ends never decrease), so listing windows walks a rule once per
        occurrence, not once per request (a rule that started years ago walks from its start).
        """
        now = utc(now)
        listed = self._listed
        if (
            listed is not None
            and listed[1] == count
            and listed[0] <= now
            and (not listed[2] or now < listed[2][0].end)
        ):
            return list(listed[2])
        found = list(itertools.islice(self._not_ended(now), count))
        self._listed = (now, count, found)
        return list(found)

    def occurrence_at(self, now: datetime) -> Occurrence | None:
        """The occurrence open at ``now``, or None.

        Remembered until the next boundary (this one's end, or the next start), so a classify
        batch asks dateutil nothing between boundaries. At a boundary the walk goes on from where
        it stopped (time only moves on), instead of dateutil walking again from ``starts_at``: a
        window with years of hourly occurrences behind it costs that walk once per process.
        """
        now = utc(now)
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


class Schedules:
    """The schedules of stored windows, kept per window version (a Runtime component), so listing
    windows walks each rule once per change, not once per request, and a stalled walk is not
    walked again. At most :data:`MAX_KEPT` are kept (the oldest dropped first)."""

    MAX_KEPT = 1000

    def __init__(self) -> None:
        self._kept: dict[tuple[Any, ...], Schedule] = {}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, runtime: object) -> Schedules:
        """The schedules of ``runtime`` (``runtime.component(Schedules.of)``)."""
        return cls()

    def of_row(self, row: MaintenanceWindow) -> Schedule:
        """The :class:`Schedule` of ``row`` as stored now (:func:`schedule_of`, kept)."""
        version = (
            row.id,
            row.starts_at,
            row.ends_at,
            row.rrule,
            row.duration_minutes,
            row.timezone,
            row.ended_at,
        )
        with self._lock:
            found = self._kept.get(version)
        if found is None:
            found = schedule_of(row)
            with self._lock:
                self._kept[version] = found
                while len(self._kept) > self.MAX_KEPT:
                    del self._kept[next(iter(self._kept))]
        return found


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


def utc(value: datetime) -> datetime:
    # SQLite gives naive datetimes back; every stored time is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
