"""Maintenance windows: alerts a window scopes are suppressed or downgraded while it is open.

When: :mod:`mutt_app.holdback.schedule` (one-off, or an RRULE in the window's time zone).

What: the scope is a conjunction of four lists, each empty list meaning "any" for that part: host
names or globs (``core-sw-*``, case-insensitive like DNS names), device teams (the team the event's
decision assigns), rule ids (the winning rule), trap-OID prefixes (a leading "." insignificant, as
in the rules). A window with all four empty would silence everything, so it is refused.

How: ``suppress`` holds the alert (audited with ``held_reason='maintenance'``, not forwarded);
``downgrade`` turns a Page_and_ticket alert into Ticket_only (audited as Ticket_only, forwarded in
the ticket lane). Only forwardable alerts are touched; where windows overlap, a suppressing window
wins over a downgrading one, then the lowest id.

Summary: each occurrence that held or downgraded anything is counted in Redis (one hash per window
id and occurrence start, the :class:`~mutt_app.holdback.closing.ClosingWindows` machinery of storms and
deduplication). When it ends, the flush_held beat job sends Moog one summary alert ("window 'core
upgrade': 412 alerts held, 9 hosts") if the window has ``summary_alert``, through the outbox and the
forward lanes. Its external_id is derived from the window id and occurrence start, so a flush run
twice, or a worker restarted, still delivers it once. A redelivered batch gets its first answer
again and counts nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from mutt_app import metrics
from mutt_app.db.models import WINDOW_ACTIONS, MaintenanceWindow
from mutt_app.forwarding.moog import maintenance_summary
from mutt_app.holdback.base import Candidate, Held, Publish, Verdicts, batch_digest
from mutt_app.holdback.schedule import (
    MAX_RRULE_CHARS,
    Occurrence,
    Schedule,
    Schedules,
    WindowError,
    schedule_of,
    zone,
)
from mutt_app.holdback.window_cache import CompiledWindow, WindowCache, compile_windows
from mutt_app.holdback.window_counts import MAX_HOSTS, MaintenanceCounts, Windowed
from mutt_app.holdback.window_fields import (
    MAX_DURATION_MINUTES,
    MAX_NAME_CHARS,
    MAX_SCOPE_ITEMS,
    Scope,
    validate,
)
from mutt_app.names import MAINTENANCE
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

# The window API the REST API, the admin UI and the CLI use; the schedule's names among it.
__all__ = [
    "MAX_DURATION_MINUTES",
    "MAX_NAME_CHARS",
    "MAX_RRULE_CHARS",
    "MAX_SCOPE_ITEMS",
    "CompiledWindow",
    "Maintenance",
    "Occurrence",
    "Schedule",
    "Schedules",
    "Scope",
    "WindowError",
    "after_change",
    "apply",
    "compile_windows",
    "count_downgraded",
    "counts",
    "describe",
    "end_now",
    "flush",
    "reschedule",
    "schedule_of",
    "summary",
    "validate",
    "zone",
]

PREFIX = "mutt:maint"
SUPPRESS, DOWNGRADE = WINDOW_ACTIONS
PAGE = "Page_and_ticket"
TICKET = "Ticket_only"
# --- in classify -------------------------------------------------------------------------------


def counts(client: redis.Redis, remember_seconds: int) -> MaintenanceCounts:
    """The shared per-occurrence counts."""
    return MaintenanceCounts(client, PREFIX, remember_seconds)


class Maintenance:
    """The maintenance-window stage, first in the pipeline: a suppressed alert opens no dedup
    window and spends no budget, and a downgraded one goes on as the ticket it became."""

    name = MAINTENANCE
    watches_held: frozenset[str] = frozenset()
    events_only = False

    def hold(
        self,
        runtime: Runtime,
        snapshot: RuleSnapshot,
        candidates: Sequence[Candidate],
        held: Mapping[str, Held],
    ) -> Verdicts:
        """The open windows of ``snapshot`` applied to one batch (:func:`apply`)."""
        return apply(
            runtime.redis,
            2 * runtime.settings.ledger_reconcile_after,
            runtime.component(WindowCache.of).current(snapshot),
            candidates,
        )

    def flush(self, runtime: Runtime, publish: Publish) -> int:
        """Send the summaries of the ended occurrences (:func:`flush`)."""
        # Its counts are remembered as long as dedup's and the storm budgets' batch answers.
        return flush(runtime.redis, 2 * runtime.settings.ledger_reconcile_after, publish)


def apply(
    client: redis.Redis,
    remember_seconds: int,
    windows: Sequence[CompiledWindow],
    candidates: Sequence[Candidate],
    now: datetime | None = None,
) -> Verdicts:
    """The open windows applied to one batch of forwardable alerts: the suppressed ones held,
    the downgraded ones changed (Ticket_only).

    Only Page_and_ticket alerts can be downgraded. Redis (one script call, only when something
    matched) has the last word: an occurrence that has ended by Redis' clock applies to nothing,
    and a redelivered batch gets its first answers.
    """
    now = now or datetime.now(UTC)
    open_now = [(w, occ) for w in windows if (occ := w.schedule.occurrence_at(now)) is not None]
    metrics.MAINTENANCE_WINDOWS_OPEN.set(len(open_now))
    if not candidates or not open_now:
        return Verdicts()
    matched: list[tuple[Candidate, CompiledWindow, Occurrence]] = []
    for candidate in candidates:
        for window, occurrence in open_now:
            if window.action == DOWNGRADE and candidate.handling != PAGE:
                continue
            if window.scope.matches(
                candidate.hostname, candidate.team, candidate.rule_id, candidate.trap_oid
            ):
                matched.append((candidate, window, occurrence))
                break
    if not matched:
        return Verdicts()
    answers = counts(client, remember_seconds).observe(
        batch_digest(candidates),
        [
            Windowed(
                key=f"{window.id}:{int(occurrence.start.timestamp() * 1000)}",
                closes_ms=int(occurrence.end.timestamp() * 1000),
                correlation_id=candidate.id,
                host=candidate.hostname.lower(),
                action=window.action,
                label=_label(window, occurrence, candidate.team),
            )
            for candidate, window, occurrence in matched
        ],
    )
    verdicts = Verdicts()
    for (candidate, _, _), answer in zip(matched, answers, strict=True):
        if answer == SUPPRESS:
            verdicts.held[candidate.id] = Held(MAINTENANCE)
        elif answer == DOWNGRADE:
            verdicts.changed[candidate.id] = candidate.with_handling(TICKET)
    if verdicts.held or verdicts.changed:
        log.info(
            "maintenance windows: %d alerts suppressed, %d downgraded to Ticket_only",
            len(verdicts.held),
            len(verdicts.changed),
        )
    return verdicts


def count_downgraded(downgraded: Iterable[str], audited: set[str]) -> None:
    """Count downgrades in ``mutt_maintenance_downgraded_total``, once each: only those audited
    just now (a redelivered batch counts nothing twice)."""
    n = sum(1 for correlation_id in downgraded if correlation_id in audited)
    if n:
        metrics.MAINTENANCE_DOWNGRADED.inc(n)


def _label(window: CompiledWindow, occurrence: Occurrence, team: str | None) -> bytes:
    return orjson.dumps(
        {
            "window_id": window.id,
            "name": window.name,
            "action": window.action,
            "summary": window.summary_alert,
            "start": occurrence.start.isoformat(),
            "end": occurrence.end.isoformat(),
            "team": team,
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
        other=int(data.get("other", 0)),
        start=label["start"],
        end=label["end"],
        team=label["team"],
    )


def flush(client: redis.Redis, remember_seconds: int, publish: Publish) -> int:
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
        other = alert["custom_info"]["maintenance_uncounted_host_alerts"]
        if other:
            metrics.HELD_WINDOW_OVERFLOW.labels("maintenance").inc(other)
            log.warning(
                "maintenance window %s: %d alerts of hosts past the %d counted (MAX_HOSTS)",
                alert["custom_info"]["maintenance_window_id"],
                other,
                MAX_HOSTS,
            )
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


def describe(
    row: MaintenanceWindow,
    now: datetime,
    upcoming: int = 3,
    schedules: Callable[[MaintenanceWindow], Schedule] = schedule_of,
) -> dict[str, Any]:
    """A stored window with what it means now: ``active``, the open ``occurrence`` (or None) and
    the next ``upcoming`` occurrences (the open one first); ``error`` when its schedule cannot
    be read or its walk stopped (:class:`~mutt_app.holdback.schedule.ScheduleStalled`).
    ``schedules`` gives a row's schedule (a kept one: :class:`Schedules`)."""
    body = row.as_dict()
    try:
        schedule = schedules(row)
    except WindowError as exc:  # a time zone the system's database lost since
        return {
            **body,
            "active": False,
            "occurrence": None,
            "next_occurrences": [],
            "error": str(exc),
        }
    current = schedule.occurrence_at(now)
    described = {
        **body,
        "active": current is not None,
        "occurrence": None if current is None else _occurrence_dict(current),
        "next_occurrences": [_occurrence_dict(o) for o in schedule.occurrences(now, upcoming)],
    }
    if schedule.stalled is not None:
        described["error"] = schedule.stalled
    return described


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
