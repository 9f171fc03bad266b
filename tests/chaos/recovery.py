"""How soon the pipeline flows again after a failure: a :class:`Probe` posting page events and
timing them through to the audit and the sink (:class:`SinkLog`)."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import requests
from sqlalchemy import select

from mutt_app.db.models import EventAuditLog
from tests.chaos.load import Tally
from tests.e2e.stack import Stack
from tests.services import wait_for


class SinkLog:
    """The sink's received alerts, read incrementally (``/events?since=``)."""

    def __init__(self, sink_url: str) -> None:
        self.url = sink_url
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def refresh(self) -> list[dict[str, Any]]:
        with self._lock:
            answer = requests.get(self.url, params={"since": len(self.events)}, timeout=10).json()
            self.events.extend(answer["events"])
            return self.events

    def arrivals(self) -> dict[str, float]:
        """external_id -> first arrival (epoch seconds)."""
        first: dict[str, float] = {}
        for event in self.refresh():
            first.setdefault(str(event.get("external_id")), float(event["_received_at"]))
        return first


@dataclass(frozen=True)
class Failure:
    """A failure a test caused, and when (epoch seconds)."""

    name: str
    at: float


class Probe:
    """Posts one forwardable (page) event every ``interval`` seconds, once each.

    An accepted probe is complete once it is both audited and at the sink. The recovery after a
    failure at T is the earliest completion among probes first posted at or after T, minus T:
    the time until an event entering after the failure came out at both ends.
    """

    def __init__(self, stack: Stack, sink: SinkLog, tally: Tally, interval: float = 0.2) -> None:
        self.stack, self.sink, self.tally, self.interval = stack, sink, tally, interval
        self.posted: list[tuple[str, float]] = []  # accepted (correlation_id, posted at)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe", daemon=True)

    def start(self) -> Probe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _run(self) -> None:
        session = requests.Session()
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            cid = str(uuid.uuid4())
            event = {
                "timestamp": datetime.now(UTC).isoformat(),
                "hostname": "chaos-probe",
                "message": f"CRITICAL chaos probe {n}",
                "correlation_id": cid,
            }
            posted = time.time()
            try:
                response = session.post(self.stack.ingest_url, data=orjson.dumps(event),
                                        headers={"Content-Type": "application/json"}, timeout=5)  # fmt: skip
            except requests.RequestException:  # refused, cut off or timed out
                self.tally.connection_error()
                session.close()
                continue
            self.tally.answer(response.status_code, response.text, posted)
            if response.status_code in (200, 202):
                self.posted.append((cid, posted))
        session.close()

    def completions(self, since: float = 0.0) -> list[tuple[float, float]]:
        """(posted, complete) epoch seconds of each accepted probe posted at or after ``since``
        that is complete (audited and at the sink); empty while the database or sink is down."""
        after = [(cid, at) for cid, at in list(self.posted) if at >= since]
        if not after:
            return []
        try:
            arrived = self.sink.arrivals()
            with self.stack.engine.connect() as conn:
                audited = dict(
                    conn.execute(
                        select(EventAuditLog.correlation_id, EventAuditLog.audited_at).where(
                            EventAuditLog.correlation_id.in_([uuid.UUID(c) for c, _ in after])
                        )
                    ).all()
                )
        except Exception:  # the database or the sink may be the part that failed, right now
            return []
        return [
            (at, max(arrived[cid], audited[uuid.UUID(cid)].timestamp()))
            for cid, at in after
            if cid in arrived and uuid.UUID(cid) in audited
        ]

    def recovery(self, failure: Failure) -> float | None:
        """Seconds from ``failure`` to the first completed probe posted after it (None: none yet)."""
        done = [complete for _, complete in self.completions(failure.at)]
        return round(min(done) - failure.at, 2) if done else None

    def steady(self, max_latency: float = 1.0, within: float = 2.0) -> bool:
        """Whether a probe posted in the last ``within`` seconds completed in ``max_latency``:
        the pipeline has no backlog left from an earlier failure."""
        recent = self.completions(time.time() - within)
        return any(complete - posted <= max_latency for posted, complete in recent)

    def latencies(self) -> list[float]:
        """Seconds from post to completion of every completed probe, sorted."""
        return sorted(complete - posted for posted, complete in self.completions())

    def wait_recovered(self, failure: Failure, timeout: float = 60) -> float:
        """Block until the pipeline flows again after ``failure``; its recovery seconds."""
        found: list[float] = []

        def recovered() -> bool:
            seconds = self.recovery(failure)
            if seconds is not None:
                found.append(seconds)
            return bool(found)

        wait_for(recovered, timeout, f"the pipeline to flow again after {failure.name}", 0.5)
        return found[-1]
