"""The Celery application: ``celery -A mutt_app worker|beat|flower`` finds ``app`` here.

Static options live in ``celeryconfig.py``; what depends on MUTT's settings (broker, visibility timeout,
beat intervals) is applied by :func:`make_celery`, so tests and the ingest app can build an app for
any settings without touching the environment.
"""

from __future__ import annotations

import logging
import ssl
from datetime import timedelta
from urllib.parse import quote

import orjson
from celery import Celery, Task
from celery.schedules import crontab
from kombu.serialization import register

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.names import (
    CHECK_HEARTBEATS_TASK,
    CLASSIFY_TASK,
    CREATE_PARTITIONS_TASK,
    EVENTS_CONTENT_TYPE,
    EVENTS_SERIALIZER,
    FLUSH_HELD_TASK,
    FORWARD_TASK,
    RECONCILE_LEDGER_TASK,
    REMEDIATE_DLQ_TASK,
    RETENTION_TASK,
)
from mutt_app.redelivery import LeaseRenewal
from mutt_app.rotation import redis_password, sentinel_connection_options

# Beat wakes at least this often (seconds), and a standby beat takes over this long after the
# active one stopped renewing its lock.
BEAT_MAX_LOOP_INTERVAL = 5
BEAT_LOCK_TIMEOUT = 30

TASK_MODULES = (
    "mutt_app.tasks.classify",
    "mutt_app.tasks.forward",
    "mutt_app.tasks.remediation",
    "mutt_app.tasks.maintenance",
)
# Imported by every worker and beat process as well (Celery's ``include``): the health probes and
# the SIGHUP reload (mutt_app.worker), which sit above this module's layer and so are named, not
# imported, here.
PROCESS_MODULES = ("mutt_app.worker.health",)


class BodyDecoder:
    """orjson.loads for task bodies, which answers the second decode of one message from memory.

    A Celery worker decodes every task body twice: in the consumer, only to see whether it is a
    protocol-1 "hybrid" message (``'args' not in message.payload``, celery/worker/strategy.py),
    and again in the pool, from the same body object, to run the task; for a classify batch of
    hundreds of events, the first decode is a share of the worker's CPU worth saving
    (BENCHMARKS.md). The last body decoded and its value are kept until the same object is decoded
    again, or the next body replaces them: one entry, so at most one batch is held. Any other call
    decodes afresh.
    """

    def __init__(self) -> None:
        self._last: tuple[object, object] = (None, None)

    def __call__(self, data: bytes | str) -> object:
        """The decoded body: from memory when ``data`` is the body object decoded last."""
        # One tuple, read and written whole, so that a thread pool's consumer and pool threads
        # never see a body with another's value; a miss only costs the decode it always cost.
        last_data, last_value = self._last
        if data is last_data:
            self._last = (None, None)
            return last_value
        value = orjson.loads(data)
        self._last = (data, value)
        return value


# A classify task's body is its events: the senders' JSON, read at ingest by orjson. kombu's own
# JSON decoder would read a sender's {"__type__": "datetime", "__value__": ...} as a datetime and
# fail the whole batch on a "__type__" it does not know, so these bodies are written and read by
# orjson alone (celeryconfig routes every classify task here). orjson also embeds the wire JSON
# ingest already wrote (orjson.Fragment) and reads a batch in less time than the stdlib.
register(EVENTS_SERIALIZER, orjson.dumps, BodyDecoder(), EVENTS_CONTENT_TYPE, "utf-8")
WORKER_PROBES_STEP = "mutt_app.worker.health:WorkerProbes"


def make_celery(settings: Settings, task_cls: type[Task] = Task) -> Celery:
    """A Celery app configured from ``celeryconfig`` and ``settings``; its tasks derive ``task_cls``.

    Build it through :attr:`mutt_app.runtime.Runtime.celery`, whose task class carries the Runtime.
    """
    app = Celery(
        "mutt", include=[*TASK_MODULES, *PROCESS_MODULES], set_as_current=False, task_cls=task_cls
    )
    app.config_from_object("celeryconfig")
    password = redis_password(settings) if any(settings.redis_passwords()) else None
    app.conf.broker_url = broker_url(settings, password)
    app.conf.broker_transport_options = {
        # A lease, renewed by live workers (LeaseRenewal): only a dead worker's messages outlive it.
        "visibility_timeout": settings.broker_visibility_timeout,
        # Scan for them every interval (throttle 1: no skipped scans), so a dead worker's batches
        # run again about visibility_timeout + interval after it died.
        "unacked_restore_interval": settings.broker_restore_interval,
        "unacked_restore_throttle": 1,
        # A worker killed mid-scan holds the scan's lock until it expires (kombu's default: 300 s).
        "unacked_mutex_expire": settings.broker_visibility_timeout,
        "socket_timeout": 30,
        "socket_connect_timeout": 5,
        "health_check_interval": 10,
        # Bodies go into kombu's JSON envelope as they are, not base64-encoded first: a classify
        # task of hundreds of events is written and read in half the CPU (BENCHMARKS.md). Each
        # message says how its body is encoded, so messages queued by an earlier release (base64)
        # are still read, and an earlier release reads these.
        "body_encoding": None,
    }
    if settings.sentinel:
        app.conf.broker_transport_options.update(
            master_name=settings.redis_sentinel_master,
            sentinel_kwargs=sentinel_connection_options(settings),
        )
        if settings.redis_tls_enabled:
            app.conf.broker_use_ssl = _master_tls(settings)
    app.conf.broker_pool_limit = settings.redis_max_connections
    # Celery's rate_limit is per worker: a ceiling, not the limit Moog sees (that one is shared
    # through Redis, see mutt_app.tasks.forward).
    app.conf.task_annotations = {
        FORWARD_TASK: {"rate_limit": settings.worker_rate_limit},
        # CLASSIFY_TASK_EVENTS off: Flower does without classify's task events (it declutters Flower).
        CLASSIFY_TASK: {"send_events": settings.classify_task_events},
    }
    app.steps["consumer"].add(LeaseRenewal)
    app.steps["consumer"].add(WORKER_PROBES_STEP)
    app.conf.beat_schedule = beat_schedule(settings)
    # RedBeat keeps the schedule in Redis behind a lock: two beat processes can run for high
    # availability and each job still fires once; the standby takes over when the lock expires.
    app.conf.beat_scheduler = "redbeat.RedBeatScheduler"
    app.conf.redbeat_redis_url = app.conf.broker_url
    app.conf.redbeat_redis_options = {"socket_timeout": 30, "socket_connect_timeout": 5}
    if settings.sentinel:
        # RedBeat asks the Sentinels for the master each time it needs its client.
        app.conf.redbeat_redis_url = "redis-sentinel://"
        app.conf.redbeat_redis_options = {
            "sentinels": list(settings.redis_sentinel_hosts),
            "service_name": settings.redis_sentinel_master,
            "password": password,
            "db": settings.redis_db,
            "socket_timeout": 30,
            "sentinel_kwargs": sentinel_connection_options(settings),
        }
        if settings.redis_tls_enabled:
            app.conf.redbeat_redis_use_ssl = _master_tls(settings)
    app.conf.redbeat_key_prefix = "mutt:redbeat:"
    app.conf.redbeat_lock_timeout = BEAT_LOCK_TIMEOUT
    app.conf.beat_max_loop_interval = BEAT_MAX_LOOP_INTERVAL
    return app


def broker_url(settings: Settings, password: str | None) -> str:
    """The broker URL: the Redis server, or one ``sentinel://`` URL per Sentinel joined by ``;``.

    Through Sentinel, kombu asks the Sentinels for the master each time it connects, and the
    password in the URL is the master's (the Sentinels' own goes in ``sentinel_kwargs``).
    """
    if not settings.sentinel:
        return settings.redis_dsn(password)
    auth = f":{quote(password, safe='')}@" if password else ""
    return ";".join(
        f"sentinel://{auth}{host}:{port}/{settings.redis_db}"
        for host, port in settings.redis_sentinel_hosts
    )


def _master_tls(settings: Settings) -> dict[str, object]:
    options: dict[str, object] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_ca_cert_path:
        options["ssl_ca_certs"] = str(settings.redis_ca_cert_path)
    return options


def beat_schedule(settings: Settings) -> dict[str, dict]:
    """Periodic jobs; each interval comes from the settings."""
    return {
        "remediate-dlq": {
            "task": REMEDIATE_DLQ_TASK,
            "schedule": timedelta(seconds=settings.remediation_interval_seconds),
        },
        "reconcile-ledger": {
            "task": RECONCILE_LEDGER_TASK,
            "schedule": timedelta(seconds=max(settings.ledger_reconcile_after // 4, 5)),
        },
        "flush-held": {
            "task": FLUSH_HELD_TASK,
            "schedule": timedelta(seconds=settings.dedup_flush_interval_seconds),
        },
        "check-heartbeats": {
            "task": CHECK_HEARTBEATS_TASK,
            "schedule": timedelta(seconds=settings.heartbeat_check_interval_seconds),
        },
        "create-partitions": {
            "task": CREATE_PARTITIONS_TASK,
            "schedule": crontab.from_string(settings.partition_schedule),
        },
        "retention": {
            "task": RETENTION_TASK,
            "schedule": crontab.from_string(settings.retention_schedule),
        },
    }


def serve_worker_metrics(port: int) -> None:
    """Serve the worker host's metrics on ``port`` (0: not at all), once per host.

    One HTTP server per worker host, in the main process, merging the pool processes' samples
    (prometheus_client multiprocess mode, switched on by PROMETHEUS_MULTIPROC_DIR).
    """
    # This process's predecessor, killed outright, must not go on counting in the merged page.
    metrics.forget_dead_processes()
    if not port:
        return
    try:
        metrics.serve_metrics(port)
    except OSError as exc:  # another worker on this host already serves the merged metrics
        logging.getLogger(__name__).info("worker metrics port %d not opened: %s", port, exc)
