"""Alerts straight onto a running stack's forward lanes, and how fast they reach the sink."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from mutt_app.config import load_settings
from mutt_app.db.models import DeadLetter
from mutt_app.holdback.pipeline import publish_forwards
from mutt_app.runtime import Runtime, runtime_of
from tests.e2e.stack import Stack


def publish_alerts(stack: Stack, alerts: list[dict]) -> None:
    """Publish ``alerts`` to the stack's forward lanes."""
    # As classify_event does: recorded in the outbox, then published.
    app = Runtime(load_settings(stack.env)).celery
    publish_forwards(runtime_of(app), app, alerts)


def made_alerts(n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` alerts of ``n`` hosts, as classify makes them, each with its own external_id; the
    description is ``tag``, so a test can tell its batches apart at the sink."""
    now = int(datetime.now(UTC).timestamp())
    return [
        {
            "signature": f"host-{i}::1::{tag}",
            "source_id": f"host-{i}",
            "source": f"host-{i}",
            "external_id": str(uuid.uuid4()),
            "manager": "MUTT",
            "class": "NETO",
            "agent": "MUTT",
            "agent_location": f"host-{i}",
            "type": "syslog",
            "severity": 4,
            "description": tag,
            "agent_time": now,
        }
        for i in range(n)
    ]


def dead_letters(stack: Stack) -> dict[str, tuple[str, str]]:
    """correlation_id -> (error_type, error_message) of every dead letter of the stack."""
    with stack.engine.connect() as conn:
        rows = conn.execute(
            select(DeadLetter.correlation_id, DeadLetter.error_type, DeadLetter.error_message)
        ).all()
    return {str(c): (t, m) for c, t, m in rows}


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall within any one ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
