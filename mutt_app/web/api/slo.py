"""API v2: ``GET /slo`` (alias ``/api/v1/slo``, the spec's path): the SLO report of :mod:`mutt_app.watch.slo`.

The window and targets are the dynamic settings ``slo_window_hours``, ``slo_ingest_success_target``
and ``slo_forward_success_target``; ``?window_hours=`` (1..720) asks for another window. Each SLO
says its ``source`` (``prometheus`` or ``mutt_counters``); ``fallback_reasons`` says why an SLO was
not taken from Prometheus. 503 only when Prometheus fails and Redis is unreachable as well.
"""

from __future__ import annotations

import redis
from flask import Response

from mutt_app.watch import slo
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.operations import dynamic_config
from mutt_app.web.api.params import int_arg
from mutt_app.web.api.resources import redis_connection
from mutt_app.web.api.responses import json_response
from mutt_app.web.context import settings

MAX_WINDOW_HOURS = 720


@bp.get("/slo")
def get_slo() -> Response:
    """Ingest and forward availability, error budget remaining and burn rate over the window."""
    config = dynamic_config()
    window = int_arg(
        "window_hours", config.get("slo_window_hours"), minimum=1, maximum=MAX_WINDOW_HOURS
    )
    targets = {
        service: float(config.get(target_key))
        for service, (_, _, target_key) in slo.OBJECTIVES.items()
    }
    try:
        answer = slo.report(redis_connection(), settings().prometheus_url, window, targets)
    except (redis.RedisError, OSError) as exc:
        raise ApiError(
            503, "neither Prometheus nor MUTT's counters (Redis) can be read", str(exc)
        ) from None
    return json_response(answer)
