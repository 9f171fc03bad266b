"""One request to Moog carrying a batch of alerts, and what its answer comes to, alert by alert.

Only a real delivery counts:

- a redirect is never followed (``allow_redirects=False`` here, and the session itself allows none,
  :func:`mutt_app.runtime.moog_session`). ``requests`` would turn the POST into a GET to the
  ``Location``, whose 200 would mark alerts sent that Moog never got, and whoever controls the answer
  could make the worker fetch any URL. A 3xx is a refusal of the whole batch (``redirected``): it is
  dead-lettered at once, the status and ``Location`` in its reason; it is not retried, since a moved
  endpoint is a configuration to fix (MOOG_WEBHOOK_URL), not a fault that passes;
- a 2xx is read (:mod:`mutt_app.forwarding.answer`): the alerts it reports as failed are refused each
  with its reason (the forward task sends a refused group again, split, until each refused alert
  stands alone, and dead-letters that one), the others are taken; a 2xx whose body cannot be read
  (``unreadable``) takes none: the batch is dead-lettered with the answer as the reason, to replay
  once it is understood, rather than counted as sent on a body that may not be Moog's (a proxy's
  login page) or retried blind into a Moog that may already have it.

What may pass later is retried (``retry``): a connection refused or reset, a read timeout past
MOOG_WEBHOOK_TIMEOUT, a 5xx, a 408 (Moog gave up waiting for the request) and a 429. The wait before
the next attempt is the exponential backoff (:func:`backoff`), except where a 429 or a 503 says
``Retry-After`` (seconds or an HTTP date): that is honoured, capped at MOOG_RETRY_MAX_DELAY so that
an absurd answer cannot hold alerts for hours.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from celery.utils.time import get_exponential_backoff_interval

from mutt_app import metrics
from mutt_app.forwarding.answer import read_answer
from mutt_app.forwarding.moog import request_body

__all__ = ["Failure", "Posted", "backoff", "jitter", "post", "retry_after"]

log = logging.getLogger(__name__)

RETRYABLE_STATUSES = {408, 429}
# The answers whose Retry-After says when to come back (RFC 9110, 10.2.3).
RETRY_AFTER_STATUSES = {429, 503}
# The shortest Retry-After wait: "0" must not make a hot loop.
SHORTEST_RETRY_AFTER = 0.1


@dataclass
class Failure:
    """The alerts of a request that did not pass: ``retry`` (may pass later), ``rejected`` (a 4xx,
    or failed events of a 2xx: split and sent again until alone), ``redirected`` or ``unreadable``
    (dead-lettered at once). ``reasons`` holds an alert's own reason (by idempotency key) where the
    answer gave one; ``error`` is the rest's."""

    status: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    wait: float = 0.0
    error: str = ""
    error_type: str = ""
    http_status: int | None = None
    reasons: dict[str, str] = field(default_factory=dict)

    def reason_for(self, key: str) -> str:
        """Why the alert with idempotency key ``key`` did not pass."""
        return self.reasons.get(key, self.error)


@dataclass
class Posted:
    """What one request came to: the alerts Moog took, and the failure of the others."""

    taken: list[dict[str, Any]]
    failure: Failure | None
    http_status: int | None


def post(
    settings: Any,
    http: requests.Session,
    alerts: list[dict[str, Any]],
    attempts: int,
    key_of: Callable[[dict[str, Any]], str],
) -> Posted:
    """One request carrying ``alerts``; ``key_of`` gives an alert's idempotency key."""
    headers = {"Content-Type": "application/json"}
    if settings.moog_api_key:
        name = "apiKey" if settings.moog_format == "cloud" else "X-API-Key"
        headers[name] = settings.moog_api_key.get_secret_value()
    started = time.perf_counter()
    try:
        response = http.post(
            settings.moog_webhook_url,
            json=request_body(alerts, settings.moog_format),
            headers=headers,
            timeout=settings.moog_webhook_timeout,
            allow_redirects=False,
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        reason = "timeout" if isinstance(exc, requests.Timeout) else "connection"
        metrics.MOOG_REQUESTS.labels("fail", reason).inc()
        failure = Failure(
            "retry",
            alerts,
            wait=backoff(settings, attempts),
            error=f"{reason} error: {exc}",
            error_type=reason,
        )
        return Posted([], failure, None)
    finally:
        metrics.MOOG_LATENCY.observe(time.perf_counter() - started)

    status = response.status_code
    if 300 <= status < 400:
        return Posted([], _redirected(response, alerts), status)
    if status < 300:
        return _read(settings, response, alerts, key_of)
    metrics.MOOG_REQUESTS.labels("fail", str(status)).inc()
    detail = f"Moog answered {status}: {response.text[:300]}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        wait = (
            retry_after(response.headers.get("Retry-After", ""), settings.moog_retry_max_delay)
            if status in RETRY_AFTER_STATUSES
            else None
        )
        failure = Failure(
            "retry",
            alerts,
            wait=wait or backoff(settings, attempts),
            error=detail,
            error_type=str(status),
        )
    else:
        failure = Failure("rejected", alerts, error=detail, error_type=f"HTTP{status}")
    failure.http_status = status
    return Posted([], failure, status)


def _redirected(response: requests.Response, alerts: list[dict[str, Any]]) -> Failure:
    status = response.status_code
    location = response.headers.get("Location", "")[:300]
    metrics.MOOG_REQUESTS.labels("fail", str(status)).inc()
    metrics.MOOG_REDIRECTS.labels(str(status)).inc()
    log.error(
        "Moog answered %d redirecting to %r: not followed; %d alerts dead-lettered"
        " (check MOOG_WEBHOOK_URL)",
        status,
        location,
        len(alerts),
    )
    return Failure(
        "redirected",
        alerts,
        error=f"Moog answered {status} redirecting to {location!r}: redirects are not followed",
        error_type=f"HTTP{status}",
        http_status=status,
    )


def _read(
    settings: Any,
    response: requests.Response,
    alerts: list[dict[str, Any]],
    key_of: Callable[[dict[str, Any]], str],
) -> Posted:
    status = response.status_code
    answer = read_answer(status, response.content, settings.moog_format, alerts)
    if answer.kind == "taken":
        metrics.MOOG_REQUESTS.labels("success", "").inc()
        metrics.MOOG_ALERTS.labels("success").inc(len(alerts))
        return Posted(alerts, None, status)
    if answer.kind == "unreadable":
        metrics.MOOG_REQUESTS.labels("fail", "unreadable").inc()
        metrics.MOOG_UNREADABLE_ANSWERS.inc()
        log.error(
            "Moog answered %d with a body MUTT cannot read (%s); %d alerts dead-lettered",
            status,
            answer.reason,
            len(alerts),
        )
        error = f"Moog answered {status}, unreadable answer: {answer.reason}"
        failure = Failure("unreadable", alerts, error=error, error_type="UnreadableAnswer")
        failure.http_status = status
        return Posted([], failure, status)
    if answer.kind == "refused":
        metrics.MOOG_REQUESTS.labels("fail", "refused").inc()
        failure = Failure("rejected", alerts, error=answer.reason, error_type=f"HTTP{status}")
        failure.http_status = status
        return Posted([], failure, status)
    refused = [a for i, a in enumerate(alerts) if i in answer.refused]
    taken = [a for i, a in enumerate(alerts) if i not in answer.refused]
    metrics.MOOG_REQUESTS.labels("partial", str(status)).inc()
    metrics.MOOG_ALERTS.labels("success").inc(len(taken))
    metrics.MOOG_EVENTS_REFUSED.inc(len(refused))
    log.warning(
        "Moog answered %d refusing %d of %d events: %s",
        status,
        len(refused),
        len(alerts),
        "; ".join(answer.refused.values())[:1000],
    )
    failure = Failure(
        "rejected",
        refused,
        error=f"Moog answered {status} refusing {len(refused)} of {len(alerts)} events",
        error_type=f"HTTP{status}",
        http_status=status,
        reasons={key_of(alerts[i]): reason for i, reason in answer.refused.items()},
    )
    return Posted(taken, failure, status)


def backoff(settings: Any, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: exponential (1 s, 2 s, 4 s, ... capped), with
    jitter so that the retries of one outage do not stampede."""
    base = get_exponential_backoff_interval(
        factor=settings.moog_retry_base_delay,
        retries=attempts,
        maximum=settings.moog_retry_max_delay,
        full_jitter=False,
    )
    return jitter(max(base, settings.moog_retry_base_delay), 0.2)


def jitter(seconds: float, fraction: float) -> float:
    """``seconds`` give or take ``fraction`` of it, at random."""
    return seconds * random.uniform(1 - fraction, 1 + fraction)


def retry_after(value: str, longest: float, now: datetime | None = None) -> float | None:
    """The seconds a ``Retry-After`` header ``value`` asks for (delay-seconds or an HTTP date),
    between SHORTEST_RETRY_AFTER and ``longest``; None if it says nothing readable."""
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT; a malformed one may name no zone
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, SHORTEST_RETRY_AFTER), longest)
