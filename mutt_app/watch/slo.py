"""Service level objectives: ingest and forward availability against their targets.

The v2.5 quick reference defines two SLOs over ``slo_window_hours`` (dynamic config, default 24 h):
ingest availability (share of ingest requests answered with success, target
``slo_ingest_success_target``, 99.5 %) and forward availability (share of Moog webhook requests that
succeeded, target ``slo_forward_success_target``, 99 %). From the availability follow the error
budget (1 - target), the burn rate (error rate / error budget: 1.0 spends the budget exactly over
the window) and the budget remaining (1 - burn rate, negative once overspent); the status is ``ok``
at a burn rate up to 1, ``warning`` up to 2 and ``critical`` above.

As in the spec's queries, every answer that is not a success counts against availability, client
errors (a bad key, a body with no valid event) included.

Counts come from one of two sources, per SLO:

- **Prometheus** (PROMETHEUS_URL), with the spec's metrics: ``increase()`` of
  ``mutt_ingest_requests_total`` / ``mutt_moog_requests_total`` over the window, all and
  ``status="success"``; the ratio is the spec's ``rate(success) / rate(all)``.
- **MUTT's own counters** when Prometheus does not answer or has no such series: ingest and the
  forward task also count each request in Redis, in one hash per hour
  (``mutt:slo:<service>:<YYYYMMDDHH>``, fields ``success`` and ``fail``, kept 31 days), which every
  process shares and which survive restarts (Prometheus counters in the web process would only see
  that process). Hour-granular: the window is the current hour and the ``window - 1`` before it.
  A request that fails *because* Redis is unreachable (ingest's 503 ``redis_unavailable``) cannot be
  counted there, so during a Redis outage this source overstates availability; Prometheus does not.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import requests
from redis.client import Pipeline

log = logging.getLogger(__name__)

PREFIX = "mutt:slo"
SERVICES = ("ingest", "forward")
BUCKET_TTL_SECONDS = 31 * 24 * 3600  # longer than the largest slo_window_hours (720)
PROMETHEUS_TIMEOUT = 3.0  # seconds per query: a hung Prometheus must not hang the report

# (metric, SLO name, target key in the dynamic configuration)
OBJECTIVES = {
    "ingest": ("mutt_ingest_requests_total", "ingest_availability", "slo_ingest_success_target"),
    "forward": ("mutt_moog_requests_total", "forward_availability", "slo_forward_success_target"),
}


# --- MUTT's own counters --------------------------------------------------------------------------


def _bucket(service: str, moment: datetime) -> str:
    return f"{PREFIX}:{service}:{moment.astimezone(UTC):%Y%m%d%H}"


def record(
    client: redis.Redis,
    service: str,
    success: bool,
    now: datetime | None = None,
    count: int = 1,
) -> bool:
    """Count ``count`` ``service`` requests (ingest or forward) in this hour's bucket.

    Returns False if Redis failed. Never raises: an SLO counter must not fail what it counts.
    """
    try:
        pipe = client.pipeline(transaction=False)
        queue_record(pipe, service, success, now, count)
        pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.debug("SLO counter for %s not counted: %s", service, exc)
        return False
    return True


def queue_record(
    pipe: Pipeline, service: str, success: bool, now: datetime | None = None, count: int = 1
) -> None:
    """:func:`record`, queued on ``pipe`` (which the caller executes, and whose errors it meets)."""
    key = _bucket(service, now or datetime.now(UTC))
    pipe.hincrby(key, "success" if success else "fail", count)
    pipe.expire(key, BUCKET_TTL_SECONDS)


def counted(
    client: redis.Redis, service: str, window_hours: int, now: datetime | None = None
) -> tuple[int, int]:
    """(successes, requests) of ``service`` in the last ``window_hours`` hourly buckets."""
    now = now or datetime.now(UTC)
    keys = [_bucket(service, now - timedelta(hours=i)) for i in range(window_hours)]
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hmget(key, "success", "fail")
    good = bad = 0
    for success, fail in pipe.execute():
        good += int(success or 0)
        bad += int(fail or 0)
    return good, good + bad


# --- Prometheus -----------------------------------------------------------------------------------


class PrometheusError(RuntimeError):
    """Prometheus did not answer a query usefully; the message says why."""


def query_prometheus(
    base_url: str, query: str, timeout: float = PROMETHEUS_TIMEOUT, at: float | None = None
) -> float | None:
    """The single value of an instant ``query`` (None for an empty result); PrometheusError else.

    ``at`` (a Unix time) is the evaluation time; Prometheus' own "now" when None.
    """
    url = base_url.rstrip("/") + "/api/v1/query"
    params = {"query": query} if at is None else {"query": query, "time": f"{at:.3f}"}
    try:
        response = requests.get(url, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise PrometheusError(f"{url}: {type(exc).__name__}") from None
    try:
        body = response.json()
    except ValueError:
        raise PrometheusError(f"{url} answered {response.status_code}, not JSON") from None
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"{url} answered {response.status_code}: {body.get('error', body)}")
    data = body.get("data") or {}
    result = data.get("result")
    if data.get("resultType") != "vector" or not isinstance(result, list):
        raise PrometheusError(f"{url}: expected a vector, got {data.get('resultType')}")
    if not result:
        return None
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise PrometheusError(f"{url}: unreadable sample {result[0]!r}") from None
    return value if math.isfinite(value) else None


def prometheus_counts(
    base_url: str, metric: str, window_hours: int, at: float | None = None
) -> tuple[float, float] | None:
    """(successes, requests) of ``metric`` over the window ending at ``at`` (a Unix time; now when
    None), or None when Prometheus has no series."""
    # Both queries at one evaluation time: increase() extrapolates to the window's end, so two
    # "now"s a moment apart scale the counts differently, and successes could exceed requests.
    at = time.time() if at is None else at
    window = f"{window_hours}h"
    total = query_prometheus(base_url, f"sum(increase({metric}[{window}]))", at=at)
    if total is None:
        return None
    good = query_prometheus(
        base_url, f'sum(increase({metric}{{status="success"}}[{window}]))', at=at
    )
    return (good or 0.0), total


# --- the report -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """One SLO's numbers over the window."""

    target: float
    good: float
    total: float
    source: str

    @property
    def availability(self) -> float | None:
        return self.good / self.total if self.total > 0 else None

    @property
    def error_budget(self) -> float:
        return 1.0 - self.target

    @property
    def burn_rate(self) -> float:
        availability = self.availability
        if availability is None:
            return 0.0
        error_rate = 1.0 - availability
        if self.error_budget <= 0:  # a 100 % target: any error burns without bound
            return math.inf if error_rate > 0 else 0.0
        return error_rate / self.error_budget

    @property
    def status(self) -> str:
        if self.availability is None:
            return "no_data"
        burn = self.burn_rate
        return "ok" if burn <= 1.0 else "warning" if burn <= 2.0 else "critical"

    def as_dict(self) -> dict[str, Any]:
        burn = self.burn_rate
        finite = math.isfinite(burn)
        return {
            "target": self.target,
            "actual": self.availability,
            "compliant": self.availability is None or self.availability >= self.target,
            "good": round(self.good, 3),
            "total": round(self.total, 3),
            "error_budget": round(self.error_budget, 6),
            "error_budget_remaining": round(1.0 - burn, 6) if finite else None,
            "burn_rate": round(burn, 6) if finite else None,
            "status": self.status,
            "source": self.source,
        }


def report(
    client: redis.Redis,
    prometheus_url: str | None,
    window_hours: int,
    targets: dict[str, float],
    now: datetime | None = None,
) -> dict[str, Any]:
    """The SLO report: each objective from Prometheus if it answers, else from MUTT's counters.

    ``targets`` maps service (ingest, forward) to its target. Raises redis.RedisError only when
    MUTT's counters are needed and Redis is down too.
    """
    now = now or datetime.now(UTC)
    objectives: dict[str, dict[str, Any]] = {}
    fallback: dict[str, str] = {}
    prometheus_down: str | None = None if prometheus_url else "PROMETHEUS_URL is not set"
    for service in SERVICES:
        metric, name, _ = OBJECTIVES[service]
        counts: tuple[float, float] | None = None
        if prometheus_down is None:
            try:
                counts = prometheus_counts(
                    prometheus_url or "", metric, window_hours, now.timestamp()
                )
            except PrometheusError as exc:
                prometheus_down = str(exc)
                log.warning("SLO report from MUTT's counters: Prometheus failed: %s", exc)
            if counts is None and prometheus_down is None:
                fallback[name] = f"Prometheus has no {metric} series"
        if counts is not None:
            objective = Objective(targets[service], counts[0], counts[1], "prometheus")
        else:
            good, total = counted(client, service, window_hours, now)
            objective = Objective(targets[service], good, total, "mutt_counters")
            if prometheus_down is not None:
                fallback[name] = prometheus_down
        objectives[name] = objective.as_dict()
    return {
        "timestamp": now.timestamp(),
        "window_hours": window_hours,
        "overall_compliant": all(o["compliant"] for o in objectives.values()),
        "slos": objectives,
        "fallback_reasons": fallback,
    }
