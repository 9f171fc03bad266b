"""Alerts straight onto a running stack's forward lanes, and how fast they reach the sink."""

from __future__ import annotations

from mutt_app.config import load_settings
from mutt_app.holdback.pipeline import publish_forwards
from mutt_app.runtime import Runtime, runtime_of
from tests.e2e.stack import Stack


def publish_alerts(stack: Stack, alerts: list[dict]) -> None:
    """Publish ``alerts`` to the stack's forward lanes."""
    # As classify_event does: recorded in the outbox, then published.
    app = Runtime(load_settings(stack.env)).celery
    publish_forwards(runtime_of(app), app, alerts)


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall within any one ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
