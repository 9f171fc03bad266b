"""OpenAPI of the two audit readers (:mod:`mutt_app.web.api.audit`): the event audit and the
configuration audit.
"""

from __future__ import annotations

from mutt_app.db.models import CONFIG_OPERATIONS, NOT_FORWARDED_REASONS
from mutt_app.web.api.openapi.schema import (
    BOOL,
    CORRELATION,
    COUNT,
    DATES,
    INT,
    LIMIT,
    NULLABLE_INT,
    NULLABLE_STR,
    NULLABLE_UUID,
    PAGE,
    QUERY_TEXT,
    STR,
    TIMESTAMP,
    UUID,
    Operations,
    Schema,
    array,
    errors,
    object_schema,
    ok,
    param,
    ref,
)

NULLABLE_OBJECT = {"type": ["object", "null"]}


def schemas() -> Schema:
    """An event audit row and its page (keyset paging), a configuration audit row and its page."""
    return {
        "EventAuditRow": object_schema(
            {
                "id": INT,
                "event_timestamp": TIMESTAMP,
                "received_at": TIMESTAMP,
                "audited_at": TIMESTAMP,
                "hostname": STR,
                "message": STR,
                "source": NULLABLE_STR,
                "syslog_severity": NULLABLE_INT,
                "trap_oid": NULLABLE_STR,
                "matched_rule_id": NULLABLE_INT,
                "handling_decision": STR,
                "team_assignment": NULLABLE_STR,
                "is_dev": BOOL,
                "forwarded_to_moog": BOOL,
                "correlation_id": UUID,
                "raw": NULLABLE_OBJECT,
                "held_reason": {
                    "enum": [*NOT_FORWARDED_REASONS, None],
                    "description": "why the event was not forwarded; null: it was",
                },
                "duplicate_of": NULLABLE_UUID,
                "rules_version": {
                    "type": ["integer", "null"],
                    "description": "the rules version it was classified under",
                },
                "trace_id": {
                    "type": ["string", "null"],
                    "description": "the trace it was classified in (OTEL_ENABLED); null: none",
                },
            },
            ["id", "event_timestamp", "hostname", "message", "handling_decision", "correlation_id"],
        ),
        "EventAuditPage": object_schema(
            {
                "logs": array(ref("EventAuditRow")),
                "limit": INT,
                "page": NULLABLE_INT,
                "has_more": BOOL,
                "next_cursor": NULLABLE_STR,
            },
            ["logs", "limit", "page", "has_more", "next_cursor"],
        ),
        "ConfigAuditRow": object_schema(
            {
                "id": INT,
                "changed_at": TIMESTAMP,
                "changed_by": STR,
                "operation": {"enum": list(CONFIG_OPERATIONS)},
                "table_name": STR,
                "record_id": NULLABLE_INT,
                "old_values": NULLABLE_OBJECT,
                "new_values": NULLABLE_OBJECT,
                "reason": NULLABLE_STR,
                "correlation_id": NULLABLE_UUID,
            },
            ["id", "changed_at", "changed_by", "operation", "table_name"],
        ),
        "ConfigAuditPage": object_schema(
            {
                "logs": array(ref("ConfigAuditRow")),
                "total": INT,
                "limit": INT,
                "page": INT,
                "has_more": BOOL,
            },
            ["logs", "total", "limit", "page", "has_more"],
        ),
    }


def operations() -> Operations:
    """/audit-logs and /config-audit."""
    return {
        ("get", "/audit-logs"): {
            "summary": "The event audit, newest first (page/limit, or keyset cursor)",
            "parameters": [
                LIMIT,
                PAGE,
                param("cursor", "query", QUERY_TEXT, "next_cursor of the previous page"),
                param("hostname", "query", QUERY_TEXT, "only this host"),
                param("rule_id", "query", COUNT, "only this rule"),
                param("handling", "query", QUERY_TEXT, "only this handling decision"),
                param(
                    "held_reason",
                    "query",
                    {"enum": list(NOT_FORWARDED_REASONS)},
                    "only events not forwarded for this reason",
                ),
                param("rules_version", "query", COUNT, "only events classified under it"),
                CORRELATION,
                *DATES,
            ],
            "responses": ok("EventAuditPage") | errors(400),
        },
        ("get", "/config-audit"): {
            "summary": "The configuration audit, newest first",
            "parameters": [
                LIMIT,
                PAGE,
                param("table_name", "query", QUERY_TEXT, "only this table"),
                param(
                    "operation", "query", {"enum": list(CONFIG_OPERATIONS)}, "only this operation"
                ),
                param("changed_by", "query", QUERY_TEXT, "only changes by this (e.g. api:oncall)"),
                param("record_id", "query", COUNT, "only this record"),
                CORRELATION,
                *DATES,
            ],
            "responses": ok("ConfigAuditPage") | errors(400),
        },
    }
