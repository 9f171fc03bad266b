"""GET /health and GET /metrics for the web app."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from mutt_app import metrics
from mutt_app.config import VERSION
from mutt_app.db.engine import make_engine
from mutt_app.rotation import redis_client

bp = Blueprint("health", __name__)
# Shared by every MUTT web app: the Prometheus scrape endpoint.
metrics_bp = Blueprint("metrics", __name__)


@bp.get("/health")
def health() -> Response:
    settings = current_app.extensions["mutt_settings"]
    body: dict = {
        "service": "mutt-web",
        "version": VERSION,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    healthy = True
    try:
        client = current_app.extensions.get("mutt_redis")
        if client is None:
            client = redis_client(settings, socket_timeout=2, socket_connect_timeout=2)
            current_app.extensions["mutt_redis"] = client
        client.ping()
        body["redis"] = "connected"
    except Exception as exc:
        body["redis"] = f"unreachable: {type(exc).__name__}"
        healthy = False
    try:
        engine = current_app.extensions.get("mutt_engine")
        if engine is None:
            engine = current_app.extensions["mutt_engine"] = make_engine(settings)
        with engine.connect() as conn:
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
