"""Failed authentication counted in Redis: per client IP (log-ins, bad API keys, bad ingest keys),
and per account and client IP (log-ins).

- Per address: a client with WEBUI_AUTH_IP_MAX_FAILURES failures within the last
  WEBUI_AUTH_IP_WINDOW_SECONDS is answered 429 with Retry-After; this stops one address from trying
  many accounts (or many API keys). The ingest endpoint counts its bad ``X-API-Key`` values
  (INGEST_KEY) apart, with the same two settings: a relay with a wrong key is answered 429 instead
  of 401 at full speed, and senders at other addresses are untouched. A relay with the good key is
  checked once a second per ingest process, not per request (:class:`ClearAddresses`).
- Per account and address: WEBUI_LOGIN_MAX_FAILURES wrong passwords for one username from one address
  within WEBUI_LOGIN_LOCKOUT_SECONDS refuse that username from that address (429) until the oldest
  failure leaves the window. The lock is aimed at the guesser, never at the account: its owner, from
  another address, logs in as usual. Every username counts alike, known or not, so a lock tells
  nothing about which exist; a successful log-in clears its pair's count.

Both are moving windows from the ``limits`` library that Flask-Limiter is built on. Only failures
count, so people who get in are never slowed. Counts live in Redis (shared by every web process)
under ``LIMITS:LIMITER/mutt-auth/...``. When Redis is unreachable the throttle fails open, logging
it: refusing every log-in because Redis is down would lock people out of the UI they need to see the
outage (password hashing, slow on purpose, still bounds guessing).
"""

from __future__ import annotations

import logging
import math
import time

import redis
from flask import current_app, request
from limits import RateLimitItemPerSecond
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from mutt_app import metrics
from mutt_app.web.context import runtime, settings

log = logging.getLogger(__name__)

NAMESPACE = "mutt-auth"
LOGIN = "login"
API_KEY = "api-key"
INGEST_KEY = "ingest-key"
"""Bad ``X-API-Key`` values at the ingest endpoint, per address."""
ACCOUNT = "account"
"""Wrong passwords for one username from one address (the key adds the username)."""


def _limiter() -> MovingWindowRateLimiter:
    """The app's limiter on the app's own Redis client (its passwords, TLS and timeouts)."""
    limiter = current_app.extensions.get("mutt_auth_limiter")
    if limiter is None:
        storage = RedisStorage("redis://", connection_pool=runtime().redis.connection_pool)
        limiter = current_app.extensions.setdefault(
            "mutt_auth_limiter", MovingWindowRateLimiter(storage)
        )
    return limiter


def _item(kind: str) -> RateLimitItemPerSecond:
    config = settings()
    if kind == ACCOUNT:
        return RateLimitItemPerSecond(
            config.webui_login_max_failures, config.webui_login_lockout_seconds, NAMESPACE
        )
    return RateLimitItemPerSecond(
        config.webui_auth_ip_max_failures, config.webui_auth_ip_window_seconds, NAMESPACE
    )


def client_address() -> str:
    """The client's IP: the connection's, or X-Forwarded-For's with INGEST_TRUSTED_PROXIES (ingest)
    or WEBUI_TRUSTED_PROXIES (web) set."""
    return request.remote_addr or "unknown"


def _keys(kind: str, account: str | None) -> tuple[str, ...]:
    return (kind, client_address()) if account is None else (kind, client_address(), account)


def retry_after(kind: str, account: str | None = None) -> int | None:
    """Seconds this client must wait before another ``kind`` attempt, or None when it may try now.

    ``account`` (the username, for ACCOUNT) narrows the count to that account from this client.
    """
    item, keys = _item(kind), _keys(kind, account)
    try:
        limiter = _limiter()
        if limiter.test(item, *keys):
            return None
        reset_at, _ = limiter.get_window_stats(item, *keys)
    except (redis.RedisError, OSError) as exc:
        log.warning("auth throttle unavailable (Redis): %s; not throttling %s", exc, keys[1])
        return None
    metrics.WEBUI_AUTH_THROTTLED.labels(kind).inc()
    return max(1, math.ceil(reset_at - time.time()))


def record_failure(kind: str, account: str | None = None) -> bool:
    """Count one failed ``kind`` attempt (LOGIN, API_KEY or INGEST_KEY) for this client; returns
    whether that failure used up the address's allowance (its next attempt waits).

    A failed log-in names its ``account``: it then counts for the address and for the pair.
    """
    metrics.WEBUI_AUTH_FAILURES.labels(kind).inc()
    item, keys = _item(kind), _keys(kind, None)
    try:
        limiter = _limiter()
        limiter.hit(item, *keys)
        if account is not None:
            limiter.hit(_item(ACCOUNT), *_keys(ACCOUNT, account))
        return not limiter.test(item, *keys)
    except (redis.RedisError, OSError) as exc:
        log.warning("auth throttle unavailable (Redis): %s; failure not counted", exc)
        return False


def forget_failures(account: str) -> None:
    """Clear this client's count of wrong passwords for ``account`` (after it logged in)."""
    try:
        _limiter().clear(_item(ACCOUNT), *_keys(ACCOUNT, account))
    except (redis.RedisError, OSError) as exc:
        log.warning("auth throttle unavailable (Redis): %s; count not cleared", exc)


class ClearAddresses:
    """Addresses this process found unthrottled within the last ``ttl`` seconds (at most ``cap``).

    The ingest endpoint asks the throttle about every request before it compares the key, so that
    a throttled address learns nothing from a good guess. For the steady stream of a relay with the
    right key that is a Redis round trip per request, more than the rest of a small request costs.
    Remembering "clear" for a second spares it: a throttle that starts is seen by this process at
    once (it counted the failure, or forgets the address on a 429), by the others within ``ttl``.
    """

    def __init__(self, ttl: float = 1.0, cap: int = 4096) -> None:
        self.ttl, self.cap = ttl, cap
        self._until: dict[str, float] = {}

    def fresh(self, address: str) -> bool:
        """Whether ``address`` was found clear less than ``ttl`` seconds ago.

        When its second has just passed, the first thread to ask gets False and asks the throttle;
        the others keep the old answer meanwhile. Otherwise every thread of a busy process would ask
        Redis at the same moment, once a second, and take the pool's every connection (a publishing
        round caught then fails its requests with 503).
        """
        until = self._until.get(address)
        if until is None:
            return False
        now = time.monotonic()
        if until > now:
            return True
        # That thread's answer (remember, or forget on a throttle) replaces this in a moment.
        self._until[address] = now + self.ttl
        return False

    def remember(self, address: str) -> None:
        """Note that the throttle found ``address`` clear just now."""
        until = self._until
        if len(until) >= self.cap and address not in until:
            # Oldest first (dicts keep insertion order); another thread may have taken it.
            until.pop(next(iter(until), address), None)
        until[address] = time.monotonic() + self.ttl

    def forget(self, address: str) -> None:
        """``address`` is throttled, or about to be: ask the throttle next time."""
        self._until.pop(address, None)
