"""How far from its arrival an event's own time is trusted (EVENT_TIME_MAX_AGE_DAYS, _AHEAD_MINUTES).

Outside the range, :func:`mutt_app.events.schema.validate_items` accepts the event under its
``received_at`` and keeps the sender's time in ``raw``, rather than refusing it: a device whose
clock is wrong (reset to 1970 after a power loss, a year off) still has real faults to report, and
a refused item would be lost or retried forever by the sender. The audit then holds every accepted
event once, within the range of its arrival, so no body can spread its events over more monthly
audit partitions than the range spans (two, with the defaults).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mutt_app import metrics
from mutt_app.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventTimeRange:
    """How far an event's own time may lie before (``max_age``) or after (``max_ahead``) the
    moment it was received."""

    max_age: timedelta
    max_ahead: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> EventTimeRange:
        """EVENT_TIME_MAX_AGE_DAYS and EVENT_TIME_MAX_AHEAD_MINUTES."""
        return cls(
            timedelta(days=settings.event_time_max_age_days),
            timedelta(minutes=settings.event_time_max_ahead_minutes),
        )

    def bounds(self, received_at: datetime) -> tuple[datetime, datetime]:
        """The earliest and the latest time trusted for an event received at ``received_at``
        (both included): a body's events share their ``received_at``, so one call per body."""
        return received_at - self.max_age, received_at + self.max_ahead

    def count_adjusted(self, adjusted: Sequence[tuple[int, str]], items: Sequence[object]) -> None:
        """Count the events of one body put at their ``received_at`` (index, direction), and
        log one line naming the first."""
        for _, direction in adjusted:
            metrics.INGEST_EVENT_TIME_ADJUSTED.labels(direction).inc()
        index, direction = adjusted[0]
        item = items[index]
        sent = item.get("timestamp") if isinstance(item, dict) else None
        log.info(
            "%d events stamped outside [-%s, +%s] of received_at are audited under received_at; "
            "first: item %d (%s) stamped %.40r",
            len(adjusted),
            _span(self.max_age),
            _span(self.max_ahead),
            index,
            direction,
            sent,
        )


def _span(delta: timedelta) -> str:
    """``delta`` as the settings give it: whole days as ``7d``, else minutes as ``15m``."""
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 1440}d" if minutes and minutes % 1440 == 0 else f"{minutes}m"
