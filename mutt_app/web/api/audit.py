"""The two audit readers: ``GET /audit-logs`` (the event audit, with keyset paging for depth) and
``GET /config-audit`` (the configuration audit, with its total).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

import orjson
from flask import Response, request
from sqlalchemy import select, tuple_

from mutt_app.db.models import (
    CONFIG_OPERATIONS,
    NOT_FORWARDED_REASONS,
    ConfigAuditLog,
    EventAuditLog,
)
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.params import choice_arg, date_range, int_arg, limit_arg, uuid_arg
from mutt_app.web.api.resources import sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.api.rows import count, row_dict
from mutt_app.web.context import settings

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
