"""Query parameters: integers, limits, booleans, choices, dates and UUIDs, each checked (400 otherwise).

List endpoints take ``limit`` (1..500) and refuse a larger one with 400 rather than clamping it, so
a client never silently receives fewer rows than it asked for.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from flask import request

from mutt_app.web.api.errors import ApiError

MAX_LIMIT = 500
MAX_DB_INT = 2**31 - 1  # PostgreSQL integer: larger ids or offsets could only fail in the driver


def refuse_nul() -> None:
    """400 for a NUL character in a query parameter or path segment.

    PostgreSQL text cannot hold one, so it could only fail in the driver, as a 500.
    """
    for name, value in [*request.args.items(multi=True), *(request.view_args or {}).items()]:
        if isinstance(value, str) and "\x00" in value:
            raise ApiError(400, f"{name} must not contain NUL characters", {"parameter": name})


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
