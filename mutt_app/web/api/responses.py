"""The API's answers: JSON bodies with the ``X-API-Version`` header."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import Response

API_VERSION = "2"


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``body`` as JSON (orjson: datetimes and UUIDs serialise natively) with the API version header.

    Datetimes carry an offset (RFC 3339, as the description's date-time says): SQLite returns naive
    ones, and every stored time is UTC.
    """
    response = Response(
        orjson.dumps(body, option=orjson.OPT_NAIVE_UTC), status=status, mimetype="application/json"
    )
    response.headers["X-API-Version"] = API_VERSION
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
