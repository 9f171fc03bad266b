"""MUTT's Prometheus metrics, all in one place, named as in the v2.5 quick reference.

The classify worker's solo processes, Celery's prefork pool processes and gunicorn's workers are
separate processes; with PROMETHEUS_MULTIPROC_DIR set (``mutt run`` and the deploy units set it)
each process writes its samples there and :func:`exposition` merges them, so one scrape sees the
whole host.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from mutt_app.names import HELD_REASONS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# --- ingest ---------------------------------------------------------------------------------------
INGEST_REQUESTS = Counter(
    "mutt_ingest_requests_total", "Ingest requests by outcome", ["status", "reason"]
)
# At 0 from the start: Prometheus' increase() cannot count a series' first sample, so the first
# request of an outcome after a restart would be missing from the SLO (mutt_app.watch.slo).
INGEST_REQUESTS.labels("success", "")
for _reason in (
    "auth",
    "auth_throttled",
    "too_large",
    "invalid_body",
    "no_valid_events",
    "queue_full",
    "replication_shortfall",
    "redis_unavailable",
):
    INGEST_REQUESTS.labels("fail", _reason)
INGEST_EVENTS = Counter("mutt_ingest_events_total", "Events received by outcome", ["status"])
INGEST_QUEUE_DEPTH = Gauge(
    "mutt_ingest_queue_depth", "Messages waiting in the classify queue", multiprocess_mode="max"
)
INGEST_LATENCY = Histogram(
    "mutt_ingest_latency_seconds", "Ingest request latency", buckets=LATENCY_BUCKETS
)
INGEST_PUBLISH_ROUND = Histogram(
    "mutt_ingest_publish_round_requests",
    "Requests whose events one publishing round put in the ledger and on the broker together",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
INGEST_REPLICATION_SHORTFALL = Counter(
    "mutt_ingest_replication_shortfall_total",
    "Publishing rounds answered 503 because fewer than INGEST_MIN_REPLICAS replicas acknowledged",
)
INGEST_INEXACT_ITEMS = Counter(
    "mutt_ingest_inexact_items_total",
    "Items refused because a plain JSON reading would change them (duplicate_key, long_integer)",
    ["kind"],
)
for _kind in ("duplicate_key", "long_integer"):
    INGEST_INEXACT_ITEMS.labels(_kind)
INGEST_EVENT_TIME_ADJUSTED = Counter(
    "mutt_ingest_event_time_adjusted_total",
    "Events audited under received_at: their own time was outside EVENT_TIME_MAX_AGE_DAYS (past)"
    " or EVENT_TIME_MAX_AHEAD_MINUTES (future)",
    ["direction"],
)
for _direction in ("past", "future"):
    INGEST_EVENT_TIME_ADJUSTED.labels(_direction)

# --- classify (the v2.5 "alerter") ----------------------------------------------------------------
EVENTS_PROCESSED = Counter(
    "mutt_alerter_events_processed_total",
    "Events classified, by status (handled/unhandled/poison/error) and handling",
    ["status", "handling"],
)
CLASSIFY_EVENT_LATENCY = Histogram(
    "mutt_alerter_processing_latency_seconds",
    "Classification time per event (batch time divided by its size)",
    buckets=(0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1),
)
CLASSIFY_BATCH_LATENCY = Histogram(
    "mutt_alerter_batch_latency_seconds",
    "classify_event task time per batch",
    buckets=LATENCY_BUCKETS,
)
END_TO_END_LATENCY = Histogram(
    "mutt_end_to_end_latency_seconds",
    "From an event's receipt at ingest to its audit row's commit",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RULES_CACHED = Gauge(
    "mutt_alerter_cache_rules_count", "Active rules compiled", multiprocess_mode="max"
)
DEV_HOSTS_CACHED = Gauge(
    "mutt_alerter_cache_dev_hosts_count", "Development hosts cached", multiprocess_mode="max"
)
TEAMS_CACHED = Gauge(
    "mutt_alerter_cache_teams_count", "Device team mappings cached", multiprocess_mode="max"
)
RULE_RELOAD_FAILURES = Counter(
    "mutt_alerter_cache_reload_failures_total", "Failed rule cache reloads"
)
RULES_SKIPPED = Gauge(
    "mutt_alerter_cache_rules_skipped_count",
    "Active rules the last compile skipped (invalid, or over a rule bound)",
    multiprocess_mode="max",
)
DEDUP_KEYS_IGNORED = Gauge(
    "mutt_alerter_cache_dedup_keys_ignored_count",
    "Active rules whose stored dedup_key the last compile could not use (the default key applies)",
    multiprocess_mode="max",
)
RULE_BACKTESTS = Counter(
    "mutt_rule_backtests_total",
    "Rule backtests run, by outcome (complete; rows or time: stopped by BACKTEST_MAX_ROWS or"
    " BACKTEST_TIME_BUDGET_SECONDS, the answer then says truncated; busy: refused 429, the web"
    " process already running BACKTEST_MAX_CONCURRENT)",
    ["outcome"],
)
for _outcome in ("complete", "rows", "time", "busy"):
    RULE_BACKTESTS.labels(_outcome)
RULE_BACKTEST_ROWS = Counter(
    "mutt_rule_backtest_rows_total", "Audited events decided again by rule backtests"
)
CLASSIFY_BUDGET_EXCEEDED = Counter(
    "mutt_alerter_time_budget_events_total",
    "Events a classify task left undecided when CLASSIFY_TIME_BUDGET_SECONDS ran out, by outcome"
    " (deferred: handed on in a new task; dead_lettered: one event alone used the whole budget)",
    ["outcome"],
)
for _outcome in ("deferred", "dead_lettered"):
    CLASSIFY_BUDGET_EXCEEDED.labels(_outcome)
DB_WRITE_LATENCY = Histogram(
    "mutt_db_write_latency_ms",
    "Audit batch insert latency in milliseconds",
    buckets=(1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
META_ALERTS = Counter(
    "mutt_alerter_unhandled_meta_alerts_total", "Unhandled-event meta-alerts raised"
)
ALERTS_HELD = Counter(
    "mutt_alerts_held_total",
    "Events a rule would forward that were not sent to Moog, by reason (names.HELD_REASONS)",
    ["reason"],
)
for _reason in HELD_REASONS:
    ALERTS_HELD.labels(_reason)
DEDUP_UPDATES = Counter(
    "mutt_dedup_updates_total", "Repeat-count updates sent to Moog for closed dedup windows"
)
STORM_SUMMARIES = Counter(
    "mutt_storm_summaries_total",
    "Summary alerts sent to Moog for storm-budget windows that held alerts, by scope",
    ["scope"],
)
for _scope in ("device", "rule"):
    STORM_SUMMARIES.labels(_scope)
HELD_WINDOW_OVERFLOW = Counter(
    "mutt_held_window_overflow_total",
    "Held alerts counted without their detail: their window kept its cap (storm: message templates,"
    " MAX_TEMPLATES; maintenance: hosts, MAX_HOSTS)",
    ["window"],
)
for _window in ("storm", "maintenance"):
    HELD_WINDOW_OVERFLOW.labels(_window)
MAINTENANCE_DOWNGRADED = Counter(
    "mutt_maintenance_downgraded_total",
    "Page_and_ticket alerts a maintenance window downgraded to Ticket_only",
)
MAINTENANCE_SUMMARIES = Counter(
    "mutt_maintenance_summaries_total",
    "Summary alerts sent to Moog for maintenance-window occurrences that held or downgraded alerts",
)
MAINTENANCE_WINDOWS_OPEN = Gauge(
    "mutt_maintenance_windows_open",
    "Maintenance windows open as classify last saw them",
    multiprocess_mode="max",
)
FLAPPING_ALERTS = Counter(
    "mutt_flapping_alerts_total",
    "Flapping alerts sent to Moog, by event: raised (a pair started flapping) or ended",
    ["event"],
)
for _event in ("raised", "ended"):
    FLAPPING_ALERTS.labels(_event)
HEARTBEAT_ALERTS = Counter(
    "mutt_heartbeat_alerts_total",
    "Heartbeat alerts sent to Moog, by event: raised (a watched host went quiet) or cleared",
    ["event"],
)
for _event in ("raised", "cleared"):
    HEARTBEAT_ALERTS.labels(_event)
LAST_SEEN_PRUNED = Counter(
    "mutt_heartbeat_last_seen_pruned_total",
    "Hosts dropped from the heartbeats' last-seen set: aged (silent past the longest interval plus"
    " HEARTBEAT_LAST_SEEN_MARGIN_SECONDS) or overflow (past HEARTBEAT_LAST_SEEN_MAX_HOSTS)",
    ["reason"],
)
for _reason in ("aged", "overflow"):
    LAST_SEEN_PRUNED.labels(_reason)
LAST_SEEN_HOSTS = Gauge(
    "mutt_heartbeat_last_seen_hosts",
    "Hosts in the heartbeats' last-seen set after the last check's pruning",
    multiprocess_mode="mostrecent",
)
UNHANDLED_HOSTS_OVERFLOW = Counter(
    "mutt_unhandled_hosts_overflow_total",
    "Unmatched events not counted per host: UNHANDLED_MAX_HOSTS hosts already counted this window",
)
HEARTBEAT_QUIET_OVER_CAP = Gauge(
    "mutt_heartbeat_quiet_over_cap",
    "Quiet hosts not alerted because their heartbeat already has HEARTBEAT_MAX_QUIET_HOSTS open"
    " alerts, as the last check saw them",
    multiprocess_mode="mostrecent",
)
SCHEDULE_WALKS_STOPPED = Counter(
    "mutt_schedule_walks_stopped_total",
    "Maintenance-window schedule walks stopped at a bound: MAX_SKIPPED_DATES dates skipped in a row"
    " or MAX_WALK_SECONDS for one step",
)
HEARTBEAT_QUIET_HOSTS = Gauge(
    "mutt_heartbeat_quiet_hosts",
    "Hosts a heartbeat watches that are quiet now (an alert is open), as the last check saw them",
    multiprocess_mode="mostrecent",
)
DEAD_LETTERED = Counter(
    "mutt_dead_letters_total", "Items written to the dead-letter queue", ["task", "reason"]
)
CLASSIFY_OUTAGE_RETRIES = Counter(
    "mutt_alerter_outage_retries_total",
    "Classify batches put off for later because the database or Redis was unavailable",
    ["cause"],
)
for _cause in ("database", "redis"):
    CLASSIFY_OUTAGE_RETRIES.labels(_cause)
TICKET_LANE_DEPTH = Gauge(
    "mutt_alerter_queue_depth",
    "Ticket lane (mutt.forward) length as classify last read it for backpressure",
    multiprocess_mode="max",
)
BACKPRESSURE_STATE = Gauge(
    "mutt_alerter_backpressure_state",
    "Classify backpressure: 0 normal, 1 above the warn threshold, 2 shedding",
    multiprocess_mode="max",
)
SHED_EVENTS = Counter(
    "mutt_alerter_shed_events_total",
    "Ticket_only alerts shed by classify backpressure, by mode (dlq, defer)",
    ["mode"],
)
for _mode in ("dlq", "defer"):
    SHED_EVENTS.labels(_mode)
LEDGER_REPUBLISHED = Counter(
    "mutt_ledger_republished_total",
    "Work the broker lost, published again by reconciliation (classify batches, forward alerts)",
    ["step"],
)
for _step in ("classify", "forward"):
    LEDGER_REPUBLISHED.labels(_step)  # a series at 0 from the start, for rate() and alerts

# --- forward to Moog ------------------------------------------------------------------------------
MOOG_REQUESTS = Counter("mutt_moog_requests_total", "Moog webhook requests", ["status", "reason"])
MOOG_REQUESTS.labels("success", "")  # at 0 from the start, for the SLO (as INGEST_REQUESTS)
MOOG_LATENCY = Histogram(
    "mutt_moog_request_latency_seconds", "Moog webhook latency", buckets=LATENCY_BUCKETS
)
MOOG_ALERTS = Counter("mutt_moog_alerts_processed_total", "Alerts by outcome", ["status"])
# The forward error ratio rules divide these from the start; "poisoned": refused before any
# request, malformed or oversize (mutt_app.forwarding.admission).
for _status in ("success", "dlq", "duplicate", "poisoned"):
    MOOG_ALERTS.labels(_status)
MOOG_REDIRECTS = Counter(
    "mutt_moog_redirects_total", "3xx answers from Moog (not followed; dead-lettered)", ["status"]
)
for _status in ("301", "302", "303", "307", "308"):
    MOOG_REDIRECTS.labels(_status)
MOOG_UNREADABLE_ANSWERS = Counter(
    "mutt_moog_unreadable_answers_total",
    "2xx answers from Moog whose body could not be read (their alerts dead-lettered)",
)
MOOG_EVENTS_REFUSED = Counter(
    "mutt_moog_events_refused_total", "Events a 2xx answer from Moog reported as failed"
)
MOOG_RATE_LIMIT_HITS = Counter("mutt_moog_rate_limit_hits_total", "Times the shared limit deferred")
MOOG_RETRIES = Counter(
    "mutt_moog_retries_total", "Failed posts scheduled for another attempt", ["reason"]
)
MOOG_CIRCUIT_STATE = Gauge(
    "mutt_moog_circuit_state",
    "Circuit breaker: 0 CLOSED, 1 OPEN, 2 HALF_OPEN",
    multiprocess_mode="max",
)

# --- queues and remediation (sampled by beat and the web app) -------------------------------------
QUEUE_DEPTH = Gauge(
    "mutt_queue_depth", "Messages waiting per queue", ["queue"], multiprocess_mode="max"
)
DLQ_DEPTH = Gauge("mutt_dlq_depth", "Dead letters waiting", ["task"], multiprocess_mode="max")
POISON_DEPTH = Gauge("mutt_poison_depth", "Items remediation gave up on", multiprocess_mode="max")
# The quick reference's per-stage names for mutt_dlq_depth{task}, sampled with it.
ALERTER_DLQ_DEPTH = Gauge(
    "mutt_alerter_dlq_depth", "Dead letters of classification waiting", multiprocess_mode="max"
)
MOOG_DLQ_DEPTH = Gauge(
    "mutt_moog_dlq_depth", "Dead letters of forwarding to Moog waiting", multiprocess_mode="max"
)
# The quick reference's processing lists are, under Celery, the messages a worker holds: delivered
# to it and not yet acknowledged (running, or waiting for a countdown). Each worker sets its own
# count (mutt_app.redelivery); livesum adds up the live workers of a host.
ALERTER_PROCESSING_DEPTH = Gauge(
    "mutt_alerter_processing_list_depth",
    "Classify messages this host's workers hold (delivered, not yet acknowledged)",
    multiprocess_mode="livesum",
)
MOOG_PROCESSING_DEPTH = Gauge(
    "mutt_moog_processing_list_depth",
    "Forward messages (both lanes) this host's workers hold (delivered, not yet acknowledged)",
    multiprocess_mode="livesum",
)
BROKER_LEASE_RENEWAL_FAILURES = Counter(
    "mutt_broker_lease_renewal_failures_total",
    "Renewals of a worker's hold on its unacked messages that failed (mutt_app.redelivery)",
)
REMEDIATION_REPLAYED = Counter(
    "mutt_remediation_replayed_total", "Dead letters replayed", ["source", "status"]
)
REMEDIATION_SCAN = Histogram(
    "mutt_remediation_dlq_scan_duration_seconds", "Remediation run time", buckets=LATENCY_BUCKETS
)

# --- web UI ----------------------------------------------------------------------------------------
WEBUI_REDIS_SCAN_LATENCY = Histogram(
    "mutt_webui_redis_scan_latency_seconds",
    "Time the dashboard spends reading its figures from Redis (queues, circuit, flapping, quiet"
    " hosts), per computation",
    buckets=LATENCY_BUCKETS,
)
WEBUI_DB_QUERY_LATENCY = Histogram(
    "mutt_webui_db_query_latency_ms",
    "Dashboard database query latency in milliseconds",
    ["operation"],
    buckets=(1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000),
)

# --- retention (beat's retention job and `mutt retention run`) ------------------------------------
RETENTION_ROWS_ARCHIVED = Counter(
    "mutt_retention_rows_archived_total",
    "Rows archived (and verified) before retention removed them",
    ["table"],
)
for _table in ("event_audit_log", "dead_letters", "poison_letters"):
    RETENTION_ROWS_ARCHIVED.labels(_table)
RETENTION_PARTITIONS_DROPPED = Counter(
    "mutt_retention_partitions_dropped_total", "Event audit partitions archived and dropped"
)
RETENTION_FAILURES = Counter(
    "mutt_retention_failures_total", "Retention steps that failed (their data kept)", ["step"]
)
for _step in ("detach", "archive"):
    RETENTION_FAILURES.labels(_step)
AUDIT_DEFAULT_ROWS_OUTSIDE_WINDOW = Gauge(
    "mutt_audit_default_rows_outside_window",
    "Audit rows in the default partition stamped before 1970 or after 9999-11, which no job moves"
    " or archives, at the last partition or retention run",
    multiprocess_mode="max",
)
RETENTION_LAST_SUCCESS = Gauge(
    "mutt_retention_last_success_timestamp_seconds",
    "When a retention run last finished without failures",
    multiprocess_mode="max",
)

# --- web UI and REST API --------------------------------------------------------------------------
WEBUI_API_REQUESTS = Counter(
    "mutt_webui_api_requests_total", "REST API requests by route and status", ["endpoint", "status"]
)
WEBUI_API_LATENCY = Histogram(
    "mutt_webui_api_latency_seconds", "REST API latency", ["endpoint"], buckets=LATENCY_BUCKETS
)
WEBUI_AUTH_FAILURES = Counter(
    "mutt_webui_auth_failures_total", "Failed log-ins and bad API keys", ["kind"]
)
WEBUI_AUTH_THROTTLED = Counter(
    "mutt_webui_auth_throttled_total",
    "Attempts refused 429 by the per-IP or per-account-and-IP throttle",
    ["kind"],
)


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """Observe each of ``amounts`` in ``histogram`` (one without labels, or one ``labels()``
    child) with the same exposition as ``histogram.observe`` called once per amount: each bucket
    counts the same amounts, ``_count`` is the same, ``_sum`` adds them all.

    Why: in multiprocess mode (PROMETHEUS_MULTIPROC_DIR) every ``observe`` is two locked writes
    to the process's mmap file (the sum and one bucket) behind a pid check; classify observes
    each event's end-to-end latency. Here the amounts are counted per bucket first, then written
    once: one write to the sum and one per bucket that got any. prometheus_client has no public
    batch observe, so this uses the histogram's own bounds and values (``_upper_bounds``,
    ``_buckets``, ``_sum``), as ``Histogram.observe`` does; a unit test compares the two
    expositions, so a prometheus_client that changed them would fail it.

    The sum is added as one increment: the same total, though floating-point rounding may differ
    in the last bits from adding each amount in turn. An amount fits the first bucket whose bound
    it does not exceed, as in ``observe`` (NaN fits none but is added to the sum, as there).
    """
    histogram._raise_if_not_observable()  # a labelled parent has no values, as in observe
    bounds: list[float] = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    observed = False
    for amount in amounts:
        observed = True
        total += amount
        index = bisect_left(bounds, amount)
        if index < len(bounds) and amount <= bounds[index]:
            counts[index] += 1
    if not observed:
        return
    histogram._sum.inc(total)
    for value, count in zip(histogram._buckets, counts, strict=True):
        if count:
            value.inc(count)


def serve_metrics(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on ``port`` from a background thread (merged across processes if enabled)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_http_server(port, addr=addr, registry=registry)
    else:
        start_http_server(port, addr=addr)


def forget_dead_processes() -> list[int]:
    """Drop the live-only gauge samples (``livesum``) of this host's processes that are gone.

    A process killed outright (a classify worker's solo process SIGKILLed, then restarted on its
    own) leaves its samples behind, and a ``livesum`` gauge (the messages a worker holds) would go
    on counting them. Each worker calls this when it starts. Returns the pids forgotten.
    """
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return []
    pids = set()
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            pids.add(int(pid))
    for pid in pids:
        multiprocess.mark_process_dead(pid, directory)
    return sorted(pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def exposition() -> tuple[bytes, str]:
    """The metrics page and its content type, merged across processes when multiprocess is on."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
