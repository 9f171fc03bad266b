"""The chaos runs' traffic: the seeded rules, the events senders post, and the senders themselves
(:class:`Load`), with what they saw (:class:`Tally`)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import requests
from sqlalchemy import Engine, insert

from mutt_app.db.models import AlertRule

if TYPE_CHECKING:
    from tests.chaos.recovery import Failure

# The seeded rules: one event in five is forwardable (half pages, half tickets); the others match
# a Log_only rule, so none is unhandled (an unhandled storm would add meta-alerts to the sink).
RULES = [
    dict(match_string="CRITICAL", match_type="contains", priority=900,
         prod_handling="Page_and_ticket", dev_handling="Ticket_only", team_assignment="NETO"),
    dict(match_string="disk.*full", match_type="regex", priority=700,
         prod_handling="Ticket_only", dev_handling="Log_only", team_assignment="UNIX"),
    dict(match_string="link flap", match_type="contains", priority=100,
         prod_handling="Log_only", dev_handling="Log_only", team_assignment="NETO"),
]  # fmt: skip
FORWARD_EVERY = 5


def seed_rules(engine: Engine) -> None:
    """Insert :data:`RULES`."""
    with engine.begin() as conn:
        conn.execute(insert(AlertRule), RULES)


def chaos_event(sender: str, seq: int) -> tuple[dict[str, Any], bool]:
    """Event ``seq`` of ``sender`` with a fresh correlation_id, and whether it is forwardable."""
    host = f"chaos-{sender}-{seq % 40}"
    kind = seq % (2 * FORWARD_EVERY)
    if kind == 0:
        message = f"CRITICAL power supply {seq} failed"  # a page
    elif kind == FORWARD_EVERY:
        message = f"disk /var/{seq} full"  # a ticket
    else:
        message = f"link flap on port {seq}"  # Log_only
    event = {
        "timestamp": datetime.now(UTC).isoformat(),
        "hostname": host,
        "message": message,
        "correlation_id": str(uuid.uuid4()),
    }
    return event, kind in (0, FORWARD_EVERY)


@dataclass
class Tally:
    """What senders saw, shared by all sender threads (and the probe).

    ``statuses`` counts HTTP statuses, and two of the run's own failures: -1 a request only partly
    accepted, -2 a sender thread that crashed.
    """

    statuses: Counter[int] = field(default_factory=Counter)
    connection_errors: int = 0
    failures: list[str] = field(default_factory=list)  # the first few unexpected answers
    # (sent, answered) epoch seconds of every request answered 2xx, senders' and probes'.
    accepts: list[tuple[float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, status: int, text: str, sent: float | None = None) -> None:
        """Count an answer; a 2xx to a request sent at ``sent`` is kept in :attr:`accepts`."""
        with self.lock:
            self.statuses[status] += 1
            if sent is not None and status in (200, 202):
                self.accepts.append((sent, time.time()))
            if status not in (200, 202, 503) and len(self.failures) < 10:
                self.failures.append(f"{status}: {text[:300]}")

    def accepting(self, failure: Failure) -> float | None:
        """Seconds from ``failure`` to the first 2xx answer to a request sent after it."""
        with self.lock:
            answered = [at for sent, at in self.accepts if sent >= failure.at]
        return round(min(answered) - failure.at, 2) if answered else None

    def connection_error(self) -> None:
        """A connection refused, cut or timed out (the answer is unknown: the sender re-posts)."""
        with self.lock:
            self.connection_errors += 1

    def crashed(self, who: str, exc: BaseException) -> None:
        """A sender thread died: a failure of the run (its events would silently go unsent)."""
        with self.lock:
            self.statuses[-2] += 1
            self.failures.append(f"{who} crashed: {exc!r}")


class Load:
    """Sender threads posting ``events`` unique events in requests of ``per_request``, at ``rate``
    events a second in all. A sender keeps a request's events until they are answered 2xx: on
    503 it waits Retry-After (capped at ``max_wait``), on a connection error a moment, and posts
    the same bytes again (the idempotent audit makes a re-post of an accepted event harmless)."""

    def __init__(
        self,
        url: str,
        senders: int = 4,
        events: int = 20_000,
        per_request: int = 100,
        rate: float = 600.0,
        max_wait: float = 1.0,
    ) -> None:
        self.url, self.per_request, self.max_wait = url, per_request, max_wait
        self.total = events
        self.tally = Tally()
        self.accepted: dict[str, bool] = {}  # correlation_id -> forwardable
        self._lock = threading.Lock()
        self._stop = threading.Event()
        share = events // senders
        self._threads = [
            threading.Thread(
                target=self._send,
                args=(f"s{i}", share + (events % senders if i == 0 else 0), rate / senders),
                name=f"sender-{i}",
                daemon=True,
            )
            for i in range(senders)
        ]
        self.started_at = self.ended_at = 0.0

    def start(self) -> Load:
        self.started_at = time.time()
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.join(10)

    def join(self, timeout: float) -> bool:
        """Wait for every sender; True when all have finished."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0))
        done = not any(t.is_alive() for t in self._threads)
        if done and not self.ended_at:
            self.ended_at = time.time()
        return done

    @property
    def accepted_count(self) -> int:
        return len(self.accepted)

    def _send(self, sender: str, count: int, rate: float) -> None:
        try:
            self._send_all(sender, count, rate)
        except Exception as exc:  # reported in the figures, not lost with the thread
            self.tally.crashed(f"sender {sender}", exc)

    def _send_all(self, sender: str, count: int, rate: float) -> None:
        session = requests.Session()
        next_at = time.monotonic()
        for start in range(0, count, self.per_request):
            if self._stop.is_set():
                return
            pairs = [
                chaos_event(sender, seq)
                for seq in range(start, min(start + self.per_request, count))
            ]
            body = orjson.dumps([event for event, _ in pairs])
            if self._post_until_accepted(session, body, len(pairs)):
                with self._lock:
                    self.accepted.update((e["correlation_id"], fwd) for e, fwd in pairs)
            next_at += len(pairs) / rate
            self._stop.wait(max(next_at - time.monotonic(), 0))
        session.close()

    def _post_until_accepted(self, session: requests.Session, body: bytes, count: int) -> bool:
        while not self._stop.is_set():
            sent = time.time()
            try:
                response = session.post(
                    self.url, data=body, headers={"Content-Type": "application/json"}, timeout=30
                )
            except requests.RequestException:  # refused, cut off or timed out
                self.tally.connection_error()
                session.close()  # the pooled connection is dead; open a new one
                self._stop.wait(0.2)
                continue
            self.tally.answer(response.status_code, response.text, sent)
            if response.status_code in (200, 202):
                answer = response.json()
                if answer.get("accepted") != count or answer.get("rejected"):
                    self.tally.answer(-1, f"partly accepted: {response.text[:300]}")
                return True
            if response.status_code == 503:
                wait = float(response.headers.get("Retry-After", "1"))
                self._stop.wait(min(wait, self.max_wait))
                continue
            # Anything else is a failure of the run (counted); the events are sent again, so a
            # 500 shows as a failure, not also as a loss.
            self._stop.wait(0.2)
        return False
