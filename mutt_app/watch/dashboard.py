"""The dashboard's figures: throughput, queues, dead letters, the Moog circuit, top rules and hosts.

One answer serves the dashboard page (polled by the browser) and ``GET /api/v2/metrics``. It is built
from what the pipeline already records, not from counters of its own:

- events per second over the last minute, hour and 24 hours: rows of ``event_audit_log`` whose
  ``event_timestamp`` falls in the window. Every query is bounded on ``event_timestamp`` on both
  sides, so PostgreSQL prunes the table to the one or two monthly partitions concerned and reads
  them through ``idx_event_audit_timestamp``; a statement timeout caps each query, so a dashboard
  never holds the database (a figure that timed out is null and named in ``errors``). The cost of a
  window's count grows with the events in it, so longer windows are recomputed less often: the last
  minute every METRICS_CACHE_TTL seconds, the hour every 15 s, the day every 5 minutes.
- events per minute over the last hour (the chart), and the top rules and top unhandled hosts
  (events that matched no rule) over that hour, from the same hourly pass;
- what was held back from Moog over that hour (``event_audit_log.held_reason``, the storm stages'
  models.HELD_REASONS only): the count per reason, and the devices and rules with the most events held over a storm budget (the top
  storming ones: ``held_reason='storm_budget'`` only, so a device whose repeats deduplication
  folded is not called storming);
- the unhandled templates (:mod:`mutt_app.watch.unhandled`): the unmatched events of the last
  UNHANDLED_TEMPLATES_HOURS grouped by message template, the busiest TOP_LIMIT, recomputed every
  TEMPLATES_REFRESH seconds;
- the problem/clear pairs flapping now, from the flap detector's state in Redis
  (:func:`mutt_app.holdback.flapping.open_pairs`), with the rules that clear each problem rule;
- the hosts quiet now, as the last heartbeat check recorded them in Redis
  (:func:`mutt_app.watch.heartbeat_quiet.quiet_hosts`), longest quiet first;
- queue depths: LLEN of the Celery queues ``mutt.classify``, ``mutt.forward.page`` (the page lane)
  and ``mutt.forward`` (tickets) in Redis;
- DLQ depth and poison count: the ``dead_letters`` and ``poison_letters`` tables;
- the circuit breaker's state (Redis) with its threshold and timeout (dynamic configuration).

The Redis reads (queues, circuit, flapping pairs, quiet hosts) are timed together as
``mutt_webui_redis_scan_latency_seconds``, the quick reference's name for the web UI's Redis reads.

The whole answer is cached in Redis under ``mutt:metrics:cached`` for METRICS_CACHE_TTL seconds,
shared by every web process. If Redis is down the answer is computed without the cache (and
without the Redis figures, which are null); if the database is down its figures are null. Either
way the answer says what is missing in ``errors`` and the failure is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import redis
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, EventAuditLog
from mutt_app.dynamic_config import DynamicConfig
from mutt_app.forwarding import deadletters
from mutt_app.forwarding.breaker import CircuitBreaker
from mutt_app.holdback import flapping
from mutt_app.holdback.storms import STORM_BUDGET
from mutt_app.names import HELD_REASONS, WORK_QUEUES
from mutt_app.watch import heartbeat_quiet
from mutt_app.watch import unhandled as unhandled_templates
from mutt_app.watch.queries import bounded, in_window, timed_query

log = logging.getLogger(__name__)

CACHE_KEY = "mutt:metrics:cached"
PART_KEY = "mutt:metrics:part"
WINDOWS = {"1m": 60, "1h": 3600, "24h": 86_400}
TOP_LIMIT = 10
HOUR_MINUTES = 60
# How often each part is recomputed at most (seconds); never more often than METRICS_CACHE_TTL.
HOUR_REFRESH = 15
DAY_REFRESH = 300


# --- database figures --------------------------------------------------------------------------


def count_events(session: Session, start: datetime, end: datetime) -> int:
    """Audited events whose timestamp is in (start, end]."""
    bounded(session)
    with timed_query("dashboard_count"):
        query = select(func.count()).select_from(EventAuditLog).where(in_window(start, end))
        return session.scalar(query) or 0


def _minute_bucket(session: Session) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("minute", EventAuditLog.event_timestamp)
    return func.strftime("%Y-%m-%d %H:%M", EventAuditLog.event_timestamp)


def _as_utc(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def events_per_minute(session: Session, end: datetime, minutes: int = HOUR_MINUTES) -> list[int]:
    """Audited events per whole minute, oldest first, for the ``minutes`` minutes up to ``end``.

    The current (incomplete) minute is the last entry; minutes without events count 0.
    """
    last = end.replace(second=0, microsecond=0)
    first = last - timedelta(minutes=minutes - 1)
    bounded(session)
    bucket = _minute_bucket(session).label("minute")
    query = (
        select(bucket, func.count())
        .where(in_window(first - timedelta(microseconds=1), end))
        .group_by(bucket)
    )
    with timed_query("dashboard_per_minute"):
        rows = session.execute(query).all()
    counts = [0] * minutes
    for minute, n in rows:
        index = int((_as_utc(minute) - first).total_seconds() // 60)
        if 0 <= index < minutes:
            counts[index] += n
    return counts


def top_rules(
    session: Session, start: datetime, end: datetime, limit: int = TOP_LIMIT
) -> list[dict[str, Any]]:
    """The rules that matched the most events in (start, end], with what each rule matches."""
    bounded(session)
    hits = func.count().label("events")
    query = (
        select(EventAuditLog.matched_rule_id, hits)
        .where(in_window(start, end), EventAuditLog.matched_rule_id.is_not(None))
        .group_by(EventAuditLog.matched_rule_id)
        .order_by(hits.desc(), EventAuditLog.matched_rule_id)
        .limit(limit)
    )
    with timed_query("dashboard_top_rules"):
        rows = session.execute(query).all()
    return _described(session, rows, "events", with_active=True)


def top_unhandled_hosts(
    session: Session, start: datetime, end: datetime, limit: int = TOP_LIMIT
) -> list[dict[str, Any]]:
    """The hosts with the most events that matched no rule in (start, end]."""
    bounded(session)
    hits = func.count().label("events")
    query = (
        select(EventAuditLog.hostname, hits)
        .where(in_window(start, end), EventAuditLog.matched_rule_id.is_(None))
        .group_by(EventAuditLog.hostname)
        .order_by(hits.desc(), EventAuditLog.hostname)
        .limit(limit)
    )
    with timed_query("dashboard_top_hosts"):
        rows = session.execute(query).all()
    return [{"hostname": hostname, "events": n} for hostname, n in rows]


def held_by_reason(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """Events held back from Moog in (start, end], per reason (every reason named, 0 if none).

    Only the storm stages' HELD_REASONS: an event whose handling never forwards (unmatched, dev,
    Email_only, Log_only) was not held back.
    """
    bounded(session)
    query = (
        select(EventAuditLog.held_reason, func.count())
        .where(in_window(start, end), EventAuditLog.held_reason.in_(HELD_REASONS))
        .group_by(EventAuditLog.held_reason)
    )
    with timed_query("dashboard_held"):
        rows = session.execute(query).all()
    return {reason: 0 for reason in HELD_REASONS} | {reason: n for reason, n in rows}


def top_storming_devices(
    session: Session, start: datetime, end: datetime, limit: int = TOP_LIMIT
) -> list[dict[str, Any]]:
    """The devices with the most events held over a storm budget in (start, end].

    Grouped by the lower-cased host name, as the device budget counts them.
    """
    bounded(session)
    host = func.lower(EventAuditLog.hostname).label("hostname")
    held = func.count().label("held")
    query = (
        select(host, held)
        .where(in_window(start, end), EventAuditLog.held_reason == STORM_BUDGET)
        .group_by(host)
        .order_by(held.desc(), host)
        .limit(limit)
    )
    with timed_query("dashboard_storming_devices"):
        rows = session.execute(query).all()
    return [{"hostname": hostname, "held": n} for hostname, n in rows]


def top_storming_rules(
    session: Session, start: datetime, end: datetime, limit: int = TOP_LIMIT
) -> list[dict[str, Any]]:
    """The rules with the most events held over a storm budget in (start, end]."""
    bounded(session)
    held = func.count().label("held")
    query = (
        select(EventAuditLog.matched_rule_id, held)
        .where(
            in_window(start, end),
            EventAuditLog.held_reason == STORM_BUDGET,
            EventAuditLog.matched_rule_id.is_not(None),
        )
        .group_by(EventAuditLog.matched_rule_id)
        .order_by(held.desc(), EventAuditLog.matched_rule_id)
        .limit(limit)
    )
    with timed_query("dashboard_storming_rules"):
        rows = session.execute(query).all()
    return _described(session, rows, "held")


def _described(
    session: Session, rows: Sequence[Any], count_field: str, *, with_active: bool = False
) -> list[dict[str, Any]]:
    """``rows`` of (rule id, count) with what each rule matches and its team (None: rule gone)."""
    ids = [rule_id for rule_id, _ in rows]
    rules = {r.id: r for r in session.scalars(select(AlertRule).where(AlertRule.id.in_(ids)))}
    result = []
    for rule_id, n in rows:
        rule = rules.get(rule_id)
        entry = {
            "rule_id": rule_id,
            count_field: n,
            "match_type": rule.match_type if rule else None,
            "match_string": rule.match_string if rule else None,
            "trap_oid": rule.trap_oid if rule else None,
            "team": rule.team_assignment if rule else None,
        }
        if with_active:
            entry["is_active"] = rule.is_active if rule else None
        result.append(entry)
    return result


def clearing_rules(session: Session) -> dict[str, list[int]]:
    """Which rules clear each problem rule (``alert_rules.clears_rule_id``), by problem rule id.

    Keys are strings: the answer is cached as JSON.
    """
    query = select(AlertRule.clears_rule_id, AlertRule.id).where(
        AlertRule.clears_rule_id.is_not(None)
    )
    found: dict[str, list[int]] = {}
    for problem, clear in session.execute(query.order_by(AlertRule.id)).all():
        found.setdefault(str(problem), []).append(clear)
    return found


def hour_figures(session: Session, end: datetime) -> dict[str, Any]:
    """The last hour: events per minute, the 1-hour rate, top rules and top unhandled hosts, what
    was held back and the top storming devices and rules."""
    start = end - timedelta(seconds=WINDOWS["1h"])
    per_minute = events_per_minute(session, end)
    return {
        "per_minute": per_minute,
        "per_minute_end": end.replace(second=0, microsecond=0).isoformat(),
        "count_1h": count_events(session, start, end),
        "top_rules": top_rules(session, start, end),
        "top_unhandled_hosts": top_unhandled_hosts(session, start, end),
        "held_by_reason": held_by_reason(session, start, end),
        "top_storming_devices": top_storming_devices(session, start, end),
        "top_storming_rules": top_storming_rules(session, start, end),
    }


def _templates(settings: Settings, end: datetime) -> Callable[[Session], dict[str, Any]]:
    def compute(session: Session) -> dict[str, Any]:
        return unhandled_templates.unhandled_templates(
            session,
            hours=settings.unhandled_templates_hours,
            max_rows=settings.unhandled_templates_max_rows,
            limit=TOP_LIMIT,
            now=end,
        )

    return compute


def dead_letter_figures(session: Session) -> dict[str, int]:
    """DLQ depth and poison count."""
    depth = deadletters.count(session)
    poison = deadletters.count(session, poison=True)
    metrics.POISON_DEPTH.set(poison)
    return {"dlq_depth": depth, "poison_count": poison}


# --- Redis figures -----------------------------------------------------------------------------


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Messages waiting in each Celery queue (LLEN of its Redis list)."""
    pipe = client.pipeline(transaction=False)
    for queue in WORK_QUEUES:
        pipe.llen(queue)
    depths = {queue: int(n) for queue, n in zip(WORK_QUEUES, pipe.execute(), strict=True)}
    for queue, n in depths.items():
        metrics.QUEUE_DEPTH.labels(queue).set(n)
    return depths


def circuit(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """The Moog circuit breaker's state, with the threshold and timeout it runs with now."""
    config = DynamicConfig(client, settings, cache_ttl=0)
    return {
        "state": CircuitBreaker(client).state(),
        "threshold": config.get("moog_circuit_breaker_threshold"),
        "timeout_seconds": config.get("moog_circuit_breaker_timeout"),
    }


# --- the answer --------------------------------------------------------------------------------


def _cached(client: redis.Redis | None, name: str, ttl: float, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept in Redis for ``ttl`` seconds and shared by every web process."""
    key = f"{PART_KEY}:{name}"
    if client is not None:
        try:
            raw = client.get(key)
            if raw is not None:
                return orjson.loads(raw)
        except redis.RedisError:
            client = None
    value = compute()
    if client is not None:
        with suppress(redis.RedisError):
            client.set(key, orjson.dumps(value), px=int(ttl * 1000))
    return value


def collect(
    sessions: sessionmaker[Session],
    client: redis.Redis,
    settings: Settings,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Every dashboard figure now; a part whose store is unreachable is null and named in errors."""
    end = now or datetime.now(UTC)
    ttl = settings.metrics_cache_ttl
    errors: list[str] = []
    redis_ok: redis.Redis | None = client
    body: dict[str, Any] = {
        "timestamp": end.isoformat(),
        "events_per_second": {name: None for name in WINDOWS},
        "events_per_minute": None,
        "events_per_minute_end": None,
        "queues": None,
        "dlq_depth": None,
        "poison_count": None,
        "circuit_breaker": None,
        "top_rules": None,
        "top_unhandled_hosts": None,
        "held_by_reason": None,
        "top_storming_devices": None,
        "top_storming_rules": None,
        "flapping_count": None,
        "flapping_pairs": None,
        "heartbeat_quiet_count": None,
        "heartbeat_quiet_hosts": None,
        "unhandled_templates": None,
        "window_seconds": WINDOWS,
    }
    try:
        started = time.perf_counter()
        body["queues"] = queue_depths(client)
        body["circuit_breaker"] = circuit(client, settings)
        body["flapping_count"], body["flapping_pairs"] = flapping.open_pairs(client, TOP_LIMIT)
        quiet = heartbeat_quiet.quiet_hosts(client)
        # Reads that answered only: an unreachable Redis is counted in errors, not as latency.
        metrics.WEBUI_REDIS_SCAN_LATENCY.observe(time.perf_counter() - started)
        body["heartbeat_quiet_count"] = len({q["host"] for q in quiet})
        body["heartbeat_quiet_hosts"] = quiet[:TOP_LIMIT]
    except (redis.RedisError, OSError) as exc:
        log.warning("dashboard: Redis unreachable: %s", exc)
        errors.append(f"redis: {exc}")
        redis_ok = None

    def part(name: str, refresh: float, compute: Callable[[Session], Any]) -> Any:
        def run() -> Any:
            with sessions() as session:
                return compute(session)

        try:
            return _cached(redis_ok, name, max(ttl, refresh), run)
        except SQLAlchemyError as exc:
            first_line = str(getattr(exc, "orig", exc)).strip().splitlines()[:1]
            log.warning("dashboard: %s not computed: %s", name, first_line)
            errors.append(f"database ({name}): {first_line[0] if first_line else type(exc)}")
            return None

    minute = part("1m", ttl, lambda s: count_events(s, end - timedelta(seconds=WINDOWS["1m"]), end))
    hour = part("1h", HOUR_REFRESH, lambda s: hour_figures(s, end))
    day = part(
        "24h", DAY_REFRESH, lambda s: count_events(s, end - timedelta(seconds=WINDOWS["24h"]), end)
    )
    letters = part("dead_letters", ttl, dead_letter_figures)
    body["unhandled_templates"] = part(
        "unhandled_templates", unhandled_templates.TEMPLATES_REFRESH, _templates(settings, end)
    )
    rates = body["events_per_second"]
    if minute is not None:
        rates["1m"] = round(minute / WINDOWS["1m"], 3)
    if day is not None:
        rates["24h"] = round(day / WINDOWS["24h"], 3)
    if hour is not None:
        rates["1h"] = round(hour["count_1h"] / WINDOWS["1h"], 3)
        body["events_per_minute"] = hour["per_minute"]
        body["events_per_minute_end"] = hour["per_minute_end"]
        body["top_rules"] = hour["top_rules"]
        body["top_unhandled_hosts"] = hour["top_unhandled_hosts"]
        # .get: an hour cached by a web process of the previous release lacks these for HOUR_REFRESH.
        for name in ("held_by_reason", "top_storming_devices", "top_storming_rules"):
            body[name] = hour.get(name)
    if body["flapping_pairs"]:
        clears = part("clearing_rules", HOUR_REFRESH, clearing_rules)
        for pair in body["flapping_pairs"]:
            pair["clear_rule_ids"] = (
                None if clears is None else clears.get(str(pair["problem_rule_id"]), [])
            )
    if letters is not None:
        body.update(letters)
    body["errors"] = errors
    return body


def cached_metrics(
    sessions: sessionmaker[Session], client: redis.Redis, settings: Settings
) -> dict[str, Any]:
    """:func:`collect`'s answer, at most METRICS_CACHE_TTL seconds old (shared through Redis)."""
    started = time.monotonic()
    try:
        raw = client.get(CACHE_KEY)
    except (redis.RedisError, OSError):
        raw = None
    if raw is not None:
        return orjson.loads(raw)
    body = collect(sessions, client, settings)
    body["computed_in_ms"] = round((time.monotonic() - started) * 1000, 1)
    if not body["errors"]:  # a partial answer is not kept: the next poll tries again
        with suppress(redis.RedisError, OSError):
            client.set(CACHE_KEY, orjson.dumps(body), ex=settings.metrics_cache_ttl)
    return body
