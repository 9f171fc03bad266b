"""classify_event: the Celery task around one classify batch (:mod:`mutt_app.classify.batch`).

The task adapts Celery: the ledger's attempts (a batch lost with its worker too often is
dead-lettered), retries with a countdown while the database or Redis is away, dead-lettering a
batch that failed for any other reason, and settling the batch in the ledger.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as BrokerError
from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from mutt_app import metrics, tracing
from mutt_app.classify.batch import classify_batch
from mutt_app.db.engine import database_unavailable
from mutt_app.forwarding.deadletters import add_dead_letter, add_replay_failures, replayed_letter
from mutt_app.logs import correlation, log_context
from mutt_app.names import CLASSIFY_QUEUE as QUEUE
from mutt_app.names import CLASSIFY_TASK as TASK_NAME
from mutt_app.runtime import Runtime, RuntimeTask

log = logging.getLogger(__name__)

__all__ = ["QUEUE", "TASK_NAME", "classify_event"]

# Waits before retrying a batch whose database or Redis was unreachable; all well under the
# broker's visibility timeout (a waiting retry is an unacked message). Retries go on without limit
# at the last wait: a PostgreSQL promotion takes seconds to a minute, and an outage that lasts
# longer must still not turn accepted events into dead letters.
INFRA_RETRY_DELAYS = (1, 2, 5, 10, 20, 30)


@shared_task(
    bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, max_retries=None
)
def classify_event(
    self: RuntimeTask, events: list[dict[str, Any]], batch_id: str, replays: int = 0
) -> dict[str, int]:
    """Classify a batch of accepted events (``Event.to_wire`` dicts) and audit them.

    ``replays`` counts remediation replays of these events, carried into any new dead letter.
    """
    ids = [e.get("correlation_id") for e in events if isinstance(e, dict)]
    # The task's span is the Celery instrumentation's (run/mutt.classify_event), when traced.
    if (span := tracing.recording()) is not None:
        span.set_attributes(
            {
                "mutt.batch_id": batch_id,
                "mutt.events": len(events),
                "mutt.correlation_ids": [str(i) for i in ids],
            }
        )
    with log_context(batch_id=batch_id, **correlation(ids)):
        outcome = _classify_event(self, events, batch_id, replays)
        log.info("batch %s: %s", batch_id, outcome)
        if span is not None:
            span.set_attributes({f"mutt.{key}": n for key, n in outcome.items()})
        return outcome


def _classify_event(
    self: RuntimeTask, events: list[dict[str, Any]], batch_id: str, replays: int
) -> dict[str, int]:
    runtime = self.runtime
    attempt = runtime.ledger.start_attempt(batch_id)
    if attempt > runtime.settings.alerter_max_retries:
        # Every earlier attempt died mid-run (worker lost): stop feeding this batch to workers.
        return _dead_letter_batch(runtime, events, batch_id, attempt, replays)
    # Writes that go with the batch's settle (or its reset_attempts), whichever way the run ends:
    # the hosts' last-seen times, in the same round trip.
    pending = runtime.redis.pipeline(transaction=True)
    try:
        outcome = classify_batch(
            runtime, self.app, events, replays, replayed_letter(batch_id), settle_with=pending
        )
    except Exception as exc:
        cause = _outage(exc)
        if cause is None:
            # Not an event's fault (those are isolated inside) and not an outage: a bug or a
            # surprise. Dead-letter the batch durably now; the task would otherwise be acked as
            # failed.
            log.exception("batch %s failed; dead-lettering its %d events", batch_id, len(events))
            return _dead_letter_batch(
                runtime, events, batch_id, attempt, replays, error=exc, along=pending
            )
        # The database or Redis is away (down, failing over, read-only): the transaction was
        # rolled back, so run the whole batch again later. Not a worker loss, so the attempt is
        # not counted against the batch; the idempotent audit insert and the forwards' sent keys
        # make the second run harmless.
        runtime.ledger.reset_attempts(batch_id, along=pending)
        delay = INFRA_RETRY_DELAYS[min(self.request.retries, len(INFRA_RETRY_DELAYS) - 1)]
        metrics.CLASSIFY_OUTAGE_RETRIES.labels(cause).inc()
        log.warning(
            "batch %s: %s unavailable (%s: %s); retrying in %ss",
            batch_id,
            cause,
            type(exc).__name__,
            # libpq reports every server of a multi-host URL on a line of its own.
            " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:500],
            delay,
        )
        raise self.retry(exc=exc, countdown=delay) from exc
    runtime.ledger.settle([batch_id], along=pending)
    return outcome


def _outage(exc: BaseException) -> str | None:
    """Which store ``exc`` says is unavailable ("database" or "redis"), or None for other errors."""
    if database_unavailable(exc):
        return "database"
    if isinstance(exc, RedisConnectionError | RedisTimeout | BrokerError | BatchPublishError):
        return "redis"
    return None


def _dead_letter_batch(
    runtime: Runtime,
    events: list[dict[str, Any]],
    batch_id: str,
    attempt: int,
    replays: int,
    error: Exception | None = None,
    along: Pipeline | None = None,
) -> dict[str, int]:
    """Dead-letter every event of a batch, one item each, and settle the batch (``along`` with
    it: what the failed run queued to go with its settle)."""
    message: Exception | str = (
        error or f"batch {batch_id} was lost with its worker {attempt - 1} times"
    )
    reason = "task_error" if error else "worker_lost"
    replay_of = replayed_letter(batch_id)
    with runtime.sessions.begin() as session:
        if replay_of is not None:
            # A replay that fails again keeps one dead letter (mutt_app.classify.batch).
            add_replay_failures(
                session,
                letter_id=replay_of,
                wires=events,
                errors=[str(message)[:1000]] * len(events),
                error_type=type(error).__name__ if error else "WorkerLost",
                backoff_base=runtime.settings.remediation_backoff_base,
                replays=replays,
            )
        for wire in events if replay_of is None else ():
            # One dead letter per event, so replaying them isolates the one that kills workers.
            add_dead_letter(
                session,
                task_name=TASK_NAME,
                queue=QUEUE,
                payload={"events": [wire]},
                error=message,
                error_type=None if error else "WorkerLost",
                backoff_base=runtime.settings.remediation_backoff_base,
                attempts=attempt if error else attempt - 1,
                replays=replays,
                correlation_id=wire.get("correlation_id") if isinstance(wire, dict) else None,
            )
    runtime.ledger.settle([batch_id], along=along)
    metrics.DEAD_LETTERED.labels(TASK_NAME, reason).inc(len(events) if replay_of is None else 1)
    log.error("%s; its %d events are in the dead-letter queue", message, len(events))
    return {"audited": 0, "duplicates": 0, "dead_lettered": len(events)}
