"""The Moogsoft AIOps event MUTT posts to the webhook (the REST LAM / webhook event format).

Fields: ``signature`` (what Moog deduplicates alerts on), ``source_id``, ``external_id``,
``manager``, ``source``, ``class``, ``agent``, ``agent_location``, ``type``, ``severity`` (0 clear,
1 indeterminate, 2 warning, 3 minor, 4 major, 5 critical), ``description``, ``agent_time`` (epoch
seconds) and ``custom_info``. ``external_id`` is the event's correlation_id, which the forward task
also uses as its idempotency key.

One request carries a batch of these (:func:`request_body`), in one of two formats (MOOG_FORMAT):

- ``rest_lam``: the REST LAM's ``{"events": [event, ...]}``, the events as above;
- ``cloud``: the Moogsoft Cloud Events API's JSON array of events (:func:`cloud_event`): ``source``,
  ``check``, ``description``, ``severity`` as a name (clear, unknown, warning, minor, major,
  critical), ``dedupe_key`` (the signature, so Moog deduplicates as before), ``manager``, ``class``,
  ``time`` and ``tags`` (the custom info as strings, with ``external_id``); the key goes in an
  ``apiKey`` header.

Neither API answers per event: a request is accepted or refused whole.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from mutt_app.events.schema import Event

__all__ = [
    "AGENT",
    "DEFAULT_SEVERITY",
    "MANAGER",
    "build_payload",
    "cloud_event",
    "flapping_alert",
    "maintenance_summary",
    "repeat_update",
    "request_body",
    "severity_for",
    "signature_for",
    "storm_summary",
    "unhandled_meta_alert",
]

MANAGER = "MUTT"
AGENT = "MUTT"
DEFAULT_SEVERITY = 2  # warning: an event that carried no syslog severity
META_ALERT_SEVERITY = 3  # minor: something is talking and no rule listens
META_ALERT_TYPE = "mutt.unhandled"

# Index: Moog severity 0..5, as the Cloud Events API names them.
CLOUD_SEVERITIES = ("clear", "unknown", "warning", "minor", "major", "critical")
# Index: syslog severity 0 (emergency) .. 7 (debug).
_SEVERITY_BY_SYSLOG = (5, 5, 5, 4, 3, 2, 1, 1)
# Longer alert texts go into the signature as a digest, so it stays a sane key for Moog.
_SIGNATURE_TEXT_MAX = 200
# Fixed, so that a dedup window's update always gets the same external_id.
_REPEAT_NAMESPACE = uuid.UUID("0b6f1f52-6a4e-4d4b-9f37-3a8f4e1c5d20")
# Likewise for a storm window's summary and a flapping episode's two alerts.
_STORM_NAMESPACE = uuid.UUID("5d0c2a8e-1b7f-4c3e-9a61-2f4b8d7e6c10")
_FLAP_NAMESPACE = uuid.UUID("9e3b7c41-8f2d-4a6b-b5c0-7d1e2a9f4b83")
_MAINTENANCE_NAMESPACE = uuid.UUID("3c9a5e17-2d84-4b6f-8e0a-61f7b2c4d9e5")
STORM_TYPE = "mutt.storm"
MAINTENANCE_TYPE = "mutt.maintenance"
FLAPPING_TYPE = "mutt.flapping"
CLEAR_SEVERITY = 0
_TOP_MESSAGES = 3


def severity_for(syslog_severity: int | None) -> int:
    """The Moog severity (1..5) for a syslog severity (0..7).

    0-2 (emergency, alert, critical) -> 5 critical; 3 (error) -> 4 major; 4 (warning) -> 3 minor;
    5 (notice) -> 2 warning; 6-7 (info, debug) -> 1 indeterminate; absent or out of range -> 2.
    """
    if syslog_severity is None or not 0 <= syslog_severity <= 7:
        return DEFAULT_SEVERITY
    return _SEVERITY_BY_SYSLOG[syslog_severity]


def signature_for(hostname: str, rule_id: int | None, trap_oid: str | None, message: str) -> str:
    """Moog's dedup key for an alert: ``host::rule::(trap OID or message)``.

    The same alert recurring gives the same signature, so Moog counts it on one alert instead of
    opening another: nothing time-dependent goes in, and the host name is lower-cased (DNS names
    are case-insensitive). A text longer than 200 characters is replaced by its SHA-1.
    """
    text = trap_oid or message
    if len(text) > _SIGNATURE_TEXT_MAX:
        text = "sha1:" + hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
    rule = "none" if rule_id is None else str(rule_id)
    return f"{hostname.lower()}::{rule}::{text}"


def build_payload(
    event: Event, *, rule_id: int | None, handling: str, team: str, is_dev: bool = False
) -> dict[str, Any]:
    """The Moog event for ``event``, classified under ``rule_id`` with ``handling`` for ``team``."""
    return {
        "signature": signature_for(event.hostname, rule_id, event.trap_oid, event.message),
        "source_id": event.hostname,
        "external_id": event.correlation_id,
        "manager": MANAGER,
        "source": event.hostname,
        "class": team,
        "agent": AGENT,
        "agent_location": event.hostname,
        "type": event.trap_oid or "syslog",
        "severity": severity_for(event.syslog_severity),
        "description": event.message,
        "agent_time": int(event.timestamp.timestamp()),
        "custom_info": {
            "handling": handling,
            "rule_id": rule_id,
            "correlation_id": event.correlation_id,
            "team": team,
            "is_dev": is_dev,
            "event_source": event.source,
            "syslog_severity": event.syslog_severity,
            "received_at": event.received_at.isoformat(),
        },
    }


def unhandled_meta_alert(
    hostname: str, count: int, *, team: str, window: int, now: datetime | None = None
) -> dict[str, Any]:
    """The Moog event raised when ``hostname`` sent ``count`` events no rule matched.

    One per host per ``window`` seconds (the caller's counter sees to that). Its signature is the
    same every time, so Moog keeps one alert per noisy host; its external_id is new every time, so
    the forward task's idempotency key does not swallow the next window's alert.
    """
    now = now or datetime.now(UTC)
    external_id = str(uuid.uuid4())
    return {
        "signature": f"{hostname.lower()}::unhandled",
        "source_id": hostname,
        "external_id": external_id,
        "manager": MANAGER,
        "source": hostname,
        "class": team,
        "agent": AGENT,
        "agent_location": hostname,
        "type": META_ALERT_TYPE,
        "severity": META_ALERT_SEVERITY,
        "description": (
            f"{count} events from {hostname} matched no MUTT rule within {window} seconds"
        ),
        "agent_time": int(now.timestamp()),
        "custom_info": {
            "handling": "meta_alert",
            "rule_id": None,
            "correlation_id": external_id,
            "team": team,
            "is_dev": False,
            "unhandled_count": count,
            "window_seconds": window,
        },
    }


def repeat_update(
    alert: dict[str, Any], *, count: int, last_at: datetime, last_id: str, window: int
) -> dict[str, Any]:
    """The one update Moog gets for a dedup window of ``alert`` that had ``count`` repeats.

    It keeps ``alert``'s signature, so Moog adds it to the same alert. Its external_id is derived
    from the alert's, so publishing it twice (a flush job that died before it finished) is still
    one delivery: the forward task's idempotency key sees the same id.
    """
    first_id = str(alert["external_id"])
    external_id = str(uuid.uuid5(_REPEAT_NAMESPACE, first_id))
    last = last_at.astimezone(UTC)
    return {
        **alert,
        "external_id": external_id,
        "description": (
            f"{alert['description']} [repeated {count} more times within {window} s;"
            f" last at {last.isoformat()}]"
        ),
        "agent_time": int(last.timestamp()),
        "custom_info": {
            **alert.get("custom_info", {}),
            "correlation_id": external_id,
            "duplicate_of": first_id,
            "duplicate_count": count,
            "last_occurrence": last.isoformat(),
            "last_correlation_id": last_id,
            "dedup_window_seconds": window,
        },
    }


def storm_summary(
    alert: dict[str, Any],
    *,
    window_id: str,
    scope: str,
    name: str,
    held: int,
    window: int,
    top: list[tuple[str, int]],
    other: int = 0,
) -> dict[str, Any]:
    """The one alert Moog gets for a storm-budget window that held ``held`` alerts.

    ``alert`` is the window's first alert (for team, class and severity), ``scope`` ``device`` or
    ``rule``, ``name`` the host or "rule <id>", ``top`` the held message templates with their
    counts, most frequent first, ``other`` the held alerts of templates past those the window kept
    (:data:`mutt_app.holdback.storms.MAX_TEMPLATES`). One signature per scope, so Moog keeps one storm alert per device
    or rule; the external_id is derived from the window's id, so a flush that ran twice is one
    delivery.
    """
    external_id = str(uuid.uuid5(_STORM_NAMESPACE, window_id))
    messages = "; ".join(f"{text} (x{count:,})" for text, count in top[:_TOP_MESSAGES])
    if other:
        messages += f"; {other:,} of other messages"
    custom = alert.get("custom_info", {})
    return {
        **alert,
        "signature": f"{name.lower()}::storm",
        "external_id": external_id,
        "type": STORM_TYPE,
        "description": f"{name}: {held:,} alerts held in {window} s; top messages: {messages}",
        "agent_time": int(datetime.now(UTC).timestamp()),
        "custom_info": {
            "handling": custom.get("handling"),
            "team": custom.get("team"),
            "is_dev": custom.get("is_dev", False),
            "rule_id": custom.get("rule_id") if scope == "rule" else None,
            "correlation_id": external_id,
            "storm_scope": scope,
            "storm_held": held,
            "storm_window_seconds": window,
            "storm_top_messages": [{"template": t, "count": n} for t, n in top[:_TOP_MESSAGES]],
            "storm_other_messages": other,
        },
    }


def maintenance_summary(
    *,
    occurrence_id: str,
    window_id: int,
    name: str,
    action: str,
    count: int,
    hosts: int,
    start: str,
    end: str,
    team: str,
    other: int = 0,
) -> dict[str, Any]:
    """The one alert Moog gets when an occurrence of a maintenance window ended having held
    (``action`` suppress) or downgraded ``count`` alerts from ``hosts`` hosts (and ``other`` alerts
    of hosts past those the occurrence counted: "N+ hosts").

    A ticket, never a page. One signature per window, so Moog keeps one summary alert per window;
    the external_id is derived from the occurrence (window id and start), so a flush run twice is
    one delivery.
    """
    external_id = str(uuid.uuid5(_MAINTENANCE_NAMESPACE, occurrence_id))
    what = "held" if action == "suppress" else "downgraded to Ticket_only"
    host_text = f"{hosts:,}+ hosts" if other else f"{hosts:,} host{'' if hosts == 1 else 's'}"
    alert_word = "alert" if count == 1 else "alerts"
    return {
        "signature": f"maintenance::{window_id}",
        "source_id": MANAGER,
        "external_id": external_id,
        "manager": MANAGER,
        "source": MANAGER,
        "class": team,
        "agent": AGENT,
        "agent_location": MANAGER,
        "type": MAINTENANCE_TYPE,
        "severity": DEFAULT_SEVERITY,
        "description": f"window '{name}': {count:,} {alert_word} {what}, {host_text}",
        "agent_time": int(datetime.now(UTC).timestamp()),
        "custom_info": {
            "handling": "Ticket_only",
            "rule_id": None,
            "correlation_id": external_id,
            "team": team,
            "is_dev": False,
            "maintenance_window_id": window_id,
            "maintenance_action": action,
            "maintenance_count": count,
            "maintenance_hosts": hosts,
            "maintenance_uncounted_host_alerts": other,
            "occurrence_start": start,
            "occurrence_end": end,
        },
    }


def flapping_alert(
    alert: dict[str, Any],
    *,
    episode: str,
    transitions: int,
    within: int,
    ended: bool = False,
    held: int = 0,
    duration: int = 0,
) -> dict[str, Any]:
    """The "flapping" alert of a problem/clear pair (from ``alert``, the pair's problem or clear
    alert), or with ``ended`` its "flapping ended" alert, which clears it in Moog (same signature,
    severity 0) and carries the counts: ``transitions``, ``held`` events, ``duration`` seconds.

    Each gets an external_id derived from the episode, so a redelivered batch or a flush run twice
    is one delivery.
    """
    custom = alert.get("custom_info", {})
    host = str(alert["source"])
    rule = custom.get("flap_problem_rule_id", custom.get("rule_id"))
    external_id = str(uuid.uuid5(_FLAP_NAMESPACE, f"{episode}:{'ended' if ended else 'raised'}"))
    if ended:
        description = (
            f"{host}: flapping ended (rule {rule}): {transitions} transitions,"
            f" {held} events held over {duration} s"
        )
    else:
        description = (
            f"{host}: flapping (rule {rule}): {transitions} problem/clear transitions within"
            f" {within} s; further transitions held until it is quiet"
        )
    return {
        **alert,
        "signature": f"{host.lower()}::flapping::{rule}",
        "external_id": external_id,
        "type": FLAPPING_TYPE,
        "severity": CLEAR_SEVERITY if ended else max(int(alert.get("severity", 0)), 3),
        "description": description,
        "agent_time": int(datetime.now(UTC).timestamp()),
        "custom_info": {
            "handling": custom.get("handling"),
            "team": custom.get("team"),
            "is_dev": custom.get("is_dev", False),
            "rule_id": rule,
            "correlation_id": external_id,
            "flapping": "ended" if ended else "raised",
            "flap_episode": episode,
            "flap_transitions": transitions,
            "flap_window_seconds": within,
            "flap_held": held,
            "flap_duration_seconds": duration,
        },
    }


def cloud_event(alert: dict[str, Any]) -> dict[str, Any]:
    """``alert`` (a REST LAM event) as a Moogsoft Cloud Events API event."""
    severity = alert.get("severity")
    name = (
        CLOUD_SEVERITIES[severity]
        if isinstance(severity, int) and 0 <= severity < len(CLOUD_SEVERITIES)
        else CLOUD_SEVERITIES[DEFAULT_SEVERITY]
    )
    info = alert.get("custom_info") if isinstance(alert.get("custom_info"), dict) else {}
    tags = {k: "" if v is None else str(v) for k, v in info.items()}
    tags["external_id"] = str(alert.get("external_id", ""))
    return {
        "source": alert.get("source", ""),
        "check": alert.get("type", "syslog"),
        "description": alert.get("description", ""),
        "severity": name,
        "dedupe_key": alert.get("signature", ""),
        "manager": alert.get("manager", MANAGER),
        "class": alert.get("class", ""),
        "time": alert.get("agent_time"),
        "tags": tags,
    }


def request_body(alerts: list[dict[str, Any]], fmt: str) -> Any:
    """The JSON body of one request carrying ``alerts`` in format ``fmt`` (MOOG_FORMAT)."""
    if fmt == "cloud":
        return [cloud_event(alert) for alert in alerts]
    return {"events": alerts}
