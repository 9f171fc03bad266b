"""What one MUTT process holds: its settings and, opened on first use, its connections.

The one resource container: workers, ingest, the web app and the CLI each build one :class:`Runtime`
and take the engine, sessions, Redis client, Celery client and dynamic configuration from it. What a
capability keeps per process (the rule cache, classify's backpressure reading) is a *component*:
``runtime.component(Factory)`` builds ``Factory(runtime)`` once, so this module needs to know none
of them.

Connections are opened lazily so that a prefork worker's children each open their own after the fork
(sockets shared across a fork corrupt each other), and :meth:`Runtime.reset` drops them when a process
is forked after it has used them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, cached_property
from typing import Any, TypeVar

import redis
import requests
from celery import Celery, Task, current_app
from celery.signals import worker_init, worker_process_init, worker_ready
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutt_app import tracing
from mutt_app.celery_app import make_celery, serve_worker_metrics
from mutt_app.config import Settings, SettingsError, load_settings
from mutt_app.db.engine import make_engine, session_factory
from mutt_app.dynamic_config import DynamicConfig
from mutt_app.ledger import OUTBOX, Ledger
from mutt_app.logs import configure_logging
from mutt_app.rotation import redis_client
from mutt_app.vault import VaultError, settings_for_service

T = TypeVar("T")


@dataclass(frozen=True)
class RedisProfile:
    """How patient one kind of process is with Redis.

    ``retry_attempts``: how often a command that failed on a lost connection is tried again, with
    exponential backoff and jitter (0.1 s doubling up to 2 s). A worker rides out a Redis restart
    or a Sentinel failover that way: the bookkeeping after a delivered alert (sent key, outbox) lost
    to a restart would post that alert a second time. redis-py's clients retry nothing by default.
    """

    name: str
    socket_timeout: float
    connect_timeout: float
    retry_attempts: int = 0
    # How long a dynamic-config value read from Redis is trusted. Several web processes share Redis,
    # and a change made through one must be what the next request to another reads.
    config_cache_seconds: float = 0.0

    def client_options(self) -> dict[str, Any]:
        """The redis-py client options of this profile."""
        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.connect_timeout,
        }
        if self.retry_attempts:
            options["retry"] = Retry(
                ExponentialWithJitterBackoff(base=0.1, cap=2.0), self.retry_attempts
            )
        return options


# Workers block for long reads and must survive a restart (0.1 + ... + 2 s, about 5 s in all).
WORKER = RedisProfile(
    "worker", socket_timeout=30, connect_timeout=5, retry_attempts=6, config_cache_seconds=5.0
)
# A web request answers within seconds or says 503: it never waits out a failover.
REQUEST = RedisProfile("request", socket_timeout=5, connect_timeout=2)
# A person at a terminal wants an answer or an error now.
CLI = RedisProfile("cli", socket_timeout=2, connect_timeout=2)
# A health probe asks whether Redis answers now: a second's silence is the answer.
PROBE = RedisProfile("probe", socket_timeout=1, connect_timeout=1)


class Runtime:
    """Settings plus the engine, Redis client, Celery client and components built from them."""

    def __init__(self, settings: Settings, redis_profile: RedisProfile = WORKER) -> None:
        self.settings = settings
        self.redis_profile = redis_profile
        self._components: dict[Callable[[Runtime], Any], Any] = {}
        self._components_lock = threading.Lock()

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def redis(self) -> redis.Redis:
        """The Redis client of this process, with its profile's timeouts and retries."""
        return redis_client(self.settings, **self.redis_profile.client_options())

    @cached_property
    def celery(self) -> Celery:
        """The Celery app: its tasks reach this Runtime as ``self.runtime`` (:class:`RuntimeTask`)."""
        task_cls = type("RuntimeTask", (RuntimeTask,), {"runtime": self})
        return make_celery(self.settings, task_cls)

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.redis)

    @cached_property
    def outbox(self) -> Ledger:
        """Alerts published to forward_to_moog and not yet delivered or dead-lettered."""
        return Ledger(self.redis, OUTBOX)

    @cached_property
    def dynamic_config(self) -> DynamicConfig:
        return DynamicConfig(
            self.redis, self.settings, cache_ttl=self.redis_profile.config_cache_seconds
        )

    def component(self, factory: Callable[[Runtime], T]) -> T:
        """The one ``factory(self)`` of this Runtime, built on first use (rule cache, ...)."""
        try:
            return self._components[factory]
        except KeyError:
            with self._components_lock:
                if factory not in self._components:
                    self._components[factory] = factory(self)
                return self._components[factory]

    def built(self, factory: Callable[[Runtime], T]) -> T | None:
        """The ``factory(self)`` component if this Runtime built it already, else None."""
        return self._components.get(factory)

    @cached_property
    def _http_by_thread(self) -> threading.local:
        return threading.local()

    def http(self) -> requests.Session:
        """This thread's HTTP session (forward runs in a threaded worker; sessions are not shared).

        Kept-alive connections: a new connection and session per alert cost more CPU than the rest
        of forwarding it.
        """
        local = self._http_by_thread
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = moog_session(self.settings.moog_webhook_url)
        return session

    def close(self) -> None:
        """Close what this Runtime opened (a CLI command's end, a test's teardown)."""
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
        self.reset()

    def reset(self) -> None:
        """Forget every connection and component (after a fork); the next use opens new ones."""
        if "engine" in self.__dict__:
            self.engine.dispose(close=False)
        for name in ("engine", "sessions", "redis", "ledger", "outbox", "dynamic_config"):
            self.__dict__.pop(name, None)
        self.__dict__.pop("_http_by_thread", None)
        with self._components_lock:
            self._components.clear()


class RuntimeTask(Task):
    """The base of every MUTT task (Celery's ``task_cls``): ``self.runtime`` is its process's Runtime.

    :attr:`Runtime.celery` subclasses it once per Runtime, as Flask's Celery example closes its task
    class over the Flask app.
    """

    runtime: Runtime


def runtime_of(app: Celery) -> Runtime:
    """The :class:`Runtime` whose tasks ``app`` runs."""
    return app.Task.runtime  # type: ignore[attr-defined]


class _NoRedirectSession(requests.Session):
    """A session that sees no redirect target in any answer, so it never follows one, whatever a
    request's ``allow_redirects`` says: the 3xx comes back as the answer."""

    def get_redirect_target(self, resp: requests.Response) -> str | None:
        """None: no answer is a redirect to follow."""
        return None


def moog_session(url: str | None) -> requests.Session:
    """A requests session for ``url`` that reads the proxy and CA-bundle variables once, now.

    With ``trust_env`` on, requests scans the whole environment for proxy variables on every request
    (``get_environ_proxies``), a large share of the forward task under cProfile. The webhook URL is
    fixed, so its proxy (HTTPS_PROXY, NO_PROXY, ...) and CA bundle (REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE) are looked up once; .netrc is not read (Moog's credentials are MOOG_API_KEY).
    It follows no redirect: a 3xx is not a delivery (:mod:`mutt_app.forwarding.request`), and
    following one would let whoever answers make the worker fetch any URL.
    """
    session = _NoRedirectSession()
    session.trust_env = False
    if url:
        session.proxies.update(requests.utils.get_environ_proxies(url))
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return session


@cache
def worker_app() -> Celery:
    """The app for ``celery -A mutt_app``: settings from the environment (and Vault), read once."""
    try:
        settings = settings_for_service(load_settings())
    except (SettingsError, VaultError) as exc:
        # One clear line instead of a traceback, and a non-zero exit for systemd to see.
        raise SystemExit(f"mutt: {exc}") from None
    configure_logging(settings, service="mutt-worker")
    app = Runtime(settings).celery
    app.set_current()
    app.set_default()
    return app


@worker_ready.connect
def _serve_worker_metrics(**_: object) -> None:
    runtime = getattr(current_app.Task, "runtime", None)
    if runtime is not None:
        serve_worker_metrics(runtime.settings.metrics_port_worker)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    # The parent may have opened connections (e.g. while importing); children must not share them.
    runtime = getattr(current_app.Task, "runtime", None)
    if runtime is not None:
        runtime.reset()
        tracing.start(runtime.settings, "mutt-worker")


@worker_init.connect
def _trace_worker(sender: Any = None, **_: object) -> None:
    # A threaded (or solo) worker runs its tasks in this process; a prefork worker's children each
    # start their own after the fork (above), so that the exporter's thread and connection are theirs.
    runtime = getattr(current_app.Task, "runtime", None)
    if runtime is None or not runtime.settings.otel_enabled:
        return
    from celery.concurrency import get_implementation
    from celery.concurrency.prefork import TaskPool as PreforkPool

    if get_implementation(sender.pool_cls) is not PreforkPool:
        tracing.start(runtime.settings, "mutt-worker")
