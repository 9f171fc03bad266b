"""forward_to_moog: deliver one alert to the Moogsoft webhook, at least once and in practice once.

Around the POST:
- an idempotency key per alert (its external_id, the event's correlation_id): a redelivered or
  replayed alert that was already delivered is not posted again;
- a circuit breaker shared in Redis: while Moog is failing, no request reaches it;
- a rate limit shared by every worker on every host (the one Moog sees), on top of Celery's per-worker
  ``rate_limit``, with a share of it reserved for pages (:mod:`mutt_app.lanes`).
A task that must wait (rate limit, open circuit, another copy in flight) is re-scheduled with a
countdown and does not use up an attempt; no worker ever sleeps. A retry or deferral goes back to the
alert's own lane (a page to ``mutt.forward.page``). Failures that may pass (5xx, 408,
429, timeouts, connection errors) are retried with exponential backoff and jitter; a permanent
rejection (other 4xx) or running out of attempts dead-letters the alert.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval

from mutt_app import lanes, metrics, slo
from mutt_app.celery_app import runtime_of
from mutt_app.deadletters import add_dead_letter
from mutt_app.logs import log_context
from mutt_app.redis_scripts import CIRCUIT_STATES, CircuitBreaker, RateLimiter
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

TASK_NAME = "mutt.forward_to_moog"
SENT_PREFIX = "mutt:moog:sent"
INFLIGHT_PREFIX = "mutt:moog:inflight"
SENT_TTL_SECONDS = 7 * 86_400
RETRYABLE_STATUSES = {408, 429}


class Deferred(Exception):
    """The alert must wait (rate limit, open circuit, a copy in flight); not a failed attempt."""


@shared_task(
    bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, max_retries=None
)
def forward_to_moog(
    self: Task,
    alert: dict[str, Any],
    attempts: int = 0,
    first_failed_at: str | None = None,
    replays: int = 0,
) -> str:
    """POST ``alert`` (a Moog event payload) to MOOG_WEBHOOK_URL.

    ``attempts`` counts failed posts so far (Celery's own retry count also counts deferrals, which
    must not use up attempts); ``replays`` counts remediation replays, carried into a dead letter.
    """
    with log_context(correlation_id=alert.get("external_id") if isinstance(alert, dict) else None):
        return _forward(self, alert, attempts, first_failed_at, replays)


def _forward(
    self: Task,
    alert: dict[str, Any],
    attempts: int,
    first_failed_at: str | None,
    replays: int,
) -> str:
    runtime = runtime_of(self.app)
    outcome = deliver(runtime, alert, attempts)
    # A countdown waits unacked in a worker: keep it well inside the visibility timeout.
    outcome.wait = min(outcome.wait, runtime.settings.broker_visibility_timeout / 2)
    key = outbox_key(alert)
    if outcome.status in ("deferred", "retry"):
        runtime.outbox.touch([key])  # alive: only an alert whose message was lost grows overdue
    # Named, not left to Celery (which republishes to the queue the message came from): an alert
    # that arrived on the wrong lane (published before lanes existed) moves to its own.
    lane = lanes.queue_for(alert)
    if outcome.status == "deferred":
        raise self.retry(
            kwargs={"attempts": attempts, "first_failed_at": first_failed_at, "replays": replays},
            countdown=outcome.wait,
            queue=lane,
        )
    if outcome.status == "retry":
        first_failed_at = first_failed_at or datetime.now(UTC).isoformat()
        if attempts + 1 <= runtime.settings.moog_max_retries:
            metrics.MOOG_RETRIES.labels(outcome.error_type or "error").inc()
            raise self.retry(
                kwargs={
                    "attempts": attempts + 1,
                    "first_failed_at": first_failed_at,
                    "replays": replays,
                },
                countdown=outcome.wait,
                queue=lane,
            )
        outcome.error = f"gave up after {attempts + 1} attempts: {outcome.error}"
    if outcome.status in ("retry", "rejected"):
        _dead_letter(runtime, alert, outcome, attempts + 1, first_failed_at, replays)
        runtime.outbox.settle([key])
        return "dead-lettered"
    runtime.outbox.settle([key])
    log.info("alert %s: %s", key, outcome.status)
    return outcome.status


def outbox_key(alert: dict[str, Any]) -> str:
    """The alert's idempotency key: its external_id (the event's correlation_id)."""
    return str(alert.get("external_id") or alert.get("signature"))


class Outcome:
    """What one delivery attempt came to."""

    def __init__(
        self, status: str, wait: float = 0.0, error: str = "", error_type: str = ""
    ) -> None:
        self.status = status  # delivered | duplicate | deferred | retry | rejected
        self.wait = wait
        self.error = error
        self.error_type = error_type


def deliver(runtime: Runtime, alert: dict[str, Any], attempts: int) -> Outcome:
    """One attempt at delivering ``alert``: checks, the POST, and its classification."""
    settings = runtime.settings
    config = runtime.dynamic_config
    client = runtime.redis
    key = outbox_key(alert)
    if client.exists(f"{SENT_PREFIX}:{key}"):
        metrics.MOOG_ALERTS.labels("duplicate").inc()
        return Outcome("duplicate")

    threshold = config.get("moog_circuit_breaker_threshold")
    open_seconds = config.get("moog_circuit_breaker_timeout")
    breaker = CircuitBreaker(client)
    allowed, wait = breaker.allow(threshold, open_seconds)
    if not allowed:
        metrics.MOOG_CIRCUIT_STATE.set(CIRCUIT_STATES["OPEN"])
        return Outcome("deferred", wait=_jitter(wait, 0.1) + 0.05)

    limiter = RateLimiter(client, settings.moog_rate_limit_key)
    slot = uuid.uuid4().hex
    limit = config.get("moog_rate_limit")
    wait = limiter.acquire(
        limit,
        config.get("moog_rate_period"),
        slot,
        flight=settings.moog_webhook_timeout + 1,
        longest_wait=settings.broker_visibility_timeout / 2,
        reserved=lanes.reserved_slots(limit, config.get("moog_page_reserved_share")),
        page=lanes.is_page(alert),
    )
    if wait > 0:
        metrics.MOOG_RATE_LIMIT_HITS.inc()
        breaker.release_probe()
        return Outcome("deferred", wait=wait + random.uniform(0, 0.05))

    # Two copies of one alert (a redelivery racing its original) must not both post. The sent key
    # is read again after claiming the in-flight key: a copy that finished between the first read
    # and the claim has set it (its answer sets sent before it drops in-flight), so the second read
    # sees it. Without it, copies racing a finishing original posted again.
    inflight = f"{INFLIGHT_PREFIX}:{key}"
    claim = client.pipeline(transaction=False)
    claim.set(inflight, "1", nx=True, ex=int(settings.moog_webhook_timeout) + 30)
    claim.exists(f"{SENT_PREFIX}:{key}")
    claimed, sent = claim.execute()
    if sent:
        if claimed:
            client.delete(inflight)
        breaker.release_probe()
        limiter.finish(slot)
        metrics.MOOG_ALERTS.labels("duplicate").inc()
        return Outcome("duplicate")
    if not claimed:
        breaker.release_probe()
        limiter.finish(slot)
        return Outcome("deferred", wait=2.0)
    try:
        outcome = _post(settings, runtime.http(), alert, attempts)
    except BaseException:
        client.delete(inflight)
        limiter.finish(slot)
        raise

    # Everything the answer settles, in one round trip instead of five (measured: 4.52 -> 4.43 ms
    # of forward CPU per alert, within the noise; BENCHMARKS.md, second round).
    pipe = client.pipeline(transaction=False)
    slo.queue_record(pipe, "forward", outcome.status == "delivered")  # as mutt_moog_requests_total
    if outcome.status == "delivered":
        pipe.set(f"{SENT_PREFIX}:{key}", "1", ex=SENT_TTL_SECONDS)
    pipe.delete(inflight)
    limiter.finish(slot, pipe)
    failed = outcome.status == "retry" and outcome.error_type != "429"
    breaker.queue_verdict(pipe, failed, threshold, open_seconds)
    state = breaker.state_after(pipe.execute()[-1])
    metrics.MOOG_CIRCUIT_STATE.set(CIRCUIT_STATES[state])
    return outcome


def _post(settings: Any, http: requests.Session, alert: dict[str, Any], attempts: int) -> Outcome:
    headers = {"Content-Type": "application/json"}
    if settings.moog_api_key:
        headers["X-API-Key"] = settings.moog_api_key.get_secret_value()
    started = time.perf_counter()
    try:
        response = http.post(
            settings.moog_webhook_url,
            json=alert,
            headers=headers,
            timeout=settings.moog_webhook_timeout,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        reason = "timeout" if isinstance(exc, requests.Timeout) else "connection"
        metrics.MOOG_REQUESTS.labels("fail", reason).inc()
        return Outcome("retry", _backoff(settings, attempts), f"{reason} error: {exc}", reason)
    finally:
        metrics.MOOG_LATENCY.observe(time.perf_counter() - started)

    status = response.status_code
    if status < 300:
        metrics.MOOG_REQUESTS.labels("success", "").inc()
        metrics.MOOG_ALERTS.labels("success").inc()
        return Outcome("delivered")
    metrics.MOOG_REQUESTS.labels("fail", str(status)).inc()
    detail = f"Moog answered {status}: {response.text[:300]}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        wait = _retry_after(response) if status == 429 else None
        return Outcome("retry", wait or _backoff(settings, attempts), detail, str(status))
    return Outcome("rejected", error=detail, error_type=f"HTTP{status}")


def _backoff(settings: Any, attempts: int) -> float:
    # Exponential (1 s, 2 s, 4 s, ... capped), with jitter so retries of one outage do not stampede.
    base = get_exponential_backoff_interval(
        factor=settings.moog_retry_base_delay,
        retries=attempts,
        maximum=settings.moog_retry_max_delay,
        full_jitter=False,
    )
    return _jitter(max(base, settings.moog_retry_base_delay), 0.2)


def _jitter(seconds: float, fraction: float) -> float:
    return seconds * random.uniform(1 - fraction, 1 + fraction)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.1), 60.0)
    except ValueError:
        return None


def _dead_letter(
    runtime: Runtime,
    alert: dict[str, Any],
    outcome: Outcome,
    attempts: int,
    first_failed_at: str | None,
    replays: int,
) -> None:
    first = datetime.fromisoformat(first_failed_at) if first_failed_at else None
    with runtime.sessions.begin() as session:
        add_dead_letter(
            session,
            task_name=TASK_NAME,
            queue=lanes.queue_for(alert),
            payload={"alert": alert},
            error=outcome.error,
            error_type=outcome.error_type or "MoogError",
            backoff_base=runtime.settings.remediation_backoff_base,
            attempts=attempts,
            replays=replays,
            correlation_id=alert.get("external_id"),
            first_failed_at=first,
        )
    reason = "rejected" if outcome.status == "rejected" else "retries_exhausted"
    metrics.MOOG_ALERTS.labels("dlq").inc()
    metrics.DEAD_LETTERED.labels(TASK_NAME, reason).inc()
    log.error(
        "alert %s dead-lettered (%s): %s",
        alert.get("external_id"),
        reason,
        outcome.error,
        extra={"correlation_id": alert.get("external_id")},
    )
