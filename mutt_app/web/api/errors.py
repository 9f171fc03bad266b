"""The API's errors: :class:`ApiError`, its JSON answer, and the blueprint's error handlers.

Every error is JSON ``{"error": "...", "details": ...}``; a 401 also says how to authenticate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Response
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from mutt_app.web.api.responses import json_response

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer: HTTP ``status``, a one-line ``error`` and optional structured ``details``."""

    def __init__(
        self,
        status: int,
        error: str,
        details: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.details = details
        self.headers = dict(headers or {})


def error_response(
    status: int, error: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> Response:
    """The JSON answer of an error (with ``WWW-Authenticate`` on a 401)."""
    extra = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else {}
    return json_response({"error": error, "details": details}, status, {**extra, **(headers or {})})


def api_error(exc: ApiError) -> Response:
    """Handler of :class:`ApiError`: its status, error, details and headers."""
    return error_response(exc.status, exc.error, exc.details, exc.headers)


def database_down(exc: OperationalError) -> Response:
    """Handler of a database that cannot be reached: 503."""
    log.error("API request failed on the database: %s", exc.orig)
    return error_response(503, "database unavailable", None)


def unexpected(exc: Exception) -> Response:
    """Handler of anything else: an HTTP error raised in a view as itself, the rest as 500."""
    if isinstance(exc, HTTPException):  # abort(), 413 and friends, raised inside a view
        return error_response(exc.code or 500, exc.name, exc.description)
    log.exception("API request failed")
    return error_response(500, "internal error", None)


def constraint_error(exc: IntegrityError, *, conflict: str = "already exists") -> ApiError:
    """The API error for a database constraint violation: 409 if a duplicate, else 422."""
    orig = exc.orig
    code = getattr(orig, "pgcode", None)
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    details = {"constraint": constraint, "message": text}
    if code == "23505" or "UNIQUE constraint failed" in text:
        return ApiError(409, conflict, details)
    return ApiError(422, "the change violates a database constraint", details)
