"""The REST API v2 of the web app (``/api/v2``; ``/api/v1`` is an alias of the same routes).

Authentication: every request needs the header ``X-API-Key``, compared in constant time with the
accepted keys of :mod:`mutt_app.api_keys`: WEBUI_API_KEY (one admin key) or, when set,
WEBUI_API_KEYS (``name:role:key,...``). With no key configured every request is refused: the API is
never open by default. Each route needs a role (:func:`requires`; unmarked reads need viewer,
unmarked writes admin): viewer reads and uses the rule tester, operator also replays dead letters
and changes the dynamic configuration, admin changes rules, development hosts and device teams.
Bad keys are counted per client IP (:mod:`mutt_app.web.throttle`); too many answer 429. A person
logged in to the UI (session cookie, no key) may use what needs only the viewer role, as themselves.
Only ``GET /openapi.json`` (:mod:`mutt_app.web.api.openapi`, the OpenAPI 3.1 description) needs no key.

Every response carries ``X-API-Version: 2``; every error is JSON ``{"error": "...", "details": ...}``
with status 400 (malformed query parameter, header or JSON), 401 (no or unknown key), 403 (the key's
role is too low), 404 (no such record, or no such route under /api), 405, 409 (duplicate), 415 (a
body not sent as application/json), 422 (JSON, but not an acceptable change: unknown or read-only
field, wrong type, invalid rule, no reason), 429 (throttled) or 503 (database unreachable).

Changes (create, update, delete of rules, development hosts, device teams and heartbeats; PUT
/config) need a reason, from the body's ``"reason"`` or the ``X-Change-Reason`` header, and each
writes exactly one ``config_audit_log`` row in the same transaction as the change (rules, hosts,
teams and heartbeats through :mod:`mutt_app.commands.changes`, which locks the row first) (changed_by ``api:<key name>``, or
``api-key`` for WEBUI_API_KEY; old and new values; the reason; a correlation id from
``X-Correlation-ID`` or a new one). After the commit the rules version in Redis is bumped so that
workers reload within seconds. A request that changes nothing (the values are already as asked)
writes no audit row and bumps nothing.

List endpoints take ``limit`` (1..500) and refuse a larger one with 400 rather than clamping it, so
a client never silently receives fewer rows than it asked for.

Routes: this module holds the blueprint, authentication, errors, shared helpers and the two audit
readers; :mod:`mutt_app.web.api.rules` (rules, rule tester, rule drafts and their backtest),
:mod:`mutt_app.web.api.operations` (dead-letter queue, dynamic configuration),
:mod:`mutt_app.web.api.hosts` (development hosts, device teams), :mod:`mutt_app.web.api.slo`
(SLO report), :mod:`mutt_app.web.api.unhandled` (unhandled templates) and
:mod:`mutt_app.web.api.openapi` attach their routes to the same blueprint.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import redis
from flask import Blueprint, Flask, Response, current_app, g, request
from flask_login import current_user
from sqlalchemy import Select, func, select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from mutt_app import metrics
from mutt_app.api_keys import ApiKey, accepted_keys, identify
from mutt_app.commands.changes import Change, audited_change
from mutt_app.db.models import (
    CONFIG_OPERATIONS,
    NOT_FORWARDED_REASONS,
    ROLES,
    ConfigAuditLog,
    EventAuditLog,
)
from mutt_app.web.context import runtime, settings

log = logging.getLogger(__name__)

API_VERSION = "2"
API_PREFIXES = ("/api/v2", "/api/v1")
MAX_LIMIT = 500
MAX_DB_INT = 2**31 - 1  # PostgreSQL integer: larger ids or offsets could only fail in the driver

bp = Blueprint("api", __name__, url_prefix="/api/v2")
F = TypeVar("F", bound=Callable[..., Any])


# --- errors and responses ----------------------------------------------------------------------


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


def _error_response(
    status: int, error: str, details: Any = None, headers: Mapping[str, str] | None = None
) -> Response:
    extra = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else {}
    return json_response({"error": error, "details": details}, status, {**extra, **(headers or {})})


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error_response(exc.status, exc.error, exc.details, exc.headers)


@bp.errorhandler(OperationalError)
def _database_down(exc: OperationalError) -> Response:
    log.error("API request failed on the database: %s", exc.orig)
    return _error_response(503, "database unavailable", None)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # abort(), 413 and friends, raised inside a view
        return _error_response(exc.code or 500, exc.name, exc.description)
    log.exception("API request failed")
    return _error_response(500, "internal error", None)


def _routing_error(exc: HTTPException) -> Response | HTTPException:
    # Routing fails before any blueprint is chosen, so blueprint handlers never see unknown API
    # paths or wrong methods; this app-wide handler answers those in JSON and leaves every other
    # path's error page to Flask's default.
    if request.path.startswith(API_PREFIXES):
        response = _error_response(exc.code or 404, exc.name, exc.description)
        allowed = getattr(exc, "valid_methods", None)  # set on 405 MethodNotAllowed
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response
    return exc


@bp.before_request
def _start_clock() -> None:
    # Registered before _authenticate, so refused requests are timed and counted too.
    g.api_started = time.perf_counter()


@bp.after_request
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


# --- authentication and roles ------------------------------------------------------------------

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def requires(role: str) -> Callable[[F], F]:
    """Mark a view as needing ``role`` (viewer, operator, admin) instead of the default.

    Without a mark a reading method (GET, HEAD) needs viewer and anything else admin, so a new
    writing route is admin-only until someone decides otherwise.
    """
    assert role in ROLES

    def mark(view: F) -> F:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def public(view: F) -> F:
    """Mark a view as answering without a key (the API's own description)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def required_role(view: Callable[..., Any], method: str) -> str:
    """The role ``method`` on ``view`` needs."""
    marked = getattr(view, "required_role", None)
    if marked is not None:
        return marked
    return "viewer" if method in READ_METHODS else "admin"


def api_keys() -> tuple[ApiKey, ...]:
    """The keys this app accepts (parsed once)."""
    keys = current_app.extensions.get("mutt_api_keys")
    if keys is None:
        config = settings()
        keys = accepted_keys(
            config.webui_api_keys.get_secret_value() if config.webui_api_keys else None,
            config.webui_api_key.get_secret_value() if config.webui_api_key else None,
        )
        keys = current_app.extensions.setdefault("mutt_api_keys", keys)
    return keys


def current_key() -> ApiKey:
    """The key the current request was authenticated with."""
    return g.api_key


@bp.before_request
def _authenticate() -> None:
    """401 unless ``X-API-Key`` is an accepted key, 403 unless its role suffices, 429 if throttled."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "public", False):
        return
    given = request.headers.get("X-API-Key")
    if not given and (person := _logged_in_person()) is not None:
        # The spec's "API key or session": a person logged in to the UI may use what changes
        # nothing (what needs only the viewer role), as themselves. Not more: the API is not
        # CSRF-protected, so changes need a key.
        if required_role(view, request.method) != "viewer":
            raise ApiError(
                401, "a logged-in session may only read the API; changes need an X-API-Key"
            )
        _check_role(person, view)
        return
    keys = api_keys()
    if not keys:
        raise ApiError(
            401,
            "no API key is configured (WEBUI_API_KEY or WEBUI_API_KEYS): the API refuses"
            " every request until one is",
        )
    wait = throttle.retry_after(throttle.API_KEY)
    if wait is not None:
        raise ApiError(
            429,
            "too many requests with a bad API key from this address; retry later",
            {"retry_after_seconds": wait},
            headers={"Retry-After": str(wait)},
        )
    if not given:
        raise ApiError(401, "missing X-API-Key header")
    key = identify(keys, given)
    if key is None:
        throttle.record_failure(throttle.API_KEY)
        log.warning(
            "API request with a bad key from %s: %s %s",
            request.remote_addr,
            request.method,
            request.path,
        )
        raise ApiError(401, "invalid API key")
    _check_role(key, view)


@bp.before_request
def _refuse_nul() -> None:
    """400 for a NUL character in a query parameter or path segment.

    PostgreSQL text cannot hold one, so it could only fail in the driver, as a 500.
    """
    for name, value in [*request.args.items(multi=True), *(request.view_args or {}).items()]:
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, f"{name} must not contain NUL characters", {"parameter": name})


def _check_role(key: ApiKey, view: Callable[..., Any]) -> None:
    """Remember who calls; 403 unless ``key``'s role is enough for this request."""
    g.api_key = key
    g.api_role = key.role
    needed = required_role(view, request.method)
    if not key.has_role(needed):
        raise ApiError(
            403,
            f"{key.name!r} has the {key.role} role; {request.method} {request.path} needs {needed}",
            {"key": key.name, "role": key.role, "required_role": needed},
        )


def _logged_in_person() -> ApiKey | None:
    """The person logged in to the UI (session cookie) as a read-only caller, or None."""
    if not hasattr(current_app, "login_manager"):
        return None
    person = current_user
    if not getattr(person, "is_authenticated", False):
        return None
    return ApiKey(f"user:{person.username}", person.role, "", scoped=True)


# --- app resources -----------------------------------------------------------------------------


def sessions() -> sessionmaker[Session]:
    """The app's session factory (its Runtime's)."""
    return runtime().sessions


def redis_connection() -> redis.Redis:
    """The app's Redis client (its Runtime's, shared with /health)."""
    return runtime().redis


# --- request bodies ----------------------------------------------------------------------------


def json_body() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    A body sent as anything but JSON (Content-Type ``application/json`` or ``...+json``) is a 415;
    JSON that does not parse, or is not an object, a 400.
    """
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    if not request.is_json:
        raise ApiError(
            415,
            "the body must be sent as Content-Type: application/json",
            {"content_type": request.content_type},
        )
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "body is not valid JSON", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


@dataclass(frozen=True)
class FieldSpec:
    """One accepted body field: its JSON type, whether null is allowed, and its bounds.

    The single source of both the request check (:func:`field_problem`) and the field's schema in
    the OpenAPI description (:meth:`json_schema`), so the two cannot disagree.
    """

    kind: type
    nullable: bool = False
    min_length: int | None = None
    max_length: int | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: tuple[str, ...] = ()
    description: str = ""
    items: FieldSpec | None = None
    """For ``kind`` list: what each item is (``max_length`` then bounds the number of items)."""
    format: str | None = None
    """JSON Schema format of a string (``date-time``), described; the route parses it."""

    def json_schema(self) -> dict[str, Any]:
        """This field as a JSON Schema (OpenAPI 3.1)."""
        kind = _TYPE_NAMES[self.kind]
        schema: dict[str, Any] = {"type": [kind, "null"] if self.nullable else kind}
        if self.items is not None:
            schema["items"] = self.items.json_schema()
        if self.format:
            schema["format"] = self.format
        array = self.kind is list
        for keyword, value in (
            ("minItems" if array else "minLength", self.min_length),
            ("maxItems" if array else "maxLength", self.max_length),
            ("minimum", self.minimum),
            ("maximum", self.maximum),
        ):
            if value is not None:
                schema[keyword] = value
        if self.enum:
            schema["enum"] = [*self.enum, *([None] if self.nullable else [])]
        if self.description:
            schema["description"] = self.description
        return schema


_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def field_problem(value: Any, spec: FieldSpec) -> str | None:
    """What is wrong with ``value`` for the field ``spec`` describes, or None if it fits."""
    if value is None:
        return None if spec.nullable else "must not be null"
    # bool is an int in Python, not in JSON; and 100.0 is not an integer for a priority.
    if spec.kind is int:
        fits = type(value) is int
    elif spec.kind is float:
        fits = type(value) in (int, float)
    else:
        fits = isinstance(value, spec.kind)
    if not fits:
        expected = _TYPE_NAMES[spec.kind] + (" or null" if spec.nullable else "")
        return f"expected {expected}, got {_json_type(value)}"
    if isinstance(value, list):
        if spec.min_length is not None and len(value) < spec.min_length:
            return f"must have at least {spec.min_length} items"
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"must have at most {spec.max_length} items"
        for index, item in enumerate(value):
            if spec.items is not None and (problem := field_problem(item, spec.items)):
                return f"item {index} {problem}"
        return None
    if isinstance(value, str):
        # PostgreSQL text holds neither NUL nor lone surrogates; caught here they are a 422, not a 500.
        if "\x00" in value:
            return "must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text (no lone surrogates)"
        if spec.min_length is not None and len(value) < spec.min_length:
            return f"must be at least {spec.min_length} characters"
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"must be at most {spec.max_length} characters"
    if spec.enum and value not in spec.enum:
        return f"must be one of {', '.join(spec.enum)}, got {value!r}"
    too_small = spec.minimum is not None and value < spec.minimum
    too_large = spec.maximum is not None and value > spec.maximum
    if too_small or too_large:
        low = "" if spec.minimum is None else f"at least {spec.minimum}"
        high = "" if spec.maximum is None else f"at most {spec.maximum}"
        return f"must be {' and '.join(filter(None, (low, high)))}, got {value}"
    return None


def check_fields(
    body: Mapping[str, Any],
    specs: Mapping[str, FieldSpec],
    *,
    required: tuple[str, ...] = (),
    read_only: tuple[str, ...] = (),
    meta: tuple[str, ...] = ("reason",),
) -> dict[str, Any]:
    """The body's fields named in ``specs``, type-checked; 422 naming every offending field.

    ``meta`` fields (the change reason) are allowed and left out of the result; ``read_only`` and
    unknown fields are refused, so a typo never turns into a silently ignored change.
    """
    unknown = sorted(k for k in body if k not in specs and k not in meta and k not in read_only)
    if unknown:
        raise ApiError(
            422,
            f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            {"unknown_fields": unknown, "allowed_fields": sorted([*specs, *meta])},
        )
    fixed = sorted(k for k in body if k in read_only)
    if fixed:
        raise ApiError(
            422,
            f"read-only field{'s' if len(fixed) > 1 else ''}: {', '.join(fixed)}",
            {"read_only_fields": fixed},
        )
    missing = [name for name in required if body.get(name) is None]
    if missing:
        raise ApiError(
            422,
            f"missing required field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            {"missing_fields": missing},
        )
    problems = {
        name: problem
        for name, value in body.items()
        if name in specs and (problem := field_problem(value, specs[name])) is not None
    }
    if problems:
        shown = "; ".join(f"{name} {problem}" for name, problem in problems.items())
        raise ApiError(422, f"invalid field: {shown}", {"fields": problems})
    return {name: value for name, value in body.items() if name in specs}


def change_reason(body: Mapping[str, Any]) -> str:
    """The reason for a change: the body's ``reason``, else header ``X-Change-Reason``; 422 if none."""
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(422, f"wrong field type: reason expected string, got {_json_type(reason)}")
    reason = (reason or request.headers.get("X-Change-Reason") or "").strip()
    if not reason:
        raise ApiError(
            422,
            'a change needs a reason: the body field "reason" or the X-Change-Reason header',
            {"missing_fields": ["reason"]},
        )
    if "\x00" in reason:
        raise ApiError(422, "reason must not contain NUL characters")
    return reason


def _correlation_id() -> uuid.UUID:
    raw = request.headers.get("X-Correlation-ID")
    if not raw:
        return uuid.uuid4()
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, "X-Correlation-ID is not a UUID", raw) from None


# --- changes: through the audited-change service ----------------------------------------------


@contextmanager
def config_change(
    reason: str, *, conflict: str = "already exists", bump: bool = True
) -> Iterator[Change]:
    """One configuration change by the calling key (:func:`mutt_app.commands.changes.audited_change`).

    Committed when the block ends without error, then the rules version is bumped if the block
    changed anything (a Redis failure then is a warning in :meth:`Change.summary`); ``bump=False``
    for what workers do not read (a rule draft). A unique violation becomes 409 ``conflict``, any
    other constraint violation 422.
    """
    try:
        with audited_change(
            sessions(),
            redis_connection() if bump else None,
            changed_by=current_key().changed_by,
            reason=reason,
            correlation_id=_correlation_id(),
        ) as change:
            yield change
    except IntegrityError as exc:
        raise constraint_error(exc, conflict=conflict) from None


M = TypeVar("M")


def locked_or_404(change: Change, model: type[M], row_id: int, what: str) -> M:
    """Row ``row_id`` of ``model``, locked for ``change``; a 404 naming ``what`` when there is none.

    Locked, so that a concurrent change cannot slip between the old values and the write.
    """
    row = change.locked(model, id=row_id) if row_id <= MAX_DB_INT else None
    if row is None:
        raise ApiError(404, f"no {what} {row_id}")
    return row


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


# --- query parameters --------------------------------------------------------------------------


def int_arg(name: str, default: int, *, minimum: int, maximum: int = MAX_DB_INT) -> int:
    """Integer query parameter ``name`` within [minimum, maximum]; 400 otherwise."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, f"{name} must be an integer", {"parameter": name, "value": raw}
        ) from None
    if not minimum <= value <= maximum:
        # The text as given: a huge number has no JSON (64-bit) form.
        raise ApiError(
            400, f"{name} must be from {minimum} to {maximum}", {"parameter": name, "value": raw}
        )
    return value


def limit_arg(default: int = 100) -> int:
    """``limit``: 1..500 (a larger one is refused, not clamped)."""
    return int_arg("limit", default, minimum=1, maximum=MAX_LIMIT)


def bool_arg(name: str) -> bool | None:
    """Boolean query parameter (true/false, 1/0, yes/no), or None when absent; 400 otherwise."""
    raw = request.args.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise ApiError(400, f"{name} must be true or false", {"parameter": name, "value": raw})


def choice_arg(name: str, choices: tuple[str, ...]) -> str | None:
    """Query parameter that must be one of ``choices``, or None when absent; 400 otherwise."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    if raw not in choices:
        raise ApiError(
            400, f"{name} must be one of {', '.join(choices)}", {"parameter": name, "value": raw}
        )
    return raw


def date_arg(name: str) -> datetime | None:
    """ISO 8601 date or date-time query parameter (naive means UTC), or None; 400 otherwise."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    # An unencoded "+" in a query string arrives as a space: "...T10:00:00 02:00".
    candidates = [raw, raw.upper()]
    if " " in raw:
        head, _, tail = raw.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            moment = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    raise ApiError(400, f"{name} is not an ISO 8601 date", {"parameter": name, "value": raw})


def uuid_arg(name: str) -> uuid.UUID | None:
    """UUID query parameter, or None when absent; 400 otherwise."""
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, f"{name} is not a UUID", {"parameter": name, "value": raw}) from None


def date_range() -> tuple[datetime | None, datetime | None]:
    """``start_date`` and ``end_date`` (both inclusive); 400 when the start is after the end."""
    start, end = date_arg("start_date"), date_arg("end_date")
    if start is not None and end is not None and start > end:
        raise ApiError(400, "start_date is after end_date")
    return start, end


def count(session: Session, query: Select[Any]) -> int:
    """How many rows ``query`` (without its ordering and paging) returns."""
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def row_dict(row: Any) -> dict[str, Any]:
    """A mapped row's columns (datetimes and UUIDs are left for orjson; see :func:`json_response`)."""
    return {c.name: getattr(row, c.key) for c in row.__table__.columns}


# --- GET /audit-logs: the event audit ---------------------------------------------------------


def _encode_cursor(moment: datetime, row_id: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([moment.isoformat(), row_id])).decode().rstrip("=")


def _decode_cursor(raw: str) -> tuple[datetime, int]:
    try:
        moment, row_id = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        parsed = datetime.fromisoformat(moment)
        if type(row_id) is not int:
            raise ValueError("bad id")
    except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError):
        raise ApiError(
            400, "cursor is not one this API returned", {"parameter": "cursor"}
        ) from None
    return parsed, row_id


@bp.get("/audit-logs")
def list_event_audit() -> Response:
    """The event audit, newest event first.

    Filters: hostname, rule_id, handling, held_reason (why the event was not forwarded: one of
    models.NOT_FORWARDED_REASONS), rules_version, correlation_id, start_date/end_date (on the event's
    timestamp, ISO 8601, inclusive). Paging: ``page`` (from 1) and ``limit`` (default
    AUDIT_LOG_PAGE_SIZE, at most 500), or for deep paging the ``next_cursor`` of the previous answer
    as ``cursor`` (keyset: no cost growing with depth). No total is counted, as the table holds
    millions of rows; ``has_more`` says whether another page follows.
    """
    limit = limit_arg(settings().audit_log_page_size)
    page = int_arg("page", 1, minimum=1)
    rule_id = int_arg("rule_id", 0, minimum=0) if request.args.get("rule_id") else None
    correlation_id = uuid_arg("correlation_id")
    held_reason = choice_arg("held_reason", NOT_FORWARDED_REASONS)
    rules_version = (
        int_arg("rules_version", 0, minimum=0) if request.args.get("rules_version") else None
    )
    start, end = date_range()
    cursor = request.args.get("cursor", "").strip()
    query = select(EventAuditLog)
    if held_reason is not None:
        query = query.where(EventAuditLog.held_reason == held_reason)
    if hostname := request.args.get("hostname", "").strip():
        query = query.where(EventAuditLog.hostname == hostname)
    if rule_id is not None:
        query = query.where(EventAuditLog.matched_rule_id == rule_id)
    if rules_version is not None:
        query = query.where(EventAuditLog.rules_version == rules_version)
    if handling := request.args.get("handling", "").strip():
        query = query.where(EventAuditLog.handling_decision == handling)
    if correlation_id is not None:
        query = query.where(EventAuditLog.correlation_id == correlation_id)
    if start is not None:
        query = query.where(EventAuditLog.event_timestamp >= start)
    if end is not None:
        query = query.where(EventAuditLog.event_timestamp <= end)
    if cursor:
        moment, row_id = _decode_cursor(cursor)
        query = query.where(
            tuple_(EventAuditLog.event_timestamp, EventAuditLog.id) < tuple_(moment, row_id)
        )
    else:
        query = query.offset((page - 1) * limit)
    query = query.order_by(EventAuditLog.event_timestamp.desc(), EventAuditLog.id.desc())
    with sessions()() as session:
        rows = session.scalars(query.limit(limit + 1)).all()
    has_more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return json_response(
        {
            "logs": [row_dict(row) for row in rows],
            "limit": limit,
            "page": None if cursor else page,
            "has_more": has_more,
            "next_cursor": _encode_cursor(last.event_timestamp, last.id)
            if has_more and last is not None
            else None,
        }
    )


# --- GET /config-audit: the configuration audit -----------------------------------------------


@bp.get("/config-audit")
def list_config_audit() -> Response:
    """The configuration audit, newest change first.

    Filters: table_name, operation, changed_by, record_id, correlation_id, start_date/end_date (on
    changed_at). Paging: ``page`` (from 1) and ``limit`` (default AUDIT_LOG_PAGE_SIZE, at most 500);
    the answer has the ``total``.
    """
    limit = limit_arg(settings().audit_log_page_size)
    page = int_arg("page", 1, minimum=1)
    operation = choice_arg("operation", CONFIG_OPERATIONS)
    record_id = int_arg("record_id", 0, minimum=0) if request.args.get("record_id") else None
    correlation_id = uuid_arg("correlation_id")
    start, end = date_range()
    query = select(ConfigAuditLog)
    if table_name := request.args.get("table_name", "").strip():
        query = query.where(ConfigAuditLog.table_name == table_name)
    if operation is not None:
        query = query.where(ConfigAuditLog.operation == operation)
    if changed_by := request.args.get("changed_by", "").strip():
        query = query.where(ConfigAuditLog.changed_by == changed_by)
    if record_id is not None:
        query = query.where(ConfigAuditLog.record_id == record_id)
    if correlation_id is not None:
        query = query.where(ConfigAuditLog.correlation_id == correlation_id)
    if start is not None:
        query = query.where(ConfigAuditLog.changed_at >= start)
    if end is not None:
        query = query.where(ConfigAuditLog.changed_at <= end)
    with sessions()() as session:
        total = count(session, query)
        rows = session.scalars(
            query.order_by(ConfigAuditLog.changed_at.desc(), ConfigAuditLog.id.desc())
            .limit(limit)
            .offset((page - 1) * limit)
        ).all()
    return json_response(
        {
            "logs": [row_dict(row) for row in rows],
            "total": total,
            "limit": limit,
            "page": page,
            "has_more": page * limit < total,
        }
    )


# --- registration ------------------------------------------------------------------------------


def register_api(app: Flask) -> None:
    """Mount the API on ``app`` at /api/v2, with /api/v1 as an alias of the same routes."""
    app.register_blueprint(bp)
    app.register_blueprint(bp, url_prefix="/api/v1", name="api_v1")
    app.register_error_handler(404, _routing_error)
    app.register_error_handler(405, _routing_error)


# The route modules attach to ``bp``; imported last, as they import the helpers above.
from mutt_app.web import throttle  # noqa: E402
from mutt_app.web.api import dashboard as _dashboard_routes  # noqa: E402, F401

# The route modules register on bp when imported.
from mutt_app.web.api import heartbeats as _heartbeats_routes  # noqa: E402, F401
from mutt_app.web.api import hosts as _hosts_routes  # noqa: E402, F401
from mutt_app.web.api import openapi as _openapi_routes  # noqa: E402, F401
from mutt_app.web.api import operations as _operations_routes  # noqa: E402, F401
from mutt_app.web.api import rules as _rules_routes  # noqa: E402, F401
from mutt_app.web.api import slo as _slo_routes  # noqa: E402, F401
from mutt_app.web.api import unhandled as _unhandled_routes  # noqa: E402, F401
from mutt_app.web.api import windows as _windows_routes  # noqa: E402, F401
