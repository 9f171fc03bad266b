"""forward_to_moog: deliver a batch of alerts to Moog in one request, at least once and in practice once.

One task carries up to ``moog_batch_size`` alerts of one lane (classify groups them,
:func:`mutt_app.holdback.pipeline.publish_forwards`), and Moog gets them as one request in MOOG_FORMAT
(:func:`mutt_app.forwarding.moog.request_body`). Every guarantee stays per alert:

- an idempotency key per alert (its external_id, the event's correlation_id): an alert already
  delivered is dropped from the batch, and an alert another copy is posting right now (its in-flight
  key) waits for it; only the alerts this task claimed go in the request;
- one outbox entry per alert (:mod:`mutt_app.ledger`), settled when that alert is delivered or
  dead-lettered, touched while it waits;
- a dead letter per alert that cannot pass. A batch refused with a permanent 4xx is split in halves
  and each half sent again (no attempt used): the alerts Moog takes go through, and each one it
  refuses alone is dead-lettered alone. A 2xx counts only as far as its body says
  (:mod:`mutt_app.forwarding.request`): the events it reports failed are refused (and split the same
  way), a body that cannot be read takes none (dead-lettered), and a 3xx is never followed
  (dead-lettered with its status and ``Location``);
- a delivery history per alert (:mod:`mutt_app.forwarding.history`): each request it went in, with
  the status or error and the task.

Around the request, shared by every worker in Redis: a circuit breaker (while Moog is failing no
request reaches it), and the cluster-wide rate limit, which counts **requests**, not events: a batch
is one request, as Moog's API sees it (MOOG_RATE_LIMIT requests per MOOG_RATE_PERIOD), with a share
reserved for pages (:mod:`mutt_app.forwarding.lanes`). A batch is one lane, so a batch of pages takes a page slot.

Retries. A batch that must wait (rate limit, open circuit, copies in flight) or that failed in a way
that may pass (5xx, 408, 429, timeouts, connection errors) goes on as a new task with a countdown,
on its lane; no worker sleeps. Waiting does not use up an attempt and failing does, and one task may
end in several fates (some alerts delivered, some waiting for a copy, a refused batch split), so
these successors are published explicitly (``apply_async`` with the attempt count in the kwargs)
rather than with Celery's ``autoretry_for``, which retries the whole task with one counter. The
backoff is Celery's own (``get_exponential_backoff_interval``, as ``retry_backoff`` computes it) with
jitter. ``autoretry_for`` with ``retry_backoff`` and ``retry_jitter`` does fit the one case where
the whole task is retried as is: Redis unreachable before anything was decided.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from mutt_app import metrics, tracing
from mutt_app.forwarding import admission, lanes
from mutt_app.forwarding import history as delivery_history
from mutt_app.forwarding.breaker import CIRCUIT_STATES, CircuitBreaker
from mutt_app.forwarding.deadletters import add_dead_letter, add_poison
from mutt_app.forwarding.limiter import RateLimiter
from mutt_app.forwarding.request import Failure, jitter, post
from mutt_app.logs import correlation, log_context
from mutt_app.names import FORWARD_TASK as TASK_NAME
from mutt_app.runtime import Runtime, RuntimeTask
from mutt_app.watch import slo

log = logging.getLogger(__name__)

SENT_PREFIX = delivery_history.SENT_PREFIX
INFLIGHT_PREFIX = "mutt:moog:inflight"
SENT_TTL_SECONDS = 7 * 86_400
# The dead-letter metric's reason for each way a batch fails; a retryable failure ends here only
# once its attempts are used up.
DEAD_LETTER_REASONS = {
    "rejected": "rejected",
    "redirected": "redirected",
    "unreadable": "unreadable_answer",
}
# How long a copy waits for another copy that holds an alert's in-flight key.
INFLIGHT_WAIT = 2.0
# The longest a deferral (a retry, a rate-limit wait, an open circuit) waits as one countdown: the
# worker holds the message in memory meanwhile (its lease renewed, mutt_app.redelivery), and a
# longer wait is decided again then, so a changed limit or a recovered Moog applies within it.
LONGEST_COUNTDOWN_SECONDS = 150.0


@shared_task(
    bind=True,
    name=TASK_NAME,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    # Redis unreachable (a restart) before anything was decided: retry the whole task, Celery's
    # exponential backoff with jitter. Its outbox entries cover a retry that cannot be published.
    autoretry_for=(RedisConnectionError, RedisTimeout),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    retry_kwargs={"max_retries": 10},
)
def forward_to_moog(
    self: RuntimeTask,
    alerts: list[dict[str, Any]] | dict[str, Any],
    attempts: int = 0,
    first_failed_at: str | None = None,
    replays: int = 0,
) -> dict[str, int]:
    """POST ``alerts`` (Moog event payloads of one lane) to MOOG_WEBHOOK_URL in one request.

    ``alerts`` may be one alert (a dict: a dead-letter replay, or a message published before
    batching). ``attempts`` counts failed posts of these alerts so far; ``replays`` counts
    remediation replays, carried into a dead letter.
    """
    batch: list[Any] = [alerts] if isinstance(alerts, dict) else list(alerts)
    # The task's span is the Celery instrumentation's (run/mutt.forward_to_moog), when traced; the
    # Moog request is a span of requests' instrumentation under it.
    if (span := tracing.recording()) is not None:
        span.set_attributes(
            {
                "mutt.alerts": len(batch),
                "mutt.attempts": attempts,
                "mutt.correlation_ids": [outbox_key(a) for a in batch if isinstance(a, dict)],
            }
        )
    with log_context(**correlation([outbox_key(a) for a in batch if isinstance(a, dict)])):
        admitted = _admitted(self.runtime, batch, attempts, first_failed_at, replays)
        counts = _forward(self, admitted, attempts, first_failed_at, replays)
    if span is not None:
        span.set_attributes({f"mutt.{key}": n for key, n in counts.items()})
    return counts


def _admitted(
    runtime: Runtime,
    alerts: list[Any],
    attempts: int,
    first_failed_at: str | None,
    replays: int,
) -> list[dict[str, Any]]:
    """The alerts fit to forward; the others go to the poison store with the reason, at once.

    Checked before anything else (:mod:`mutt_app.forwarding.admission`): an alert without an
    idempotency key would pass for a duplicate of every other such alert, and retrying a malformed
    or oversize one would only fail again.
    """
    limit = runtime.settings.moog_max_alert_bytes
    fit: list[dict[str, Any]] = []
    refused: list[tuple[Any, str, str]] = []
    for alert in alerts:
        found = admission.problem(alert, limit)
        if found is None:
            fit.append(alert)
        else:
            refused.append((alert, *found))
    if not refused:
        return fit
    first = datetime.fromisoformat(first_failed_at) if first_failed_at else None
    with runtime.sessions.begin() as session:
        for alert, error_type, reason in refused:
            external_id = alert.get("external_id") if isinstance(alert, dict) else None
            add_poison(
                session,
                task_name=TASK_NAME,
                queue=lanes.queue_for(alert) if isinstance(alert, dict) else lanes.TICKET_QUEUE,
                payload={"alert": alert},
                error_type=error_type,
                reason=reason,
                attempts=attempts,
                replays=replays,
                correlation_id=external_id if isinstance(external_id, str) else None,
                first_failed_at=first,
            )
    # Settled under the key they were recorded with (a keyless alert's was "None"), so that
    # reconciling the outbox does not publish them again.
    runtime.outbox.settle([outbox_key(alert) for alert, _, _ in refused if isinstance(alert, dict)])
    metrics.MOOG_ALERTS.labels("poisoned").inc(len(refused))
    for alert, error_type, reason in refused:
        log.error(
            "alert %s not forwarded, moved to poison (%s): %s",
            admission.idempotency_key(alert),
            error_type,
            reason,
        )
    return fit


def _forward(
    self: RuntimeTask,
    alerts: list[dict[str, Any]],
    attempts: int,
    first_failed_at: str | None,
    replays: int,
) -> dict[str, int]:
    runtime = self.runtime
    if not alerts:
        return {}
    result = deliver(runtime, alerts, attempts, task_id=self.request.id or "")
    settled = result.delivered + result.duplicate
    counts = {"delivered": len(result.delivered), "duplicate": len(result.duplicate)}

    if result.deferred:
        _again(
            self,
            runtime,
            result.deferred,
            min(result.defer_wait, LONGEST_COUNTDOWN_SECONDS),
            attempts,
            first_failed_at,
            replays,
        )
        counts["deferred"] = len(result.deferred)

    failure = result.failure
    if failure is not None and failure.alerts:
        first_failed_at = first_failed_at or datetime.now(UTC).isoformat()
        if failure.status == "rejected" and len(failure.alerts) > 1:
            # Moog refused the request whole; find the alerts it refuses by halving the batch.
            half = len(failure.alerts) // 2
            for part in (failure.alerts[:half], failure.alerts[half:]):
                _again(self, runtime, part, 0, attempts, first_failed_at, replays)
            counts["split"] = len(failure.alerts)
        elif failure.status == "retry" and retries_left(runtime.settings, attempts):
            metrics.MOOG_RETRIES.labels(failure.error_type or "error").inc()
            _again(
                self, runtime, failure.alerts, failure.wait, attempts + 1, first_failed_at, replays
            )
            counts["retry"] = len(failure.alerts)
        else:
            if failure.status == "retry":
                failure.error = f"gave up after {attempts + 1} attempts: {failure.error}"
            _dead_letter(
                runtime, self.request.id or "", failure, attempts + 1, first_failed_at, replays
            )
            settled += failure.alerts
            counts["dead_lettered"] = len(failure.alerts)
    runtime.outbox.settle([outbox_key(a) for a in settled])
    # The delivered ids in one line per batch: "was it sent, by which worker" from the logs too.
    delivered = " ".join(outbox_key(a) for a in result.delivered)
    log.info("batch of %d alerts: %s; delivered: %s", len(alerts), counts, delivered or "none")
    return counts


def _again(
    self: RuntimeTask,
    runtime: Runtime,
    alerts: list[dict[str, Any]],
    countdown: float,
    attempts: int,
    first_failed_at: str | None,
    replays: int,
) -> None:
    """Publish ``alerts`` as a new task on their lane after ``countdown`` seconds.

    The lane is named, not left to Celery (which republishes to the queue the message came from):
    an alert that arrived on the wrong lane (published before lanes existed) moves to its own.
    """
    runtime.outbox.touch([outbox_key(a) for a in alerts])  # alive: not overdue while it waits
    self.apply_async(
        args=[alerts],
        kwargs={"attempts": attempts, "first_failed_at": first_failed_at, "replays": replays},
        countdown=countdown or None,
        queue=lanes.queue_for(alerts[0]),
        argsrepr=f"({len(alerts)} alerts)",
    )


def retries_left(settings: Any, attempts: int) -> bool:
    """Whether a batch whose post failed for the ``attempts + 1``-th time is tried again."""
    return attempts + 1 <= settings.moog_max_retries


def outbox_key(alert: dict[str, Any]) -> str:
    """The alert's idempotency key: its external_id (the event's correlation_id)."""
    return str(alert.get("external_id") or alert.get("signature"))


@dataclass
class Delivery:
    """What one attempt at a batch came to, alert by alert."""

    delivered: list[dict[str, Any]] = field(default_factory=list)
    duplicate: list[dict[str, Any]] = field(default_factory=list)
    deferred: list[dict[str, Any]] = field(default_factory=list)
    defer_wait: float = 0.0
    failure: Failure | None = None

    def status_of(self, alert: dict[str, Any]) -> str:
        """delivered | duplicate | deferred | retry | rejected, for one alert of the batch."""
        key = outbox_key(alert)
        for name in ("delivered", "duplicate", "deferred"):
            if any(outbox_key(a) == key for a in getattr(self, name)):
                return name
        if self.failure is not None and any(outbox_key(a) == key for a in self.failure.alerts):
            return self.failure.status
        raise KeyError(key)


def deliver(
    runtime: Runtime, alerts: list[dict[str, Any]], attempts: int, task_id: str = ""
) -> Delivery:
    """One attempt at delivering ``alerts`` (one lane): checks, one request, its classification."""
    settings = runtime.settings
    config = runtime.dynamic_config
    client = runtime.redis
    result = Delivery()
    keys = [outbox_key(a) for a in alerts]
    check = client.pipeline(transaction=False)
    for key in keys:
        check.exists(f"{SENT_PREFIX}:{key}")
    pending = []
    for alert, sent in zip(alerts, check.execute(), strict=True):
        (result.duplicate if sent else pending).append(alert)
    if result.duplicate:
        metrics.MOOG_ALERTS.labels("duplicate").inc(len(result.duplicate))
    if not pending:
        return result

    threshold = config.get("moog_circuit_breaker_threshold")
    open_seconds = config.get("moog_circuit_breaker_timeout")
    breaker = CircuitBreaker(client)
    allowed, wait = breaker.allow(threshold, open_seconds)
    if not allowed:
        metrics.MOOG_CIRCUIT_STATE.set(CIRCUIT_STATES["OPEN"])
        return _defer(result, pending, jitter(wait, 0.1) + 0.05)

    limiter = RateLimiter(client, settings.moog_rate_limit_key)
    slot = uuid.uuid4().hex
    limit = config.get("moog_rate_limit")
    wait = limiter.acquire(
        limit,
        config.get("moog_rate_period"),
        slot,
        flight=settings.moog_webhook_timeout + 1,
        longest_wait=LONGEST_COUNTDOWN_SECONDS,
        reserved=lanes.reserved_slots(limit, config.get("moog_page_reserved_share")),
        page=lanes.is_page(pending[0]),  # a batch is one lane
    )
    if wait > 0:
        metrics.MOOG_RATE_LIMIT_HITS.inc()
        breaker.release_probe()
        return _defer(result, pending, wait + random.uniform(0, 0.05))

    # Two copies of one alert (a redelivery racing its original) must not both post. The sent key
    # is read again after claiming the in-flight key: a copy that finished between the first read
    # and the claim has set it (its answer sets sent before it drops in-flight), so the second read
    # sees it. Without it, copies racing a finishing original posted again.
    # The claim names its task: a claim held in this task's own name was made by an earlier
    # delivery of this very message, which the broker handed out again because that delivery's
    # worker stopped renewing its lease (mutt_app.redelivery): it died mid-post. That claim is
    # taken over, or the alert would wait for it to expire.
    holder = task_id or uuid.uuid4().hex
    claim_ttl = int(settings.moog_webhook_timeout) + 30
    claim = client.pipeline(transaction=False)
    for key in (outbox_key(a) for a in pending):
        claim.set(f"{INFLIGHT_PREFIX}:{key}", holder, nx=True, ex=claim_ttl)
        claim.get(f"{INFLIGHT_PREFIX}:{key}")
        claim.exists(f"{SENT_PREFIX}:{key}")
    answers = claim.execute()
    claimed, busy, release, raced, orphaned = [], [], [], [], []
    for index, alert in enumerate(pending):
        got, held_by, sent = answers[3 * index : 3 * index + 3]
        if sent:
            raced.append(alert)
            if got:
                release.append(f"{INFLIGHT_PREFIX}:{outbox_key(alert)}")
        elif got:
            claimed.append(alert)
        elif held_by in (holder, holder.encode()):
            orphaned.append(alert)
        else:
            busy.append(alert)  # another copy is posting it: wait for its answer
    if release:
        client.delete(*release)
    if orphaned:
        # The dead delivery may have posted them: Moog may see them twice (the duplicate bound).
        refresh = client.pipeline(transaction=False)
        for alert in orphaned:
            refresh.expire(f"{INFLIGHT_PREFIX}:{outbox_key(alert)}", claim_ttl)
        refresh.execute()
        claimed += orphaned
        log.warning(
            "took over the in-flight claim of %d alerts from an earlier delivery of task %s, "
            "whose worker was lost mid-post; posting them again",
            len(orphaned),
            holder,
        )
    if raced:
        result.duplicate += raced
        metrics.MOOG_ALERTS.labels("duplicate").inc(len(raced))
    if busy:
        _defer(result, busy, INFLIGHT_WAIT)
    inflight = [f"{INFLIGHT_PREFIX}:{outbox_key(a)}" for a in claimed]
    if not claimed:
        breaker.release_probe()
        limiter.finish(slot)
        return result
    try:
        posted = post(settings, runtime.http(), claimed, attempts, outbox_key)
    except BaseException:
        client.delete(*inflight)
        limiter.finish(slot)
        raise

    # Everything the answer settles, in one round trip.
    failure = posted.failure
    pipe = client.pipeline(transaction=False)
    slo.queue_record(pipe, "forward", failure is None)  # as mutt_moog_requests_total
    ttl = settings.moog_delivery_history_seconds
    if posted.taken:
        result.delivered = posted.taken
        taken_keys = [outbox_key(a) for a in posted.taken]
        for key in taken_keys:
            pipe.set(f"{SENT_PREFIX}:{key}", "1", ex=SENT_TTL_SECONDS)
        item = delivery_history.entry(
            "delivered", status=posted.http_status, task_id=task_id, batch_size=len(claimed)
        )
        delivery_history.queue_entries(pipe, taken_keys, item, ttl)
    if failure is not None:
        result.failure = failure
        retry_in = None
        if failure.status == "retry":
            failure.wait = min(failure.wait, LONGEST_COUNTDOWN_SECONDS)
            retry_in = failure.wait if retries_left(settings, attempts) else None
        for alert in failure.alerts:  # each with its own reason where Moog gave one
            key = outbox_key(alert)
            item = delivery_history.entry(
                failure.status,
                status=failure.http_status,
                error=failure.reason_for(key),
                task_id=task_id,
                batch_size=len(claimed),
                retry_in=retry_in,
            )
            delivery_history.queue_entries(pipe, [key], item, ttl)
    pipe.delete(*inflight)
    limiter.finish(slot, pipe)
    # What says Moog is failing counts toward the breaker: a connection refused, a read timeout, a
    # 5xx, a 408. A 429 does not: Moog is up and asks for less, which the retry's wait gives it.
    failed = failure is not None and failure.status == "retry" and failure.error_type != "429"
    breaker.queue_verdict(pipe, failed, threshold, open_seconds)
    state = breaker.state_after(pipe.execute()[-1])
    metrics.MOOG_CIRCUIT_STATE.set(CIRCUIT_STATES[state])
    return result


def _defer(result: Delivery, alerts: list[dict[str, Any]], wait: float) -> Delivery:
    result.deferred += alerts
    result.defer_wait = max(result.defer_wait, wait)
    return result


def _dead_letter(
    runtime: Runtime,
    task_id: str,
    failure: Failure,
    attempts: int,
    first_failed_at: str | None,
    replays: int,
) -> None:
    """One dead letter per alert of ``failure``, each with its own entry in its history."""
    first = datetime.fromisoformat(first_failed_at) if first_failed_at else None
    with runtime.sessions.begin() as session:
        for alert in failure.alerts:
            add_dead_letter(
                session,
                task_name=TASK_NAME,
                queue=lanes.queue_for(alert),
                payload={"alert": alert},
                error=failure.reason_for(outbox_key(alert)),
                error_type=failure.error_type or "MoogError",
                backoff_base=runtime.settings.remediation_backoff_base,
                attempts=attempts,
                replays=replays,
                correlation_id=alert.get("external_id"),
                first_failed_at=first,
            )
    pipe = runtime.redis.pipeline(transaction=False)
    for alert in failure.alerts:
        key = outbox_key(alert)
        item = delivery_history.entry(
            "dead_lettered",
            status=failure.http_status,
            error=failure.reason_for(key),
            task_id=task_id,
            batch_size=len(failure.alerts),
        )
        delivery_history.queue_entries(
            pipe, [key], item, runtime.settings.moog_delivery_history_seconds
        )
    pipe.execute()
    reason = DEAD_LETTER_REASONS.get(failure.status, "retries_exhausted")
    metrics.MOOG_ALERTS.labels("dlq").inc(len(failure.alerts))
    metrics.DEAD_LETTERED.labels(TASK_NAME, reason).inc(len(failure.alerts))
    for alert in failure.alerts:
        log.error(
            "alert %s dead-lettered (%s): %s",
            alert.get("external_id"),
            reason,
            failure.reason_for(outbox_key(alert)),
            extra={"correlation_id": alert.get("external_id")},
        )
