"""Which alerts may be forwarded at all: their shape and their size, checked before any request.

The forward task keys each alert by ``external_id or signature`` (its idempotency key, the sent and
in-flight keys in Redis, the outbox entry, the delivery history). An alert with neither used to get
the key ``"None"``: every such alert then passed for a duplicate of the first and was neither sent,
nor dead-lettered, nor logged. And an alert of any size was posted as is (an 8 MiB message too).

So every alert is checked here first, whatever brought it (classify, a summary, a heartbeat, a
dead-letter replay by remediation or a person): what fails is not retried, since it would fail the
same way, but moved to the poison store with the reason (``mutt_moog_alerts_processed_total
{status="poisoned"}``), where a person sees it.
"""

from __future__ import annotations

from typing import Any

import orjson

MOOG_SEVERITIES = range(6)
"""Moog's severities: 0 clear, 1 indeterminate .. 5 critical."""

# Fields Moog reads as text, when present (MUTT's own alerts always carry them).
TEXT_FIELDS = ("signature", "source", "source_id", "description", "class", "type", "manager")


def idempotency_key(alert: Any) -> str | None:
    """The alert's idempotency key (its external_id, else its signature); None if it has none."""
    if not isinstance(alert, dict):
        return None
    for name in ("external_id", "signature"):
        value = alert.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def problem(alert: Any, max_bytes: int) -> tuple[str, str] | None:
    """Why ``alert`` cannot be forwarded, as (error type, reason); None when it can.

    ``max_bytes`` is MOOG_MAX_ALERT_BYTES: the alert's size as compact JSON.
    """
    if not isinstance(alert, dict):
        return "MalformedAlert", f"an alert must be a JSON object, not {type(alert).__name__}"
    if idempotency_key(alert) is None:
        return (
            "MalformedAlert",
            "the alert has neither an external_id nor a signature (a non-empty string): it has"
            " no idempotency key, so it could never be told from another",
        )
    for name in ("external_id", *TEXT_FIELDS):
        if name in alert and alert[name] is not None and not isinstance(alert[name], str):
            return "MalformedAlert", f"{name} must be a string, not {type(alert[name]).__name__}"
    severity = alert.get("severity")
    if severity is not None and (
        isinstance(severity, bool)
        or not isinstance(severity, int)
        or severity not in MOOG_SEVERITIES
    ):
        return "MalformedAlert", f"severity must be an integer 0..5, not {severity!r}"[:300]
    try:
        size = len(orjson.dumps(alert))
    except TypeError as exc:  # not JSON at all (a replayed payload is; a bug's alert may not be)
        return "MalformedAlert", f"the alert is not JSON: {exc}"
    if size > max_bytes:
        return (
            "AlertTooLarge",
            f"the alert is {size} bytes as JSON, over MOOG_MAX_ALERT_BYTES ({max_bytes})",
        )
    return None
