"""Zero-downtime password rotation: connect with the current password, then the next one.

During a rotation Vault holds both REDIS_PASS_CURRENT/REDIS_PASS_NEXT (and DB_PASS_CURRENT/DB_PASS_NEXT).
The servers switch from one to the other at some moment MUTT cannot know, so every new connection tries
the passwords in order and remembers which one worked. That holds for connections a long-lived engine or
Redis client opens later too (a pool growing, a reconnect after a restart), not only for the first one.
Which one worked is logged by position ("current" or "next"); the secret itself never reaches a log.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis
import redis.sentinel
from sqlalchemy import Engine, event

from mutt_app.config import Settings

log = logging.getLogger(__name__)

_LABELS = ("current", "next")


def _label(index: int) -> str:
    return _LABELS[index] if index < len(_LABELS) else f"candidate {index + 1}"


class NoWorkingPassword(ConnectionError):
    """Every candidate password was refused."""


def _is_auth_failure_pg(exc: Exception) -> bool:
    text = str(exc).lower()
    return "password authentication failed" in text or "authentication failed" in text


def install_postgres_rotation(engine: Engine, passwords: Sequence[str | None]) -> None:
    """Make ``engine`` try each password in order on every new connection.

    The last password that worked is tried first next time, so a completed rotation costs one failed
    attempt once, not on every connection.
    """
    candidates = list(passwords)
    if len(candidates) <= 1:
        if candidates and candidates[0] is not None:
            password = candidates[0]

            @event.listens_for(engine, "do_connect")
            def _single(dialect, _rec, cargs, cparams):  # type: ignore[no-untyped-def]
                cparams["password"] = password

        return

    state = {"preferred": 0}

    @event.listens_for(engine, "do_connect")
    def _rotate(dialect, _rec, cargs, cparams):  # type: ignore[no-untyped-def]
        order = [
            state["preferred"],
            *(i for i in range(len(candidates)) if i != state["preferred"]),
        ]
        last_error: Exception | None = None
        for index in order:
            params = dict(cparams)
            if candidates[index] is not None:
                params["password"] = candidates[index]
            try:
                connection = dialect.dbapi.connect(*cargs, **params)
            except dialect.dbapi.OperationalError as exc:
                if not _is_auth_failure_pg(exc):
                    raise
                last_error = exc
                continue
            if index != state["preferred"]:
                log.warning("database login succeeded with the %s password", _label(index))
                state["preferred"] = index
            return connection
        raise NoWorkingPassword("database refused every configured password") from last_error


def _is_wrong_password_redis(exc: redis.RedisError) -> bool:
    if isinstance(exc, redis.AuthenticationError):
        return True
    # "WRONGPASS" on Redis 6+, "NOAUTH" when a password is needed and none was sent.
    return isinstance(exc, redis.ResponseError) and (
        "WRONGPASS" in str(exc) or "NOAUTH" in str(exc)
    )


def redis_password(settings: Settings, **client_options: Any) -> str | None:
    """The first of the configured Redis passwords the server accepts.

    Through Sentinel, the server is the master Sentinel names now. Raises
    :class:`NoWorkingPassword` when all are refused; connection errors pass through.
    """
    candidates = settings.redis_passwords()
    last_error: Exception | None = None
    for index, password in enumerate(candidates):
        client = _plain_client(settings, password, client_options)
        try:
            client.ping()
        except (redis.AuthenticationError, redis.ResponseError) as exc:
            if not _is_wrong_password_redis(exc):
                raise
            last_error = exc
            continue
        finally:
            client.close()
        if index > 0:
            log.warning("redis login succeeded with the %s password", _label(index))
        return password
    raise NoWorkingPassword("redis refused every configured password") from last_error


def sentinel_connection_options(settings: Settings) -> dict[str, Any]:
    """How to talk to the Sentinels themselves (redis-py's ``sentinel_kwargs``)."""
    options: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}
    if settings.redis_sentinel_password is not None:
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    if settings.redis_sentinel_tls_enabled:
        options["ssl"] = True
        if settings.redis_ca_cert_path:
            options["ssl_ca_certs"] = str(settings.redis_ca_cert_path)
    return options


def _plain_client(settings: Settings, password: str | None, options: dict[str, Any]) -> redis.Redis:
    """A client of the configured server, or of the master Sentinel names, with ``password``."""
    if not settings.sentinel:
        return _pooled_client(settings.redis_dsn(password), options)
    # The master's connections take the TLS options only when TLS is on (plain ones refuse them).
    master_options = {
        k: v
        for k, v in options.items()
        if k != "max_connections" and (settings.redis_tls_enabled or not k.startswith("ssl_"))
    }
    if settings.redis_tls_enabled:
        master_options["ssl"] = True  # SentinelConnectionPool picks its TLS connection class
    sentinel = redis.sentinel.Sentinel(
        list(settings.redis_sentinel_hosts),
        sentinel_kwargs=sentinel_connection_options(settings),
        db=settings.redis_db,
        password=password,
        **master_options,
    )
    # Each connection asks the Sentinels for the master when it connects, and one that finds the
    # server demoted (READONLY) drops and asks again: the client follows a failover by itself.
    pool_options = (
        {"max_connections": options["max_connections"]} if options.get("max_connections") else {}
    )
    return sentinel.master_for(settings.redis_sentinel_master, redis.Redis, **pool_options)


class _RedisLogin:
    """Logs each new connection of one Redis client in with the password that works now.

    Used as redis-py's ``redis_connect_func``, which runs on every new socket in place of the usual
    handshake. A client's connections share it, so once one connection finds that the server switched
    to the next password, the others try that one first.
    """

    def __init__(self, candidates: Sequence[str | None], preferred: int = 0) -> None:
        self.candidates = list(candidates)
        self.preferred = preferred
        self._lock = threading.Lock()

    def __call__(self, connection: Any) -> None:
        first = self.preferred
        order = [first, *(i for i in range(len(self.candidates)) if i != first)]
        last_error: redis.RedisError | None = None
        for attempt, index in enumerate(order):
            connection.password = self.candidates[index]
            try:
                if attempt == 0:
                    connection.on_connect()
                else:
                    self._reconnect(connection)
            except (redis.AuthenticationError, redis.ResponseError) as exc:
                if not _is_wrong_password_redis(exc):
                    raise
                last_error = exc
                continue
            self._worked(index)
            return
        raise redis.AuthenticationError("redis refused every configured password") from last_error

    def _reconnect(self, connection: Any) -> None:
        # A refused AUTH usually closes the socket; log in on a fresh one. Without this hook for the
        # moment, so redis-py runs its own handshake (with connection.password) instead of recursing.
        connection.disconnect()
        connection.redis_connect_func = None
        try:
            connection.connect_check_health(check_health=True, retry_socket_connect=False)
        finally:
            connection.redis_connect_func = self

    def _worked(self, index: int) -> None:
        with self._lock:
            if index != self.preferred:
                log.warning("redis login succeeded with the %s password", _label(index))
                self.preferred = index


def redis_client(settings: Settings, **client_options: Any) -> redis.Redis:
    """A Redis client logged in with whichever configured password the server accepts.

    Raises :class:`NoWorkingPassword` when the server refuses every password now. With a rotating
    pair (REDIS_PASS_CURRENT and REDIS_PASS_NEXT), each connection the client opens later tries them
    again, so a long-lived client survives the server switching passwords. With
    REDIS_SENTINEL_HOSTS, the client talks to the master the Sentinels name, and each new
    connection asks them again, so it follows a failover without a restart.
    """
    options: dict[str, Any] = {"max_connections": settings.redis_max_connections}
    if settings.redis_ca_cert_path:
        options["ssl_ca_certs"] = str(settings.redis_ca_cert_path)
    options.update(client_options)
    password = redis_password(settings, **options) if _needs_probe(settings) else None
    candidates = settings.redis_passwords()
    if len(candidates) < 2:
        return _plain_client(settings, password, options)
    # The URL must carry no password: each connection sends the one _RedisLogin picks.
    options["redis_connect_func"] = _RedisLogin(candidates, preferred=candidates.index(password))
    if settings.sentinel:
        return _plain_client(settings, None, options)
    return _pooled_client(_without_password(settings.redis_dsn()), options)


def _pooled_client(url: str, options: dict[str, Any]) -> redis.Redis:
    """A client of ``url`` whose pool, when all REDIS_MAX_CONNECTIONS are in use, makes the next
    caller wait for one (as long as its socket timeout) rather than fail at once.

    Ingest serves every request at once (gevent): a burst of requests asking Redis (the key
    throttle) would otherwise fail past the pool's size, and each failure logs a line.
    """
    wait = options.get("socket_timeout") or None
    pool = redis.BlockingConnectionPool.from_url(url, timeout=wait, **options)
    client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # as Redis.from_url does: close() closes the pool
    return client


def _without_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def _needs_probe(settings: Settings) -> bool:
    return any(p is not None for p in settings.redis_passwords())
