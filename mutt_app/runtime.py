"""What one MUTT process holds: its settings and, opened on first use, its connections.

Connections are opened lazily so that a prefork worker's children each open their own after the fork
(sockets shared across a fork corrupt each other), and :meth:`Runtime.reset` drops them when a process
is forked after it has used them.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property

import redis
import requests
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.db.engine import make_engine, session_factory
from mutt_app.dynamic_config import DynamicConfig
from mutt_app.holdback.backpressure import Backpressure
from mutt_app.ledger import OUTBOX, Ledger
from mutt_app.rotation import redis_client
from mutt_app.rules.cache import RuleCache

# A Redis restart (or a Sentinel failover) takes the server away for a moment. A command that fails
# then is tried again for a few seconds before its task sees the error: the bookkeeping after a
# delivered alert (sent key, outbox) lost to a restart would post that alert a second time.
# redis-py's clients made from a URL retry nothing by default.
REDIS_RETRY_ATTEMPTS = 6  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 2 s at most, with jitter


def redis_retry() -> Retry:
    """How a worker's Redis commands ride out a restart of the server."""
    return Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), REDIS_RETRY_ATTEMPTS)


_LAZY = (
    "engine", "sessions", "redis", "ledger", "outbox", "rules", "dynamic_config", "backpressure",
    "_http_by_thread",
)  # fmt: skip


class Runtime:
    """Settings plus the engine, Redis client, ledger and rule cache built from them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(
            self.settings, socket_timeout=30, socket_connect_timeout=5, retry=redis_retry()
        )

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.redis)

    @cached_property
    def outbox(self) -> Ledger:
        """Alerts published to forward_to_moog and not yet delivered or dead-lettered."""
        return Ledger(self.redis, OUTBOX)

    @cached_property
    def rules(self) -> RuleCache:
        return RuleCache(self.sessions, self.redis, self.settings)

    @cached_property
    def dynamic_config(self) -> DynamicConfig:
        return DynamicConfig(self.redis, self.settings)

    @cached_property
    def backpressure(self) -> Backpressure:
        """The ticket lane's pressure as this process sees it (classify's shedding)."""
        return Backpressure(self.redis, self.dynamic_config)

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

    def reset(self) -> None:
        """Forget every connection (after a fork); the next use opens new ones."""
        if "engine" in self.__dict__:
            self.engine.dispose(close=False)
        for name in _LAZY:
            self.__dict__.pop(name, None)


def moog_session(url: str | None) -> requests.Session:
    """A requests session for ``url`` that reads the proxy and CA-bundle variables once, now.

    With ``trust_env`` on, requests scans the whole environment for proxy variables on every request
    (``get_environ_proxies``): a quarter of the forward task under cProfile; without it the worker's
    CPU per alert went from 4.9 to 4.5 ms. The webhook URL is fixed, so its proxy (HTTPS_PROXY,
    NO_PROXY, ...) and CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) are looked up once; .netrc is
    not read (Moog's credentials are MOOG_API_KEY).
    """
    session = requests.Session()
    session.trust_env = False
    if url:
        session.proxies.update(requests.utils.get_environ_proxies(url))
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return session
