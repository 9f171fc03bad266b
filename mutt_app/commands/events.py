"""One event's whole story, read from where MUTT keeps each piece: "why did this not page me?".

:func:`story` answers it for one correlation_id, for the REST API (``GET /events/<id>``) and the
admin UI's event page alike:

- **what arrived**: the event's audit row (``event_audit_log``: host, message, times, raw);
- **who decided**: the rule that matched (as it is now; ``changed_since`` says when it was edited
  after the event) and the rules version the decision was made under;
- **why it was or was not sent**: the row's ``held_reason`` (models.NOT_FORWARDED_REASONS), said in
  words, with what MUTT still knows of it: the alert a duplicate repeats, the maintenance window
  that covered the event, the storm budgets it counted in, the flapping pair, the shedding mode;
- **each delivery attempt** with Moog's answer (the Redis history of
  :mod:`mutt_app.forwarding.history`, kept MOOG_DELIVERY_HISTORY_SECONDS);
- **the dead letter** and the poison item, if any (the database tables of
  :mod:`mutt_app.forwarding.deadletters`);
- **the trace id** of the classify task that audited it, when tracing was on (``trace_id``).

The audit row says *that* an event was held and why, not which window or budget was full: those
lived in Redis counters that close and go. The story names what fits the row: the windows whose
occurrence covered the event's classification and whose scope takes it, and the budgets (with
their sizes now) its device and rule counted in. Everything here is read only.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.commands.errors import NotFound
from mutt_app.db.models import (
    AlertRule,
    DeadLetter,
    EventAuditLog,
    MaintenanceWindow,
    PoisonLetter,
)
from mutt_app.dynamic_config import DynamicConfig
from mutt_app.forwarding import history as delivery_history
from mutt_app.holdback.schedule import WindowError, schedule_of
from mutt_app.holdback.window_fields import Scope
from mutt_app.names import DUPLICATE, FLAPPING, MAINTENANCE, PAGE_HANDLING, SHED, STORM_BUDGET

log = logging.getLogger(__name__)

MAX_WINDOWS = 1000
"""Maintenance windows looked at for a held event (the table holds tens; a bound all the same)."""

EXPLANATIONS = {
    None: "Forwarded: its rule's handling forwards and no hold-back stage held it, so it went"
    " to the forward queue; its deliveries say whether Moog took it.",
    DUPLICATE: "Held as a duplicate: a repeat of an alert already forwarded within its dedup"
    " window. It is counted; Moog gets one update with the count when the window closes.",
    STORM_BUDGET: "Held by a storm budget: its device or its rule had already sent its budget of"
    " alerts in this lane for the storm window. Moog gets one summary when the window closes.",
    FLAPPING: "Held as flapping: its rule and its clear rule changed state too often on this"
    " host. Moog gets one 'flapping' alert, and one 'flapping ended' when it calms down.",
    MAINTENANCE: "Suppressed by a maintenance window open when it was classified.",
    SHED: "Shed: the ticket lane was over alerter_queue_shed_threshold, so this Ticket_only"
    " alert went to the dead-letter queue (or was delayed) instead of the queue.",
    "unmatched": "No rule matched: logged only, never meant for Moog.",
    "dev_handling": "From a development host: its rule's dev handling does not forward.",
    "email_only": "Its rule's handling is Email_only: not for Moog.",
    "log_only": "Its rule's handling is Log_only: not for Moog.",
}
"""What each ``held_reason`` means, in words (None: the event was forwarded)."""


def event_id(text: str) -> uuid.UUID | None:
    """``text`` as a correlation_id (a UUID), or None when it is not one."""
    try:
        return uuid.UUID(text.strip())
    except (ValueError, AttributeError):
        return None


def story(
    session: Session, client: redis.Redis, config: DynamicConfig, correlation_id: uuid.UUID
) -> dict[str, Any]:
    """Everything MUTT knows of event ``correlation_id``, as one JSON-friendly dict.

    Keys: ``correlation_id``, ``event`` (the audit row, None if it was never audited),
    ``decision``, ``outcome``, ``deliveries`` (``{"unavailable": true}`` when Redis cannot be
    read), ``dead_letters`` (dead letters and poison items, each with its ``store``), and
    ``trace_id``. :class:`NotFound` when no audit row, dead letter or delivery names the id.
    """
    row = session.scalars(
        select(EventAuditLog)
        .where(EventAuditLog.correlation_id == correlation_id)
        .order_by(EventAuditLog.event_timestamp, EventAuditLog.id)
        .limit(1)
    ).first()
    letters = _letters(session, correlation_id)
    deliveries = _deliveries(client, str(correlation_id))
    if (
        row is None
        and not letters
        and not deliveries.get("attempts")
        and not deliveries.get("sent")
    ):
        raise NotFound(f"MUTT has no trace of event {correlation_id}")
    rule = session.get(AlertRule, row.matched_rule_id) if row and row.matched_rule_id else None
    return {
        "correlation_id": str(correlation_id),
        "event": _event(row) if row is not None else None,
        "decision": _decision(row, rule) if row is not None else None,
        "outcome": _outcome(session, config, row, rule) if row is not None else None,
        "deliveries": deliveries,
        "dead_letters": letters,
        "trace_id": row.trace_id if row is not None else None,
    }


def _event(row: EventAuditLog) -> dict[str, Any]:
    return {
        "event_timestamp": row.event_timestamp,
        "received_at": row.received_at,
        "audited_at": row.audited_at,
        "hostname": row.hostname,
        "message": row.message,
        "source": row.source,
        "syslog_severity": row.syslog_severity,
        "trap_oid": row.trap_oid,
        "raw": row.raw,
    }


def _decision(row: EventAuditLog, rule: AlertRule | None) -> dict[str, Any]:
    described = None
    if rule is not None:
        described = {
            "id": rule.id,
            "match_type": rule.match_type,
            "match_string": rule.match_string,
            "trap_oid": rule.trap_oid,
            "syslog_severity": rule.syslog_severity,
            "priority": rule.priority,
            "prod_handling": rule.prod_handling,
            "dev_handling": rule.dev_handling,
            "team_assignment": rule.team_assignment,
            "is_active": rule.is_active,
            "updated_at": rule.updated_at,
            # The rule as it is now: it may say something else than when it decided.
            "changed_since": _utc(rule.updated_at) > _utc(row.audited_at),
        }
    return {
        "rule_id": row.matched_rule_id,
        "rule": described,
        "rules_version": row.rules_version,
        "handling": row.handling_decision,
        "team": row.team_assignment,
        "is_dev": row.is_dev,
    }


def _outcome(
    session: Session, config: DynamicConfig, row: EventAuditLog, rule: AlertRule | None
) -> dict[str, Any]:
    reason = row.held_reason
    outcome: dict[str, Any] = {
        "forwarded": row.forwarded_to_moog,
        "held_reason": reason,
        "explanation": EXPLANATIONS.get(reason, f"Not forwarded: {reason}."),
        "duplicate_of": str(row.duplicate_of) if row.duplicate_of else None,
        "windows": None,
        "budgets": None,
        "dedup_window_seconds": None,
        "flapping_pair": None,
        "shed_mode": None,
    }
    if reason == DUPLICATE:
        outcome["dedup_window_seconds"] = (
            rule.dedup_window_seconds
            if rule is not None and rule.dedup_window_seconds is not None
            else config.get("dedup_window_seconds")
        )
    elif reason == MAINTENANCE:
        outcome["windows"] = _windows(session, row)
    elif reason == STORM_BUDGET:
        outcome["budgets"] = _budgets(config, row)
    elif reason == FLAPPING and rule is not None:
        outcome["flapping_pair"] = {"rule_id": rule.id, "clears_rule_id": rule.clears_rule_id}
    elif reason == SHED:
        outcome["shed_mode"] = config.get("alerter_shed_mode")
    return outcome


def _windows(session: Session, row: EventAuditLog) -> list[dict[str, Any]]:
    """The suppressing windows open when the event was classified whose scope takes it."""
    moment = _utc(row.audited_at or row.received_at)
    found = []
    for window in session.scalars(
        select(MaintenanceWindow)
        .where(MaintenanceWindow.action == "suppress", MaintenanceWindow.starts_at <= moment)
        .order_by(MaintenanceWindow.id)
        .limit(MAX_WINDOWS)
    ):
        scope = Scope.of(window.hosts, window.teams, window.rule_ids, window.oid_prefixes)
        if not scope.matches(row.hostname, row.team_assignment, row.matched_rule_id, row.trap_oid):
            continue
        try:
            occurrence = schedule_of(window).occurrence_at(moment)
        except WindowError as exc:  # a schedule that cannot be walked names no occurrence
            log.info("window %s: schedule not walked for the event page: %s", window.id, exc)
            continue
        if occurrence is not None:
            found.append(
                {
                    "id": window.id,
                    "name": window.name,
                    "occurrence_start": occurrence.start,
                    "occurrence_end": occurrence.end,
                }
            )
    return found


def _budgets(config: DynamicConfig, row: EventAuditLog) -> list[dict[str, Any]]:
    """The storm budgets the event counted in (the device's, the rule's), with their size now."""
    lane = "page" if row.handling_decision == PAGE_HANDLING else "ticket"
    window = config.get("storm_window_seconds")
    budgets = [
        {
            "scope": "device",
            "name": row.hostname.lower(),
            "lane": lane,
            "limit": config.get("storm_budget_per_device"),
            "window_seconds": window,
        }
    ]
    if row.matched_rule_id is not None:
        budgets.append(
            {
                "scope": "rule",
                "name": str(row.matched_rule_id),
                "lane": lane,
                "limit": config.get("storm_budget_per_rule"),
                "window_seconds": window,
            }
        )
    return budgets


def _deliveries(client: redis.Redis, key: str) -> dict[str, Any]:
    try:
        found = delivery_history.report(client, key)
    except (redis.RedisError, OSError) as exc:
        log.warning("delivery history of %s unreadable: %s", key, exc)
        return {"unavailable": True, "sent": None, "sent_at": None, "attempts": []}
    return {"unavailable": False, **{k: v for k, v in found.items() if k != "correlation_id"}}


def _letters(session: Session, correlation_id: uuid.UUID) -> list[dict[str, Any]]:
    found = []
    for model in (DeadLetter, PoisonLetter):
        for item in session.scalars(
            select(model).where(model.correlation_id == correlation_id).order_by(model.id)
        ):
            found.append(
                {
                    "store": model.__tablename__,
                    "id": item.id,
                    "task_name": item.task_name,
                    "queue": item.queue,
                    "error_type": item.error_type,
                    "error_message": item.error_message,
                    "attempts": item.attempts,
                    "replays": item.replays,
                    "first_failed_at": item.first_failed_at,
                    "last_failed_at": item.last_failed_at,
                    "next_replay_at": getattr(item, "next_replay_at", None),
                    "poisoned_at": getattr(item, "poisoned_at", None),
                    "poison_reason": getattr(item, "reason", None),
                }
            )
    return found


def _utc(value: datetime) -> datetime:
    # SQLite gives back naive datetimes; MUTT stores UTC everywhere.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
