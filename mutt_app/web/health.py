"""GET /health and GET /metrics for the web app."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from mutt_app import metrics
from mutt_app.config import VERSION
from mutt_app.web.context import runtime

bp = Blueprint("health", __name__)
# Shared by every MUTT web app: the Prometheus scrape endpoint.
metrics_bp = Blueprint("metrics", __name__)


@bp.get("/health")
def health() -> Response:
    resources = runtime()
    body: dict = {
        "service": "mutt-web",
        "version": VERSION,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    healthy = True
    try:
        resources.redis.ping()
        body["redis"] = "connected"
    except Exception as exc:
        body["redis"] = f"unreachable: {type(exc).__name__}"
        healthy = False
    try:
        with resources.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        body["postgres"] = "connected"
    except Exception as exc:
        body["postgres"] = f"unreachable: {type(exc).__name__}"
        healthy = False
    body["status"] = "healthy" if healthy else "unhealthy"
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    return response


@metrics_bp.get("/metrics")
def prometheus_metrics() -> Response:
    payload, content_type = metrics.exposition()
    return Response(payload, content_type=content_type)
