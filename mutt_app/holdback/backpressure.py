"""Classify's backpressure: when the ticket lane backs up, Ticket_only alerts are shed, never pages.

Before classify publishes its forwards it reads the length of the ticket lane (``LLEN mutt.forward``),
at most once a second per process, and compares it with the dynamic settings. The length counts
forward task messages, each carrying up to ``moog_batch_size`` alerts:

- at ``alerter_queue_warn_threshold`` or above: a warning in the log (when the level changes, then
  once a minute) and ``mutt_alerter_backpressure_state`` = 1;
- at ``alerter_queue_shed_threshold`` or above (state 2), each Ticket_only alert is shed as
  ``alerter_shed_mode`` says: ``dlq`` writes it as a forward dead letter with error type ``shed``,
  which remediation replays later (while Moog is healthy, DLQ_BATCH_SIZE per run); ``defer``
  publishes it with a countdown of ``alerter_defer_sleep_ms``. Each is counted in
  ``mutt_alerter_shed_events_total{mode}``.

Pages (Page_and_ticket) travel on their own lane and are never shed, nor are meta-alerts. The audit
is not touched: every event is still audited once; shedding decides only when an alert is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from mutt_app import metrics
from mutt_app.dynamic_config import DynamicConfig
from mutt_app.forwarding import lanes
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.holdback.base import Candidate, Held, Publish, Verdicts
from mutt_app.names import SHED as SHED_REASON
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

NORMAL, WARN, SHED = 0, 1, 2
SHED_HANDLING = "Ticket_only"
# Seconds one process reuses a reading: one LLEN per second per worker, not one per alert.
READ_EVERY = 1.0
# While above the warn threshold, the warning is repeated at most this often (seconds).
LOG_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Pressure:
    """One reading of the ticket lane and what it means under the current settings."""

    depth: int
    level: int  # NORMAL, WARN or SHED
    mode: str  # alerter_shed_mode: dlq | defer
    defer_seconds: float


def shed_verdict(alert: dict[str, Any], pressure: Pressure) -> str | None:
    """How ``alert`` is shed under ``pressure``: ``"dlq"``, ``"defer"``, or None (sent now).

    Only Ticket_only alerts are shed, and only at the shed level; a page never is.
    """
    if pressure.level < SHED:
        return None
    info = alert.get("custom_info")
    if not isinstance(info, dict) or info.get("handling") != SHED_HANDLING:
        return None
    return pressure.mode


class Backpressure:
    """The ticket lane's pressure as one process sees it (read at most every ``read_every`` s)."""

    def __init__(
        self,
        client: redis.Redis,
        config: DynamicConfig,
        queue: str = lanes.TICKET_QUEUE,
        read_every: float = READ_EVERY,
    ) -> None:
        self.client = client
        self.config = config
        self.queue = queue
        self.read_every = read_every
        self._lock = threading.Lock()
        self._reading: tuple[float, Pressure] | None = None
        self._logged: tuple[float, int] = (0.0, NORMAL)

    @classmethod
    def of(cls, runtime: Runtime) -> Backpressure:
        """The ticket lane's pressure as ``runtime``'s process sees it (a Runtime component)."""
        return cls(runtime.redis, runtime.dynamic_config)

    def pressure(self) -> Pressure:
        """The current reading; Redis errors propagate (classify retries its batch on them)."""
        now = time.monotonic()
        with self._lock:
            if self._reading is not None and now - self._reading[0] < self.read_every:
                return self._reading[1]
        depth = int(self.client.llen(self.queue))
        warn = self.config.get("alerter_queue_warn_threshold")
        shed = self.config.get("alerter_queue_shed_threshold")
        level = SHED if depth >= shed else WARN if depth >= warn else NORMAL
        reading = Pressure(
            depth=depth,
            level=level,
            mode=self.config.get("alerter_shed_mode"),
            defer_seconds=self.config.get("alerter_defer_sleep_ms") / 1000,
        )
        metrics.TICKET_LANE_DEPTH.set(depth)
        metrics.BACKPRESSURE_STATE.set(level)
        with self._lock:
            self._reading = (now, reading)
            self._report(now, reading, warn, shed)
        return reading

    def _report(self, now: float, reading: Pressure, warn: int, shed: int) -> None:
        last_at, last_level = self._logged
        if reading.level == last_level and (reading.level == NORMAL or now - last_at < LOG_EVERY):
            return
        self._logged = (now, reading.level)
        if reading.level == SHED:
            log.error(
                "%s holds %d messages (shed threshold %d): shedding Ticket_only alerts (mode %s)",
                self.queue,
                reading.depth,
                shed,
                reading.mode,
            )
        elif reading.level == WARN:
            log.warning("%s holds %d messages (warn threshold %d)", self.queue, reading.depth, warn)
        else:
            log.info(
                "%s holds %d messages: below the warn threshold again", self.queue, reading.depth
            )


class Shedding:
    """The last stage, just before the lanes: under backpressure, Ticket_only alerts are shed.

    Mode ``dlq``: held (reason ``shed``) and written as forward dead letters (error type ``shed``)
    that remediation replays; mode ``defer``: published later (``Verdicts.delay``). Nothing to
    flush: remediation sends what it sheds.
    """

    name = SHED_REASON
    watches_held: frozenset[str] = frozenset()
    events_only = False

    def hold(
        self,
        runtime: Runtime,
        snapshot: RuleSnapshot | None,
        candidates: Sequence[Candidate],
        held: Mapping[str, Held],
    ) -> Verdicts:
        """Shed the Ticket_only alerts among ``candidates`` if the ticket lane is backed up."""
        verdicts = Verdicts()
        if not candidates:
            return verdicts
        pressure = runtime.component(Backpressure.of).pressure()
        shed = [(c, mode) for c in candidates if (mode := shed_verdict(c.alert, pressure))]
        if not shed:
            return verdicts
        dropped = [c.alert for c, mode in shed if mode == "dlq"]
        _shed_to_dlq(runtime, dropped, pressure.depth)
        verdicts.held = {c.id: Held(SHED_REASON) for c, mode in shed if mode == "dlq"}
        verdicts.delay = {c.id: pressure.defer_seconds for c, mode in shed if mode != "dlq"}
        metrics.SHED_EVENTS.labels(pressure.mode).inc(len(shed))
        return verdicts

    def flush(self, runtime: Runtime, publish: Publish) -> int:
        """Nothing: what is shed is a dead letter (remediation) or already on its way."""
        return 0


def _shed_to_dlq(runtime: Runtime, alerts: list[dict[str, Any]], depth: int) -> None:
    """Write shed alerts as forward dead letters (error type ``shed``); remediation replays them."""
    if not alerts:
        return
    with runtime.sessions.begin() as session:
        for alert in alerts:
            add_dead_letter(
                session,
                task_name=lanes.FORWARD_TASK,
                queue=lanes.queue_for(alert),
                payload={"alert": alert},
                error=f"shed: {lanes.TICKET_QUEUE} held {depth} messages",
                error_type="shed",
                backoff_base=runtime.settings.remediation_backoff_base,
                attempts=0,
                correlation_id=alert.get("external_id"),
            )
    log.warning("shed %d Ticket_only alerts to the dead-letter queue", len(alerts))
