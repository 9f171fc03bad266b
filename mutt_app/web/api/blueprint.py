"""The API's blueprint: mounted at /api/v2 (and /api/v1), every request timed, authenticated and
checked for NUL characters, every answer counted and given ``X-API-Version``, every error JSON.

The route modules attach their views to :data:`bp`; :func:`mutt_app.web.api.register_api` mounts it.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, g, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from mutt_app import metrics
from mutt_app.web.api.errors import ApiError, api_error, database_down, error_response, unexpected
from mutt_app.web.api.keys import authenticate
from mutt_app.web.api.params import refuse_nul
from mutt_app.web.api.responses import API_VERSION

API_PREFIXES = ("/api/v2", "/api/v1")

bp = Blueprint("api", __name__, url_prefix="/api/v2")


def _start_clock() -> None:
    g.api_started = time.perf_counter()


def _version_header(response: Response) -> Response:
    response.headers["X-API-Version"] = API_VERSION
    # One series per route whichever alias was called: /api/v1/rules counts as /api/v2/rules.
    rule = request.url_rule.rule if request.url_rule is not None else "unknown"
    endpoint = rule.replace("/api/v1/", "/api/v2/", 1)
    metrics.WEBUI_API_REQUESTS.labels(endpoint, str(response.status_code)).inc()
    started = g.get("api_started")
    if started is not None:
        metrics.WEBUI_API_LATENCY.labels(endpoint).observe(time.perf_counter() - started)
    return response


# The clock starts before authentication, so refused requests are timed and counted too.
bp.before_request(_start_clock)
bp.before_request(authenticate)
bp.before_request(refuse_nul)
bp.after_request(_version_header)
bp.register_error_handler(ApiError, api_error)
bp.register_error_handler(OperationalError, database_down)
bp.register_error_handler(Exception, unexpected)


def routing_error(exc: HTTPException) -> Response | HTTPException:
    """The app-wide 404/405 handler: JSON under /api, Flask's default page elsewhere."""
    # Routing fails before any blueprint is chosen, so blueprint handlers never see unknown API
    # paths or wrong methods.
    if request.path.startswith(API_PREFIXES):
        response = error_response(exc.code or 404, exc.name, exc.description)
        allowed = getattr(exc, "valid_methods", None)  # set on 405 MethodNotAllowed
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response
    return exc
