"""Publishing accepted events: the requests of one ingest process share ledger writes and tasks.

A request's events must be in the ledger and on the broker before its 200 goes out. Done per request,
a single-event request pays a ledger write, a task message and (on the worker) a whole task for one
event. Instead each request hands its events to the process's :class:`BatchPublisher` and waits; one
publishing thread takes everything handed in since its last round, records it in the ledger in one
transaction and publishes it as classify tasks of up to CLASSIFY_BATCH_SIZE events in one Redis
pipeline, then wakes the requests (group commit). A round that would not fill a batch waits up to
INGEST_LINGER_MS after its first request for more, as Kafka's producers do with ``linger.ms``: a few
little more wait per request turns a stream of single-event requests into tasks of many events, which
share a classify task's fixed cost (BENCHMARKS.md). Under ingest's gevent worker
(deploy/gunicorn/ingest.conf.py, ``mutt run``) the requests and the publishing thread are greenlets
of one OS thread: gevent patches ``threading`` before the app is loaded, so the same locks hand off
between them, and a request waiting for its round costs a greenlet, not a thread.

Traced (:mod:`mutt_app.tracing`), a round is a span ``mutt.ingest.publish`` whose parent is the
first of its requests' spans and which links the others: the classify tasks it publishes carry it
on, so the trace a sender's ``traceparent`` started reaches its events' tasks, and the requests
whose events shared the round are one link away.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from _thread import LockType
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanContext, StatusCode

from mutt_app import metrics, tracing
from mutt_app.ledger import Batch

log = logging.getLogger(__name__)

# An accepted event as the ledger and the task carry it: its wire dict, or (from the ingest
# endpoint) that dict's JSON already written and checked, as an orjson.Fragment. Anything that
# could fail to be written is refused before it is submitted, so a round fails only for reasons
# shared by all its requests (the queue is full, Redis is down).
Wire = Any


class QueueFull(Exception):
    """The classify queue holds more than MAX_INGEST_QUEUE_SIZE messages: accept nothing now."""


class PublishTimeout(Exception):
    """The publishing thread did not answer in time (Redis hangs); the client should retry."""


def _held_lock() -> LockType:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Submission:
    """One request's events, waiting to be published."""

    events: Sequence[Wire]
    arrived: float = field(default_factory=time.monotonic)
    # The request's span (made in the request's thread): the round, in the publishing thread,
    # is its child or links to it.
    origin: SpanContext = field(default_factory=tracing.origin)
    # Held until the round is over; the publishing thread releases it to wake the request. A bare
    # lock is the cheapest hand-off there is: a threading.Event builds a Condition per request and
    # a waiter lock per wait, and each request pays for them.
    done: LockType = field(default_factory=_held_lock)
    error: BaseException | None = None
    told: bool = False

    def finished(self) -> bool:
        """Whether the request was told its outcome."""
        return self.told

    def finish(self, error: BaseException | None) -> None:
        """Tell the request its outcome (once)."""
        self.error = error
        self.told = True
        self.done.release()


def plan_batches(submissions: Sequence[Sequence[Wire]], size: int) -> list[Batch]:
    """The submissions' events, in order, cut into batches of at most ``size`` events."""
    events = [event for submission in submissions for event in submission]
    return [Batch(uuid.uuid4().hex, events[i : i + size]) for i in range(0, len(events), size)]


class BatchPublisher:
    """Publishes the events handed in by concurrent requests together, from one thread.

    ``depth`` reads the classify queue's length and ``max_queue`` the cap it must not pass (a
    runtime setting); ``record``, ``forget`` and ``send`` are the ledger's
    and the broker's operations (``send`` publishes a list of batches, one classify task each, as
    one pipeline); ``replicated`` returns once the round's writes are on enough replicas or raises
    (:mod:`mutt_app.web.ingest.replication`); ``published`` is told how many requests each successful round published, before
    they are answered (the SLO counters count them in one write per round).
    """

    def __init__(
        self,
        *,
        depth: Callable[[], int],
        record: Callable[[list[Batch]], None],
        forget: Callable[[list[str]], None],
        send: Callable[[list[Batch]], None],
        published: Callable[[int], object] = lambda requests: None,
        replicated: Callable[[], object] = lambda: None,
        batch_size: int,
        max_queue: Callable[[], int],
        linger_seconds: float = 0.0,
        wait_seconds: float = 30.0,
    ) -> None:
        self._depth = depth
        self._record = record
        self._forget = forget
        self._send = send
        self._published = published
        self._replicated = replicated
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._linger_seconds = linger_seconds
        self._wait_seconds = wait_seconds
        self._pending: list[_Submission] = []
        self._pending_events = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def submit(self, events: Sequence[Wire]) -> None:
        """Return once ``events`` are in the ledger and on the broker; raise why not otherwise.

        Raises :class:`QueueFull`, :class:`PublishTimeout`, or the ledger's or broker's error.
        """
        submission = _Submission(events)
        with self._wake:
            self._ensure_thread()
            self._pending.append(submission)
            self._pending_events += len(events)
            # The publishing thread waits for a first submission, then lingers until a batch is
            # full (or the linger is over): only those two moments need it awake. Waking it for
            # every request in between would cost each request a thread switch for nothing.
            if len(self._pending) == 1 or self._pending_events >= self._batch_size:
                self._wake.notify()
        if not submission.done.acquire(timeout=self._wait_seconds):
            raise PublishTimeout(f"not published within {self._wait_seconds:g} s")
        if submission.error is not None:
            raise submission.error

    def _ensure_thread(self) -> None:
        # Gunicorn forks its workers after the app is built: each process needs its own thread.
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._pending = [s for s in self._pending if not s.finished()]
        self._pending_events = sum(len(s.events) for s in self._pending)
        self._thread = threading.Thread(target=self._run, name="mutt-publisher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            taken = self._take()
            try:
                _finish(taken, self._traced_round(taken))
            except BaseException as exc:  # never leave a request waiting on a dead thread
                log.exception("publishing thread failed")
                for submission in taken:
                    if not submission.finished():
                        submission.finish(exc)

    def _take(self) -> list[_Submission]:
        """Wait for submissions, linger for a fuller batch, and take all that are waiting."""
        with self._wake:
            while not self._pending:
                self._wake.wait()
            deadline = self._pending[0].arrived + self._linger_seconds
            while self._pending_events < self._batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
            taken, self._pending, self._pending_events = self._pending, [], 0
        return taken

    def _traced_round(self, taken: Sequence[_Submission]) -> BaseException | None:
        """:meth:`_publish_round` in the round's span (module docstring)."""
        following = tracing.following([s.origin for s in taken])
        with tracing.tracer.start_as_current_span("mutt.ingest.publish", **following) as span:
            error = self._publish_round(taken)
            if span.is_recording():
                span.set_attributes(
                    {
                        "mutt.requests": len(taken),
                        "mutt.events": sum(len(s.events) for s in taken),
                    }
                )
                if error is not None:
                    span.set_status(StatusCode.ERROR, type(error).__name__)
            return error

    def _publish_round(self, taken: Sequence[_Submission]) -> BaseException | None:
        """Publish the events of ``taken`` together; None, or why none of them was published."""
        try:
            if self._depth() > self._max_queue():
                return QueueFull()
            batches = plan_batches([s.events for s in taken], self._batch_size)
            if (span := tracing.recording()) is not None:
                span.set_attribute("mutt.batch_ids", [b.batch_id for b in batches])
            self._record(batches)
        except Exception as exc:
            return exc
        metrics.INGEST_PUBLISH_ROUND.observe(len(taken))
        try:
            self._send(batches)
        except Exception as exc:
            # Delivery of a pipelined round is uncertain: tell every request to resend and drop the
            # round from the ledger. A batch that did arrive is still audited (once: its events
            # keep their correlation_ids), and the resend adds copies with new ones unless the
            # sender set its own.
            self._forget([b.batch_id for b in batches])
            return exc
        try:
            self._replicated()
        except Exception as exc:
            # The round is on the master, in the ledger and on the broker, and stays there: the
            # workers audit it unless the master is lost first. The requests are told to resend;
            # a resent event with the same correlation_id is audited once.
            return exc
        self._published(len(taken))
        return None


def _finish(taken: Sequence[_Submission], error: BaseException | None) -> None:
    for submission in taken:
        submission.finish(error)
