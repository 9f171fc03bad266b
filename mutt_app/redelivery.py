"""A dead worker's messages handed out again in seconds, a live worker's never.

The Redis transport emulates acknowledgements: a delivered message stays in the ``unacked`` hash,
scored in ``unacked_index`` by when it was delivered, until the worker acks it; every worker scans the
index (``restore_visible``) and puts back on its queue any message older than the visibility timeout.
That timeout cannot tell a dead worker from a live one that still holds the message: a countdown
(a retry, a rate-limit wait) or a long task. So it is usually set to the longest such wait, and a
worker that dies as a whole (SIGKILL of the parent, a host gone) has its batches wait that long.

The seeds answer with a heartbeat per worker and a janitor. This is the same idea on kombu's own
machinery: :class:`LeaseRenewal`, a consumer bootstep, re-scores every message its worker holds
(delivered and not yet acked) to *now*, every :func:`renew_interval` seconds. A held message is then
never older than a few seconds, whatever it waits for, and the visibility timeout becomes a lease:
how long a worker may go without renewing before its messages are taken as a dead worker's.
kombu's restore scan, run by every worker every BROKER_RESTORE_INTERVAL, hands them out again, at
the head of their queue.

The duplicate bound this costs is the one a kill always had: the dead worker's in-flight batches run
again (classify's audit is idempotent on correlation_id; forward posts again at most one batch per
thread, the alerts it had posted but not recorded as sent; the copy handed out again takes over
those alerts' in-flight claims, which name its task, rather than waiting for them to expire:
mutt_app.tasks.forward.deliver). A live worker that cannot renew for a
whole lease (Redis unreachable that long) cannot ack either, so its messages come back as they would
have without leases; it stops working on them (``worker_cancel_long_running_tasks_on_connection_loss``).

A solo-pool worker (the classify worker's shipped shape) runs each task in its event loop's own
thread, so the loop's timer does not fire while a task runs. :class:`TaskInLoop` notes that a task
is running, and a thread of :class:`LeaseRenewal` renews the leases meanwhile: as a prefork parent
does while its children work, so a live solo worker's long task (a maintenance job) is never taken
for a dead worker's. An idle loop that stops ticking renews nothing, as a wedged parent would not.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps
from celery.concurrency.solo import TaskPool as SoloPool
from celery.signals import task_postrun, task_prerun
from redis.exceptions import RedisError

from mutt_app import metrics
from mutt_app.names import CLASSIFY_QUEUE, FORWARD_QUEUES

log = logging.getLogger(__name__)

__all__ = [
    "TASK_IN_LOOP",
    "LeaseRenewal",
    "TaskInLoop",
    "held_queues",
    "held_tags",
    "renew",
    "renew_interval",
    "runs_tasks_in_loop",
]

# Renewals per lease: one or two missed renewals (a slow Redis answer, a busy event loop) must not
# let a live worker's messages pass for a dead one's.
RENEWALS_PER_LEASE = 5


def renew_interval(visibility_timeout: float) -> float:
    """Seconds between renewals for a lease of ``visibility_timeout`` seconds."""
    return max(0.5, visibility_timeout / RENEWALS_PER_LEASE)


def held_tags(channel: Any) -> list[str]:
    """The delivery tags ``channel``'s worker holds: delivered, and not yet acked."""
    qos = channel.qos
    # The event loop that fills these runs in this thread (the timer is the hub's); a copy still
    # guards a pool whose timer runs in a thread of its own.
    for _ in range(3):
        try:
            return [tag for tag in list(qos._delivered) if tag not in qos._dirty]
        except RuntimeError:  # changed size during iteration
            continue
    return []


def held_queues(channel: Any, tags: list[str]) -> list[str]:
    """The queue of each held message of ``tags`` (its routing key: each queue is routed by its
    own name, celeryconfig.task_queues); a tag acked meanwhile is left out."""
    delivered = channel.qos._delivered
    queues = []
    for tag in tags:
        message = delivered.get(tag)
        if message is not None:
            queues.append(str(message.delivery_info.get("routing_key", "")))
    return queues


def record_held(channel: Any, tags: list[str]) -> None:
    """Set the processing-list gauges: the classify and forward messages this worker holds."""
    queues = held_queues(channel, tags)
    metrics.ALERTER_PROCESSING_DEPTH.set(queues.count(CLASSIFY_QUEUE))
    metrics.MOOG_PROCESSING_DEPTH.set(sum(queues.count(q) for q in FORWARD_QUEUES))


def renew(channel: Any, now: float | None = None) -> int:
    """Score every message ``channel``'s worker holds at ``now``; the number renewed.

    ``XX``: a tag no longer in the index was acked or restored meanwhile, and must not come back.
    """
    tags = held_tags(channel)
    record_held(channel, tags)  # in memory: the renewal's cadence keeps the gauges a lease fresh
    if not tags:
        return 0
    stamp = time.time() if now is None else now
    with channel.conn_or_acquire() as client:
        return int(
            client.zadd(channel.unacked_index_key, dict.fromkeys(tags, stamp), xx=True, ch=True)
        )


def runs_tasks_in_loop(consumer: Any) -> bool:
    """Whether ``consumer``'s worker runs its tasks in the event loop's thread (the solo pool)."""
    return isinstance(getattr(consumer, "pool", None), SoloPool)


class TaskInLoop:
    """Since when the task that blocks this process's event loop runs (solo pool), or None."""

    def __init__(self) -> None:
        self.since: float | None = None
        self._watching = False

    def watch(self) -> TaskInLoop:
        """Follow this process's tasks from now on (once; a solo worker runs one at a time)."""
        if not self._watching:
            self._watching = True
            task_prerun.connect(self._started, weak=False)
            task_postrun.connect(self._ended, weak=False)
        return self

    def _started(self, **_: object) -> None:
        self.since = time.monotonic()

    def _ended(self, **_: object) -> None:
        self.since = None

    @property
    def running(self) -> bool:
        """Whether a task runs now."""
        return self.since is not None


# One per process: the solo pool runs its tasks in the main thread, one at a time.
TASK_IN_LOOP = TaskInLoop()


class LeaseRenewal(bootsteps.StartStopStep):
    """Consumer bootstep: renews the lease of every message this worker holds (module docstring)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.tref: Any = None
        self._thread_stop: threading.Event | None = None  # stops the solo pool's renewal thread

    def start(self, parent: Any) -> None:
        channel = getattr(parent.task_consumer, "channel", None)
        if not hasattr(channel, "unacked_index_key"):
            return  # not the Redis transport: its broker acknowledges for itself
        options = parent.app.conf.broker_transport_options or {}
        interval = renew_interval(float(options.get("visibility_timeout", 3600)))
        self.tref = parent.timer.call_repeatedly(interval, self._renew, (channel,), priority=10)
        if runs_tasks_in_loop(parent):
            # The timer is silent while a task runs in the loop's thread: renew from another.
            stop = self._thread_stop = threading.Event()
            tasks = TASK_IN_LOOP.watch()
            threading.Thread(
                target=self._renew_during_tasks,
                args=(channel, interval, tasks, stop),
                name="mutt-lease-renewal",
                daemon=True,
            ).start()

    def _renew_during_tasks(
        self, channel: Any, interval: float, tasks: TaskInLoop, stop: threading.Event
    ) -> None:
        while not stop.wait(interval):
            if tasks.running:
                self._renew(channel)

    def _renew(self, channel: Any) -> None:
        try:
            renew(channel)
        except RedisError as exc:
            # Not fatal: the next renewal tries again; a lease missed as a whole hands the messages
            # back, which the worker's own reconnect also does.
            metrics.BROKER_LEASE_RENEWAL_FAILURES.inc()
            log.warning("could not renew the broker lease of held messages: %s", exc)

    def stop(self, parent: Any) -> None:
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        if self._thread_stop is not None:
            self._thread_stop.set()
            self._thread_stop = None

    shutdown = stop
