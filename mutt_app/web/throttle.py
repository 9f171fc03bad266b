"""Failed authentication per client IP, counted in Redis: log-ins at /login, bad keys on the API.

Accounts already lock after WEBUI_LOGIN_MAX_FAILURES wrong passwords; this stops one address from
trying many accounts (or many API keys). A client with WEBUI_AUTH_IP_MAX_FAILURES failures within
the last WEBUI_AUTH_IP_WINDOW_SECONDS (a moving window, from the ``limits`` library that
Flask-Limiter is built on) is answered 429 with Retry-After until the oldest failure leaves the
window. Only failures count, so people who get in are never slowed.

Counts live in Redis (shared by every web process) under ``LIMITS:LIMITER/mutt-auth/...``. When
Redis is unreachable the throttle fails open, logging it: log-in then still has the per-account
lockout in the database, and refusing every log-in because Redis is down would lock people out of
the UI they need to see the outage.
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
from mutt_app.web.api import redis_connection, settings

log = logging.getLogger(__name__)

NAMESPACE = "mutt-auth"
LOGIN = "login"
API_KEY = "api-key"


def _limiter() -> MovingWindowRateLimiter:
    """The app's limiter on the app's own Redis client (its passwords, TLS and timeouts)."""
    limiter = current_app.extensions.get("mutt_auth_limiter")
    if limiter is None:
        storage = RedisStorage("redis://", connection_pool=redis_connection().connection_pool)
        limiter = current_app.extensions.setdefault(
            "mutt_auth_limiter", MovingWindowRateLimiter(storage)
        )
    return limiter


def _item() -> RateLimitItemPerSecond:
    config = settings()
    return RateLimitItemPerSecond(
        config.webui_auth_ip_max_failures, config.webui_auth_ip_window_seconds, NAMESPACE
    )


def client_address() -> str:
    """The client's IP: the connection's, or X-Forwarded-For's with WEBUI_TRUSTED_PROXIES set."""
    return request.remote_addr or "unknown"


def retry_after(kind: str) -> int | None:
    """Seconds this client must wait before another ``kind`` attempt, or None when it may try now."""
    address = client_address()
    item = _item()
    try:
        limiter = _limiter()
        if limiter.test(item, kind, address):
            return None
        reset_at, _ = limiter.get_window_stats(item, kind, address)
    except (redis.RedisError, OSError) as exc:
        log.warning("auth throttle unavailable (Redis): %s; not throttling %s", exc, address)
        return None
    metrics.WEBUI_AUTH_THROTTLED.labels(kind).inc()
    return max(1, math.ceil(reset_at - time.time()))


def record_failure(kind: str) -> None:
    """Count one failed ``kind`` attempt (LOGIN or API_KEY) for this client."""
    metrics.WEBUI_AUTH_FAILURES.labels(kind).inc()
    try:
        _limiter().hit(_item(), kind, client_address())
    except (redis.RedisError, OSError) as exc:
        log.warning("auth throttle unavailable (Redis): %s; failure not counted", exc)
