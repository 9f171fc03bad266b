"""What each maintenance-window occurrence held or downgraded, counted in Redis by every worker.

An occurrence (a window id and its start) is a :class:`~mutt_app.holdback.closing.ClosingWindows`
window: it counts the alerts and hosts it applied to until its end, then the flush job sends its
summary. ``lua/maintenance.lua`` records a batch atomically and idempotently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from mutt_app.holdback.closing import ClosingWindows
from mutt_app.lua.loader import LuaScript

MAINTENANCE_LUA = LuaScript("mutt_app.holdback", "maintenance")
MAINTENANCE_RESCHEDULE_LUA = LuaScript("mutt_app.holdback", "maintenance_reschedule")
MAX_HOSTS = 10_000
"""Distinct hosts one occurrence counts for its summary. A window runs for up to a month, over
hosts a sender can invent; past this, an alert of a new host is counted as ``other`` (the alert
count stays exact) and the summary says "N+ hosts" (a log line and
``mutt_held_window_overflow_total{window="maintenance"}`` count it)."""


@dataclass(frozen=True, slots=True)
class Windowed:
    """One alert an open maintenance window applies to, as :class:`MaintenanceCounts` counts it."""

    key: str  # "<window id>:<occurrence start, epoch ms>"
    closes_ms: int  # the occurrence's end
    correlation_id: str
    host: str
    action: str
    label: bytes  # JSON kept with the occurrence for its summary


class MaintenanceCounts(ClosingWindows):
    """What each maintenance-window occurrence held or downgraded, shared by every worker.

    :meth:`observe` records a batch's alerts atomically and idempotently; ended occurrences go to
    the flush job like any :class:`ClosingWindows`.
    """

    def __init__(self, client: redis.Redis, prefix: str, remember_seconds: int) -> None:
        super().__init__(client, prefix, remember_seconds)
        self.script = MAINTENANCE_LUA.register(client)
        self.reschedule_script = MAINTENANCE_RESCHEDULE_LUA.register(client)

    def window_key(self, occurrence: str) -> str:
        return f"{self.prefix}:window:{occurrence}"

    def observe(self, batch_key: str, alerts: Sequence[Windowed]) -> list[str]:
        """The action applied to each of ``alerts`` ('' if its occurrence has ended), in order."""
        if not alerts:
            return []
        occurrences: dict[str, int] = {}
        args_occ: list[Any] = []
        for alert in alerts:
            if alert.key not in occurrences:
                occurrences[alert.key] = len(occurrences) + 1
                args_occ += [alert.key, alert.closes_ms, alert.label]
        keys = self.batch_keys(batch_key, (self.window_key(k) for k in occurrences))
        args: list[Any] = [self.remember, MAX_HOSTS, len(occurrences), *args_occ]
        for alert in alerts:
            args += [occurrences[alert.key], alert.correlation_id, alert.host, alert.action]
        replies = self.script(keys=keys, args=args)
        return [r.decode() if isinstance(r, bytes) else r for r in replies]

    def occurrences_of(self, window_id: str) -> list[tuple[str, int]]:
        """The counting occurrences of one window: (hash key, start epoch ms)."""
        found = []
        for member, _ in self.client.zscan_iter(
            self.due_key, match=self.window_key(f"{window_id}:*")
        ):
            key = member.decode() if isinstance(member, bytes) else member
            found.append((key, int(key.rsplit(":", 1)[1])))
        return found

    def reschedule(self, key: str, closes_ms: int) -> int:
        """Make the occurrence at ``key`` end at ``closes_ms``; 1 if it was still counting."""
        return int(self.reschedule_script(keys=[self.due_key, key], args=[closes_ms]))
