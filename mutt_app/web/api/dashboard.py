"""API v2: ``GET /metrics``, the dashboard's figures for API clients (X-API-Key like every route).

The answer is :func:`mutt_app.watch.dashboard.cached_metrics`: events per second over 1 minute, 1 hour
and 24 hours, events per minute over the last hour, queue depths, DLQ depth, poison count, the
circuit breaker, top rules and top unhandled hosts; at most METRICS_CACHE_TTL seconds old.
Prometheus's own scrape stays at ``/metrics`` (outside the API).
"""

from __future__ import annotations

from flask import Response

from mutt_app.watch.dashboard import cached_metrics
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.resources import redis_connection, sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.context import settings


@bp.get("/metrics")
def realtime_metrics() -> Response:
    """The dashboard's figures (cached METRICS_CACHE_TTL seconds, shared by every web process)."""
    return json_response(cached_metrics(sessions(), redis_connection(), settings()))
