"""The OpenAPI 3.1 description of the REST API, served at ``GET /api/v2/openapi.json`` (and v1).

Written here by hand, operation by operation, with the body schemas built from the same
:class:`~mutt_app.web.api.FieldSpec` objects the API validates with (``RULE_FIELDS``,
``DEV_HOST_FIELDS``, ``TEAM_FIELDS``, ``CONFIG_FIELDS`` from the dynamic configuration's ``KEYS``):
type, nullability, length, range and allowed values come from one place, so a bound added to a
FieldSpec is checked and documented at once. Each operation's role is read from its view. Tests keep
the rest honest: the document is validated with openapi-spec-validator, its paths and methods must
be exactly the routes the app registers, the role matrix test checks every success answer against
the documented response schema, and schemathesis (tests/integration/test_api_fuzz.py) sends
generated requests to the app under gunicorn and checks every answer against this description.

The description needs no key: it tells nothing a client with a key could not try.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, Response, current_app

from mutt_app.config import VERSION
from mutt_app.db.models import CONFIG_OPERATIONS, HELD_REASONS, NOT_FORWARDED_REASONS
from mutt_app.dynamic_config import KEYS
from mutt_app.rules.engine import MATCH_TYPES
from mutt_app.watch.unhandled import MAX_HOURS
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.fields import FieldSpec
from mutt_app.web.api.heartbeats import HEARTBEAT_FIELDS
from mutt_app.web.api.hosts import DEV_HOST_FIELDS, TEAM_FIELDS
from mutt_app.web.api.keys import public, required_role
from mutt_app.web.api.operations import CONFIG_FIELDS
from mutt_app.web.api.params import MAX_DB_INT, MAX_LIMIT
from mutt_app.web.api.responses import json_response
from mutt_app.web.api.rules import (
    BACKTEST_FIELDS,
    DRAFT_FIELDS,
    DRAFT_RULE_ID,
    MAX_DRAFT_CHANGES,
    REQUIRED_ON_CREATE,
    RULE_FIELDS,
)
from mutt_app.web.api.windows import WINDOW_FIELDS


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _fields(specs: dict[str, FieldSpec]) -> dict[str, Any]:
    """Request body fields, each with the type and bounds the API checks it against."""
    return {name: spec.json_schema() for name, spec in specs.items()}


def _object(
    properties: dict[str, Any], required: list[str] | None = None, *, closed: bool = True
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


REASON = {"type": "string", "minLength": 1, "description": "why (or header X-Change-Reason)"}
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
UUID = {"type": "string", "format": "uuid"}
NULLABLE_UUID = {"type": ["string", "null"], "format": "uuid"}
INT = {"type": "integer"}
NULLABLE_INT = {"type": ["integer", "null"]}
STR = {"type": "string"}
NULLABLE_STR = {"type": ["string", "null"]}
BOOL = {"type": "boolean"}
ANY: dict[str, Any] = {}
# Text in a query string or path: the API refuses a NUL (400; PostgreSQL text cannot hold one).
QUERY_TEXT = {"type": "string", "pattern": "^[^\\u0000]*$"}
# An integer query parameter: int_arg refuses what PostgreSQL's integer cannot hold (400).
COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_DB_INT}


def _stored_rule_fields() -> dict[str, Any]:
    """A stored rule's fields: their types only (a row may predate a bound added since)."""
    return {name: {"type": spec.json_schema()["type"]} for name, spec in RULE_FIELDS.items()}


def _schemas() -> dict[str, Any]:
    change = {
        "changed": BOOL,
        "correlation_id": UUID,
        "rules_version": NULLABLE_INT,
        "warnings": {"type": "array", "items": STR},
    }
    rule = _object(
        {
            "id": INT,
            **_stored_rule_fields(),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        },
        ["id", *RULE_FIELDS, "created_at", "updated_at"],
    )
    engine_rule = _object(
        {
            "id": INT,
            **{k: v for k, v in _stored_rule_fields().items() if k != "is_active"},
        },
        closed=False,
    )
    dev_host = _object(
        {"id": INT, "hostname": STR, "description": NULLABLE_STR, "added_at": TIMESTAMP},
        ["id", "hostname", "description", "added_at"],
    )
    team = _object(
        {"id": INT, "hostname": STR, "team_assignment": STR, "updated_at": TIMESTAMP},
        ["id", "hostname", "team_assignment", "updated_at"],
    )
    failed_work = {
        "id": INT,
        "task_name": STR,
        "queue": STR,
        "payload": ANY,
        "raw_payload": NULLABLE_STR,
        "correlation_id": NULLABLE_UUID,
        "error_type": STR,
        "error_message": STR,
        "attempts": INT,
        "replays": INT,
        "first_failed_at": TIMESTAMP,
        "last_failed_at": TIMESTAMP,
        "next_replay_at": NULLABLE_TIMESTAMP,
        "poisoned_at": TIMESTAMP,
        "reason": STR,
    }
    dynamic_values = _fields(CONFIG_FIELDS)
    objective = _object(
        {
            "target": {"type": "number"},
            "actual": {"type": ["number", "null"]},
            "compliant": BOOL,
            "good": {"type": "number"},
            "total": {"type": "number"},
            "error_budget": {"type": "number"},
            "error_budget_remaining": {"type": ["number", "null"]},
            "burn_rate": {"type": ["number", "null"]},
            "status": {"enum": ["ok", "warning", "critical", "no_data"]},
            "source": {"enum": ["prometheus", "mutt_counters"]},
        },
        [
            "target",
            "actual",
            "compliant",
            "burn_rate",
            "error_budget_remaining",
            "status",
            "source",
        ],
    )
    suggested_rule = _object(
        {
            "match_type": {"enum": ["contains", "regex"]},
            "match_string": STR,
            "team_assignment": STR,
        },
        ["match_type", "match_string"],
    )
    unhandled_template = _object(
        {
            "template": {"type": "string", "description": "the message, volatile parts masked"},
            "events": INT,
            "hosts": {"type": "integer", "description": "distinct hosts"},
            "top_hosts": {
                "type": "array",
                "items": _object({"hostname": STR, "events": INT}, ["hostname", "events"]),
            },
            "first_seen": TIMESTAMP,
            "last_seen": TIMESTAMP,
            "example": {"type": "string", "description": "the newest message of the template"},
            "suggested_rule": {
                "oneOf": [suggested_rule, {"type": "null"}],
                "description": "fields of a rule matching the template (null: too little"
                " literal text for a safe rule); the admin rule form takes them as query"
                " parameters",
            },
        },
        [
            "template",
            "events",
            "hosts",
            "top_hosts",
            "first_seen",
            "last_seen",
            "example",
            "suggested_rule",
        ],
    )
    return (
        {
            **_backtest_schemas(),
            "UnhandledTemplates": _object(
                {
                    "hours": INT,
                    "since": TIMESTAMP,
                    "until": TIMESTAMP,
                    "scanned": {"type": "integer", "description": "unmatched events read"},
                    "truncated": {
                        "type": "boolean",
                        "description": "more than max_rows unmatched events: only the newest counted",
                    },
                    "max_rows": INT,
                    "templates": {"type": "array", "items": unhandled_template},
                },
                ["hours", "since", "until", "scanned", "truncated", "max_rows", "templates"],
            ),
            "Error": _object({"error": STR, "details": ANY}, ["error", "details"]),
            "Rule": rule,
            "RuleCreate": _object(
                {**_fields(RULE_FIELDS), "reason": REASON},
                ["match_type", "prod_handling", "dev_handling", "team_assignment"],
            ),
            "RuleUpdate": _object({**_fields(RULE_FIELDS), "reason": REASON}, closed=True)
            | {"minProperties": 1},
            "Reason": _object({"reason": REASON}),
            "RuleOne": _object({"rule": ref("Rule")}, ["rule"]),
            "RuleChange": _object(
                {"id": INT, "rule": ref("Rule"), **change}, ["id", "rule", "changed"]
            ),
            "RuleList": _object(
                {
                    "rules": {"type": "array", "items": ref("Rule")},
                    "total": INT,
                    "limit": INT,
                    "offset": INT,
                },
                ["rules", "total", "limit", "offset"],
            ),
            "RuleTestRequest": _object(
                {
                    "hostname": STR,
                    "message": STR,
                    "syslog_severity": NULLABLE_INT,
                    "severity": NULLABLE_INT,
                    "trap_oid": NULLABLE_STR,
                    "source": NULLABLE_STR,
                    "timestamp": ANY,
                },
                ["hostname"],
                closed=False,
            ),
            "RuleTestAnswer": _object(
                {
                    "event": _object(
                        {
                            "hostname": STR,
                            "message": STR,
                            "syslog_severity": NULLABLE_INT,
                            "trap_oid": NULLABLE_STR,
                            "source": NULLABLE_STR,
                        }
                    ),
                    "matched": BOOL,
                    "rule_id": NULLABLE_INT,
                    "rule": {"oneOf": [engine_rule, {"type": "null"}]},
                    "handling": STR,
                    "team": STR,
                    "is_dev": BOOL,
                    "forward": BOOL,
                    "shadowed": {"type": "array", "items": engine_rule},
                    "template": {
                        "type": "string",
                        "description": "the message, volatile parts masked",
                    },
                    "fingerprint": {
                        "type": "string",
                        "description": "dedup key: host, rule, template",
                    },
                    "dedup_window_seconds": {
                        "type": "integer",
                        "description": "the dedup window that applies (0: off)",
                    },
                    "skipped_rules": {
                        "type": "array",
                        "items": _object({"id": INT, "error": STR}),
                    },
                },
                [
                    "matched",
                    "rule_id",
                    "handling",
                    "team",
                    "is_dev",
                    "forward",
                    "shadowed",
                    "template",
                    "fingerprint",
                    "dedup_window_seconds",
                ],
            ),
            "DevHost": dev_host,
            "DevHostCreate": _object(
                _fields(DEV_HOST_FIELDS) | {"reason": REASON},
                ["hostname"],
            ),
            "DevHostList": _object(
                {
                    "dev_hosts": {"type": "array", "items": ref("DevHost")},
                    "total": INT,
                    "limit": INT,
                    "offset": INT,
                },
                ["dev_hosts", "total", "limit", "offset"],
            ),
            "DevHostCreated": _object(
                {"id": INT, "dev_host": ref("DevHost"), **change}, ["id", "dev_host", "changed"]
            ),
            "DevHostDeleted": _object(
                {"hostname": STR, "deleted": ref("DevHost"), **change}, ["hostname", "deleted"]
            ),
            "Team": team,
            "TeamCreate": _object(
                _fields(TEAM_FIELDS) | {"reason": REASON},
                ["hostname", "team_assignment"],
            ),
            "TeamUpdate": _object(
                {"team_assignment": TEAM_FIELDS["team_assignment"].json_schema(), "reason": REASON},
                ["team_assignment"],
            ),
            "TeamList": _object(
                {
                    "teams": {"type": "array", "items": ref("Team")},
                    "total": INT,
                    "limit": INT,
                    "offset": INT,
                },
                ["teams", "total", "limit", "offset"],
            ),
            "TeamCreated": _object(
                {"id": INT, "team": ref("Team"), **change}, ["id", "team", "changed"]
            ),
            "TeamChange": _object(
                {"hostname": STR, "team": ref("Team"), **change}, ["hostname", "team", "changed"]
            ),
            "TeamDeleted": _object(
                {"hostname": STR, "deleted": ref("Team"), **change}, ["hostname", "deleted"]
            ),
            "EventAuditRow": _object(
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
                    "raw": {"type": ["object", "null"]},
                    "held_reason": {
                        "enum": [*NOT_FORWARDED_REASONS, None],
                        "description": "why the event was not forwarded; null: it was",
                    },
                    "duplicate_of": NULLABLE_UUID,
                    "rules_version": {
                        "type": ["integer", "null"],
                        "description": "the rules version it was classified under",
                    },
                },
                [
                    "id",
                    "event_timestamp",
                    "hostname",
                    "message",
                    "handling_decision",
                    "correlation_id",
                ],
            ),
            "EventAuditPage": _object(
                {
                    "logs": {"type": "array", "items": ref("EventAuditRow")},
                    "limit": INT,
                    "page": NULLABLE_INT,
                    "has_more": BOOL,
                    "next_cursor": NULLABLE_STR,
                },
                ["logs", "limit", "page", "has_more", "next_cursor"],
            ),
            "ConfigAuditRow": _object(
                {
                    "id": INT,
                    "changed_at": TIMESTAMP,
                    "changed_by": STR,
                    "operation": {"enum": list(CONFIG_OPERATIONS)},
                    "table_name": STR,
                    "record_id": NULLABLE_INT,
                    "old_values": {"type": ["object", "null"]},
                    "new_values": {"type": ["object", "null"]},
                    "reason": NULLABLE_STR,
                    "correlation_id": NULLABLE_UUID,
                },
                ["id", "changed_at", "changed_by", "operation", "table_name"],
            ),
            "ConfigAuditPage": _object(
                {
                    "logs": {"type": "array", "items": ref("ConfigAuditRow")},
                    "total": INT,
                    "limit": INT,
                    "page": INT,
                    "has_more": BOOL,
                },
                ["logs", "total", "limit", "page", "has_more"],
            ),
            "DeadLetter": _object(failed_work, ["id", "task_name", "queue", "error_message"]),
            "DeadLetterList": _object(
                {
                    "items": {"type": "array", "items": ref("DeadLetter")},
                    "total": INT,
                    "limit": INT,
                    "offset": INT,
                    "poison": BOOL,
                },
                ["items", "total", "limit", "offset", "poison"],
            ),
            "DeliveryAttempt": _object(
                {
                    "at": TIMESTAMP,
                    "outcome": {"enum": ["delivered", "retry", "rejected", "dead_lettered"]},
                    "status": NULLABLE_INT,
                    "error": STR,
                    "task_id": STR,
                    "batch_size": INT,
                },
                ["at", "outcome", "status", "error", "task_id", "batch_size"],
            ),
            "Deliveries": _object(
                {
                    "correlation_id": STR,
                    "sent": BOOL,
                    "sent_at": NULLABLE_TIMESTAMP,
                    "attempts": {"type": "array", "items": ref("DeliveryAttempt")},
                },
                ["correlation_id", "sent", "sent_at", "attempts"],
            ),
            "Replayed": _object(
                {"replayed": INT, "task": STR, "queue": STR}, ["replayed", "task", "queue"]
            ),
            "DynamicConfig": _object(
                {
                    "config": _object(
                        {
                            name: _object(
                                {"value": dynamic_values[name], "overridden": BOOL, "help": STR},
                                ["value", "overridden", "help"],
                            )
                            for name in KEYS
                        },
                        list(KEYS),
                    )
                },
                ["config"],
            ),
            "DynamicConfigPut": _object(dynamic_values | {"reason": REASON}) | {"minProperties": 1},
            "DynamicConfigChange": _object(
                {"old": {"type": "object"}, "new": {"type": "object"}, "changed": BOOL},
                ["old", "new", "changed"],
            ),
            "SloReport": _object(
                {
                    "timestamp": {"type": "number"},
                    "window_hours": INT,
                    "overall_compliant": BOOL,
                    "slos": _object(
                        {"ingest_availability": objective, "forward_availability": objective},
                        ["ingest_availability", "forward_availability"],
                    ),
                    "fallback_reasons": {"type": "object", "additionalProperties": STR},
                },
                ["timestamp", "window_hours", "overall_compliant", "slos", "fallback_reasons"],
            ),
            # GET /metrics: mutt_app.watch.dashboard.collect's answer; a part whose store was unreachable
            # is null and named in errors.
            "Metrics": _object(
                {
                    "timestamp": TIMESTAMP,
                    "events_per_second": _object(
                        {w: {"type": ["number", "null"]} for w in ("1m", "1h", "24h")},
                        ["1m", "1h", "24h"],
                    ),
                    "events_per_minute": {"type": ["array", "null"], "items": INT},
                    "events_per_minute_end": NULLABLE_TIMESTAMP,
                    "queues": {"type": ["object", "null"], "additionalProperties": INT},
                    "dlq_depth": NULLABLE_INT,
                    "poison_count": NULLABLE_INT,
                    "circuit_breaker": {
                        "type": ["object", "null"],
                        "properties": {
                            "state": {"type": "string", "enum": ["CLOSED", "OPEN", "HALF_OPEN"]},
                            "threshold": INT,
                            "timeout_seconds": {"type": "number"},
                        },
                        "required": ["state", "threshold", "timeout_seconds"],
                        "additionalProperties": False,
                    },
                    "top_rules": {
                        "type": ["array", "null"],
                        "items": _object(
                            {
                                "rule_id": INT,
                                "events": INT,
                                "match_type": NULLABLE_STR,
                                "match_string": NULLABLE_STR,
                                "trap_oid": NULLABLE_STR,
                                "team": NULLABLE_STR,
                                "is_active": {"type": ["boolean", "null"]},
                            },
                            ["rule_id", "events"],
                        ),
                    },
                    "top_unhandled_hosts": {
                        "type": ["array", "null"],
                        "items": _object({"hostname": STR, "events": INT}, ["hostname", "events"]),
                    },
                    "held_by_reason": {
                        "type": ["object", "null"],
                        "description": "events held back from Moog over the last hour, per reason",
                        "properties": {reason: INT for reason in HELD_REASONS},
                        "required": list(HELD_REASONS),
                        "additionalProperties": False,
                    },
                    "top_storming_devices": {
                        "type": ["array", "null"],
                        "description": "last hour: the devices with most events held as storm_budget",
                        "items": _object({"hostname": STR, "held": INT}, ["hostname", "held"]),
                    },
                    "top_storming_rules": {
                        "type": ["array", "null"],
                        "description": "last hour: the rules with most events held as storm_budget",
                        "items": _object(
                            {
                                "rule_id": INT,
                                "held": INT,
                                "match_type": NULLABLE_STR,
                                "match_string": NULLABLE_STR,
                                "trap_oid": NULLABLE_STR,
                                "team": NULLABLE_STR,
                            },
                            ["rule_id", "held"],
                        ),
                    },
                    "flapping_count": {
                        "type": ["integer", "null"],
                        "description": "problem/clear pairs flapping now",
                    },
                    "flapping_pairs": {
                        "type": ["array", "null"],
                        "description": "the pairs flapping now with the most transitions",
                        "items": _object(
                            {
                                "hostname": STR,
                                "problem_rule_id": INT,
                                "clear_rule_ids": {"type": ["array", "null"], "items": INT},
                                "transitions": INT,
                                "held": INT,
                                "started": TIMESTAMP,
                                "last_event": TIMESTAMP,
                            },
                            [
                                "hostname",
                                "problem_rule_id",
                                "clear_rule_ids",
                                "transitions",
                                "held",
                                "started",
                                "last_event",
                            ],
                        ),
                    },
                    "heartbeat_quiet_count": {
                        "type": ["integer", "null"],
                        "description": "hosts a heartbeat watches that are quiet now",
                    },
                    "heartbeat_quiet_hosts": {
                        "type": ["array", "null"],
                        "description": "the hosts quiet longest (one row per heartbeat and host)",
                        "items": ref("QuietHost"),
                    },
                    "unhandled_templates": {
                        "oneOf": [ref("UnhandledTemplates"), {"type": "null"}],
                        "description": "unmatched events of the last UNHANDLED_TEMPLATES_HOURS by"
                        " template, the busiest ten",
                    },
                    "window_seconds": {"type": "object", "additionalProperties": INT},
                    "errors": {"type": "array", "items": STR},
                    "computed_in_ms": {
                        "type": "number",
                        "description": "when computed, not cached",
                    },
                },
                [
                    "timestamp",
                    "events_per_second",
                    "queues",
                    "dlq_depth",
                    "poison_count",
                    "circuit_breaker",
                    "top_rules",
                    "top_unhandled_hosts",
                    "held_by_reason",
                    "top_storming_devices",
                    "top_storming_rules",
                    "flapping_count",
                    "flapping_pairs",
                    "errors",
                ],
            ),
        }
        | _heartbeat_schemas(change)
        | _window_schemas(change)
    )


def _backtest_schemas() -> dict[str, Any]:
    """A rule draft, the backtest request and its answer."""
    draft = _object(
        {
            "create": {
                "type": "array",
                "items": _object(_fields(RULE_FIELDS), list(REQUIRED_ON_CREATE)),
                "description": "new rules",
            },
            "update": {
                "type": "array",
                "items": _object(
                    {"id": DRAFT_RULE_ID.json_schema(), **_fields(RULE_FIELDS)}, ["id"]
                )
                | {"minProperties": 2},
                "description": "fields laid over a stored rule (is_active true re-activates it)",
            },
            "deactivate": {
                "type": "array",
                "items": DRAFT_RULE_ID.json_schema(),
                "description": "ids of rules to deactivate",
            },
        }
    ) | {"description": f"at most {MAX_DRAFT_CHANGES} entries in all"}
    change = _object(
        {
            "old_rule_id": NULLABLE_INT,
            "new_rule_id": {
                "type": ["integer", "null"],
                "description": "null when no rule matches, or when new_rule_draft_index is set",
            },
            "new_rule_draft_index": {
                "type": ["integer", "null"],
                "description": "the winner is the draft's create[i]",
            },
            "old_handling": STR,
            "new_handling": STR,
            "count": INT,
            "sample_correlation_ids": {"type": "array", "items": UUID},
        },
        [
            "old_rule_id",
            "new_rule_id",
            "new_rule_draft_index",
            "old_handling",
            "new_handling",
            "count",
            "sample_correlation_ids",
        ],
    )
    change_summary = {
        "changed": BOOL,
        "correlation_id": UUID,
        "rules_version": NULLABLE_INT,
        "warnings": {"type": "array", "items": STR},
    }
    stored = _object(
        {
            "id": INT,
            "name": STR,
            "document": ref("RuleDraft"),
            "created_by": STR,
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
            "published_at": NULLABLE_TIMESTAMP,
            "published_by": NULLABLE_STR,
        },
        ["id", "name", "document", "created_by", "created_at", "updated_at", "published_at"],
    )
    return {
        "RuleDraft": draft,
        "StoredRuleDraft": stored,
        "RuleDraftCreate": _object(
            {**_fields(DRAFT_FIELDS), "draft": ref("RuleDraft"), "reason": REASON},
            ["name", "draft"],
        ),
        "RuleDraftUpdate": _object(
            {**_fields(DRAFT_FIELDS), "draft": ref("RuleDraft"), "reason": REASON}
        )
        | {"minProperties": 1},
        "RuleDraftOne": _object({"draft": ref("StoredRuleDraft")}, ["draft"]),
        "RuleDraftChange": _object(
            {"id": INT, "draft": ref("StoredRuleDraft"), **change_summary},
            ["id", "draft", "changed"],
        ),
        "RuleDraftPublished": _object(
            {
                "id": INT,
                "draft": ref("StoredRuleDraft"),
                "created_rule_ids": {"type": "array", "items": INT},
                **change_summary,
            },
            ["id", "draft", "created_rule_ids", "changed"],
        ),
        "RuleDraftList": _object(
            {
                "drafts": {"type": "array", "items": ref("StoredRuleDraft")},
                "total": INT,
                "limit": INT,
                "offset": INT,
            },
            ["drafts", "total", "limit", "offset"],
        ),
        "BacktestRequest": _object(
            {"draft": ref("RuleDraft"), **_fields(BACKTEST_FIELDS)}, ["draft", "hours"]
        ),
        "BacktestAnswer": _object(
            {
                "hours": INT,
                "since": TIMESTAMP,
                "rows_examined": INT,
                "rows_changed": INT,
                "truncated": BOOL,
                "truncated_by": {"enum": ["rows", "time", None]},
                "oldest_examined": NULLABLE_TIMESTAMP,
                "seconds": {"type": "number"},
                "changes": {"type": "array", "items": change},
                "skipped_rules": {
                    "type": "array",
                    "items": _object({"id": INT, "error": STR}, ["id", "error"]),
                },
            },
            [
                "hours",
                "since",
                "rows_examined",
                "rows_changed",
                "truncated",
                "truncated_by",
                "oldest_examined",
                "changes",
            ],
        ),
    }


def _window_schemas(change: dict[str, Any]) -> dict[str, Any]:
    """Maintenance windows: the stored window with what it means now, and its change bodies."""
    occurrence = _object({"start": TIMESTAMP, "end": TIMESTAMP}, ["start", "end"])
    stored = {name: {"type": spec.json_schema()["type"]} for name, spec in WINDOW_FIELDS.items()}
    stored["starts_at"] = TIMESTAMP
    stored["ends_at"] = NULLABLE_TIMESTAMP
    columns = {
        "id": INT,
        **stored,
        "ended_at": NULLABLE_TIMESTAMP,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
    window = _object(
        {
            **columns,
            "active": BOOL,
            "occurrence": {"oneOf": [occurrence, {"type": "null"}]},
            "next_occurrences": {"type": "array", "items": occurrence},
            "error": STR,
        },
        ["id", *WINDOW_FIELDS, "ended_at", "active", "occurrence", "next_occurrences"],
    )
    return {
        "MaintenanceWindow": window,
        "MaintenanceWindowCreate": _object(
            {**_fields(WINDOW_FIELDS), "reason": REASON}, ["name", "starts_at", "action"]
        ),
        "MaintenanceWindowUpdate": _object({**_fields(WINDOW_FIELDS), "reason": REASON}),
        "MaintenanceWindowOne": _object(
            {"maintenance_window": ref("MaintenanceWindow")}, ["maintenance_window"]
        ),
        "MaintenanceWindowList": _object(
            {
                "maintenance_windows": {"type": "array", "items": ref("MaintenanceWindow")},
                "total": INT,
            },
            ["maintenance_windows", "total"],
        ),
        "MaintenanceWindowChange": _object(
            {"id": INT, "maintenance_window": ref("MaintenanceWindow"), **change},
            ["id", "maintenance_window", "changed"],
        ),
        "MaintenanceWindowDeleted": _object(
            {"id": INT, "deleted": _object(columns, ["id", *WINDOW_FIELDS]), **change},
            ["id", "deleted"],
        ),
    }


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    param = {"name": name, "in": where, "schema": schema, "description": description}
    if where == "path":
        param["required"] = True
    return param


LIMIT = _param(
    "limit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "page size"
)
OFFSET = _param("offset", "query", COUNT, "rows to skip")
PAGE = _param("page", "query", COUNT | {"minimum": 1}, "page number, from 1")
DATES = [
    _param("start_date", "query", {"type": "string"}, "ISO 8601 date or date-time, inclusive"),
    _param("end_date", "query", {"type": "string"}, "ISO 8601 date or date-time, inclusive"),
]
CORRELATION = _param("correlation_id", "query", UUID, "only this correlation id")
RULE_ID = _param("rule_id", "path", {"type": "integer", "minimum": 0}, "the rule's id")
DRAFT_ID = _param("draft_id", "path", {"type": "integer", "minimum": 0}, "the draft's id")
HOSTNAME = _param("hostname", "path", QUERY_TEXT, "the host name, exactly")
WINDOW_ID = _param("window_id", "path", {"type": "integer", "minimum": 0}, "the window's id")
ITEM_ID = _param("item_id", "path", {"type": "integer", "minimum": 0}, "the item's id")
POISON = _param("poison", "query", {"type": "boolean"}, "the poison store instead of the DLQ")
CHANGE_HEADERS = [
    _param("X-Change-Reason", "header", STR, "the change's reason (or body reason)"),
    _param("X-Correlation-ID", "header", UUID, "correlation id for the audit row"),
]


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(schema)}}}


def _ok(schema: str, status: str = "200", description: str = "OK") -> dict[str, Any]:
    return {
        status: {
            "description": description,
            "content": {"application/json": {"schema": ref(schema)}},
        }
    }


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation, by (method, path under /api/v2 in OpenAPI's {param} form)."""
    change = {"parameters": CHANGE_HEADERS}
    return {
        ("get", "/rules"): {
            "summary": "List rules, highest priority first",
            "parameters": [
                LIMIT,
                OFFSET,
                _param("is_active", "query", BOOL, "only active (true) or inactive (false) rules"),
                _param("match_type", "query", {"enum": list(MATCH_TYPES)}, "only this match type"),
                _param("team", "query", QUERY_TEXT, "only rules for this team"),
            ],
            "responses": _ok("RuleList") | _errors(400),
        },
        ("post", "/rules"): {
            "summary": "Create a rule (validated by the rule engine; one audit row)",
            **change,
            "requestBody": _body("RuleCreate"),
            "responses": _ok("RuleChange", "201", "Created") | _errors(400, 409, 415, 422),
        },
        ("get", "/rules/{rule_id}"): {
            "summary": "One rule, active or not",
            "parameters": [RULE_ID],
            "responses": _ok("RuleOne") | _errors(404),
        },
        ("put", "/rules/{rule_id}"): {
            "summary": "Change some of a rule's fields (the merged rule must be valid)",
            "parameters": [RULE_ID, *CHANGE_HEADERS],
            "requestBody": _body("RuleUpdate"),
            "responses": _ok("RuleChange") | _errors(400, 404, 415, 422),
        },
        ("delete", "/rules/{rule_id}"): {
            "summary": "Deactivate a rule (soft delete)",
            "parameters": [RULE_ID, *CHANGE_HEADERS],
            "requestBody": _body("Reason", required=False),
            "responses": _ok("RuleChange") | _errors(400, 404, 415, 422),
        },
        ("post", "/rules/test"): {
            "summary": "Which active rule would win for a sample event, and what it shadows",
            "requestBody": _body("RuleTestRequest"),
            "responses": _ok("RuleTestAnswer") | _errors(400, 415, 422),
        },
        ("post", "/rules/backtest"): {
            "summary": (
                "How the audited events of the last hours would have been decided under a rule"
                " draft: changed decisions only, bounded by BACKTEST_MAX_ROWS and"
                " BACKTEST_TIME_BUDGET_SECONDS (then truncated)"
            ),
            "requestBody": _body("BacktestRequest"),
            "responses": _ok("BacktestAnswer") | _errors(400, 415, 422, 503),
        },
        ("get", "/rules/drafts"): {
            "summary": "Rule drafts, newest first (published ones too)",
            "parameters": [LIMIT, OFFSET],
            "responses": _ok("RuleDraftList") | _errors(400),
        },
        ("post", "/rules/drafts"): {
            "summary": "Store a rule draft (checked against the live rules; audited, no bump)",
            **change,
            "requestBody": _body("RuleDraftCreate"),
            "responses": _ok("RuleDraftChange", "201", "Created") | _errors(400, 415, 422),
        },
        ("get", "/rules/drafts/{draft_id}"): {
            "summary": "One rule draft",
            "parameters": [DRAFT_ID],
            "responses": _ok("RuleDraftOne") | _errors(404),
        },
        ("put", "/rules/drafts/{draft_id}"): {
            "summary": "Replace a draft's document and/or name (409 once published)",
            "parameters": [DRAFT_ID, *CHANGE_HEADERS],
            "requestBody": _body("RuleDraftUpdate"),
            "responses": _ok("RuleDraftChange") | _errors(400, 404, 409, 415, 422),
        },
        ("post", "/rules/drafts/{draft_id}/publish"): {
            "summary": (
                "Apply a stored draft to the live rules: one audit row per changed rule, one"
                " reason; 409 if published already or it no longer fits the live rules"
            ),
            "parameters": [DRAFT_ID, *CHANGE_HEADERS],
            "requestBody": _body("Reason", required=False),
            "responses": _ok("RuleDraftPublished") | _errors(400, 404, 409, 415, 422),
        },
        ("get", "/dev-hosts"): {
            "summary": "List development hosts",
            "parameters": [LIMIT, OFFSET],
            "responses": _ok("DevHostList") | _errors(400),
        },
        ("post", "/dev-hosts"): {
            "summary": "Mark a host as development",
            **change,
            "requestBody": _body("DevHostCreate"),
            "responses": _ok("DevHostCreated", "201", "Created") | _errors(400, 409, 415, 422),
        },
        ("delete", "/dev-hosts/{hostname}"): {
            "summary": "Make a host production again",
            "parameters": [HOSTNAME, *CHANGE_HEADERS],
            "requestBody": _body("Reason", required=False),
            "responses": _ok("DevHostDeleted") | _errors(400, 404, 415, 422),
        },
        ("get", "/teams"): {
            "summary": "List host-to-team mappings",
            "parameters": [LIMIT, OFFSET, _param("team", "query", QUERY_TEXT, "only this team")],
            "responses": _ok("TeamList") | _errors(400),
        },
        ("post", "/teams"): {
            "summary": "Map a host to a team",
            **change,
            "requestBody": _body("TeamCreate"),
            "responses": _ok("TeamCreated", "201", "Created") | _errors(400, 409, 415, 422),
        },
        ("put", "/teams/{hostname}"): {
            "summary": "Change the team a host maps to",
            "parameters": [HOSTNAME, *CHANGE_HEADERS],
            "requestBody": _body("TeamUpdate"),
            "responses": _ok("TeamChange") | _errors(400, 404, 415, 422),
        },
        ("delete", "/teams/{hostname}"): {
            "summary": "Remove a host's team mapping",
            "parameters": [HOSTNAME, *CHANGE_HEADERS],
            "requestBody": _body("Reason", required=False),
            "responses": _ok("TeamDeleted") | _errors(400, 404, 415, 422),
        },
        ("get", "/audit-logs"): {
            "summary": "The event audit, newest first (page/limit, or keyset cursor)",
            "parameters": [
                LIMIT,
                PAGE,
                _param("cursor", "query", QUERY_TEXT, "next_cursor of the previous page"),
                _param("hostname", "query", QUERY_TEXT, "only this host"),
                _param("rule_id", "query", COUNT, "only this rule"),
                _param("handling", "query", QUERY_TEXT, "only this handling decision"),
                _param(
                    "held_reason",
                    "query",
                    {"enum": list(NOT_FORWARDED_REASONS)},
                    "only events not forwarded for this reason",
                ),
                _param("rules_version", "query", COUNT, "only events classified under it"),
                CORRELATION,
                *DATES,
            ],
            "responses": _ok("EventAuditPage") | _errors(400),
        },
        ("get", "/config-audit"): {
            "summary": "The configuration audit, newest first",
            "parameters": [
                LIMIT,
                PAGE,
                _param("table_name", "query", QUERY_TEXT, "only this table"),
                _param(
                    "operation", "query", {"enum": list(CONFIG_OPERATIONS)}, "only this operation"
                ),
                _param("changed_by", "query", QUERY_TEXT, "only changes by this (e.g. api:oncall)"),
                _param("record_id", "query", COUNT, "only this record"),
                CORRELATION,
                *DATES,
            ],
            "responses": _ok("ConfigAuditPage") | _errors(400),
        },
        ("get", "/dlq"): {
            "summary": "Dead letters (or poison items), oldest first",
            "parameters": [
                POISON,
                _param("task", "query", QUERY_TEXT, "only this task"),
                LIMIT,
                OFFSET,
            ],
            "responses": _ok("DeadLetterList") | _errors(400),
        },
        ("post", "/dlq/{item_id}/replay"): {
            "summary": "Publish a dead letter again now and remove it",
            "parameters": [ITEM_ID, POISON],
            "responses": _ok("Replayed") | _errors(400, 404, 422),
        },
        ("get", "/alerts/{correlation_id}/deliveries"): {
            "summary": "Was this alert sent to Moog, when, and what did Moog say (each attempt)",
            "parameters": [
                _param("correlation_id", "path", UUID, "the alert's external_id (a UUID)"),
            ],
            "responses": _ok("Deliveries") | _errors(400, 404),
        },
        ("get", "/config"): {
            "summary": "Every dynamic setting: value, overridden or default, help",
            "responses": _ok("DynamicConfig"),
        },
        ("put", "/config"): {
            "summary": "Change dynamic settings, all or none (one audit row)",
            **change,
            "requestBody": _body("DynamicConfigPut"),
            "responses": _ok("DynamicConfigChange") | _errors(400, 415, 422),
        },
        ("get", "/slo"): {
            "summary": "Ingest and forward availability, error budget and burn rate",
            "parameters": [
                _param(
                    "window_hours",
                    "query",
                    {"type": "integer", "minimum": 1, "maximum": 720},
                    "the window (default: dynamic setting slo_window_hours)",
                )
            ],
            "responses": _ok("SloReport") | _errors(400, 503),
        },
        ("get", "/unhandled/templates"): {
            "summary": "Events no rule matched, grouped by message template, with a rule for each",
            "parameters": [
                _param(
                    "hours",
                    "query",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HOURS},
                    "the window (default: UNHANDLED_TEMPLATES_HOURS)",
                ),
                LIMIT,
            ],
            "responses": _ok("UnhandledTemplates") | _errors(400),
        },
        ("get", "/metrics"): {
            "summary": "The dashboard's numbers (events per second, queues, DLQ, circuit, top rules)",
            "responses": _ok("Metrics"),
        },
        ("get", "/maintenance-windows"): {
            "summary": "Maintenance windows, each open or not now, with its next occurrences",
            "parameters": [
                _param("active", "query", BOOL, "only windows open now (true) or closed (false)")
            ],
            "responses": _ok("MaintenanceWindowList") | _errors(400),
        },
        ("post", "/maintenance-windows"): {
            "summary": "Create a maintenance window (one-off, or an RRULE in a time zone)",
            **change,
            "requestBody": _body("MaintenanceWindowCreate"),
            "responses": _ok("MaintenanceWindowChange", "201", "Created")
            | _errors(400, 409, 415, 422),
        },
        ("get", "/maintenance-windows/{window_id}"): {
            "summary": "One maintenance window",
            "parameters": [WINDOW_ID],
            "responses": _ok("MaintenanceWindowOne") | _errors(404),
        },
        ("put", "/maintenance-windows/{window_id}"): {
            "summary": "Change some of a window's fields (the merged window must be valid)",
            "parameters": [WINDOW_ID, *CHANGE_HEADERS],
            "requestBody": _body("MaintenanceWindowUpdate"),
            "responses": _ok("MaintenanceWindowChange") | _errors(400, 404, 409, 415, 422),
        },
        ("post", "/maintenance-windows/{window_id}/end"): {
            "summary": "End the window's open occurrence now (409 if none is open)",
            "parameters": [WINDOW_ID, *CHANGE_HEADERS],
            "requestBody": _body("Reason", required=False),
            "responses": _ok("MaintenanceWindowChange") | _errors(400, 404, 409, 415, 422),
        },
        ("delete", "/maintenance-windows/{window_id}"): {
            "summary": "Delete a maintenance window",
            "parameters": [WINDOW_ID, *CHANGE_HEADERS],
            "requestBody": _body("Reason", required=False),
            "responses": _ok("MaintenanceWindowDeleted") | _errors(400, 404, 415, 422),
        },
        ("get", "/openapi.json"): {
            "summary": "This description (no key needed)",
            "security": [],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1 document",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        },
    } | _heartbeat_operations()


def _heartbeat_schemas(change: dict[str, Any]) -> dict[str, Any]:
    stored = {name: {"type": spec.json_schema()["type"]} for name, spec in HEARTBEAT_FIELDS.items()}
    quiet = _object(
        {
            "heartbeat_id": INT,
            "heartbeat": STR,
            "host": STR,
            "interval_minutes": INT,
            "last_event": NULLABLE_TIMESTAMP,
            "quiet_since": TIMESTAMP,
            "alerted_at": TIMESTAMP,
        },
        ["heartbeat_id", "heartbeat", "host", "quiet_since", "alerted_at"],
    )
    heartbeat = _object(
        {"id": INT, **stored, "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
        ["id", *HEARTBEAT_FIELDS, "created_at", "updated_at"],
    )
    listed = _object(
        {
            **heartbeat["properties"],
            "quiet_hosts": {
                "type": ["array", "null"],
                "items": ref("QuietHost"),
                "description": "open quiet alerts; null if Redis is unreachable",
            },
        },
        [*heartbeat["required"], "quiet_hosts"],
    )
    return {
        "QuietHost": quiet,
        "Heartbeat": heartbeat,
        "HeartbeatListed": listed,
        "HeartbeatCreate": _object(
            _fields(HEARTBEAT_FIELDS) | {"reason": REASON}, ["name", "interval_minutes"]
        ),
        "HeartbeatUpdate": _object(_fields(HEARTBEAT_FIELDS) | {"reason": REASON}),
        "HeartbeatList": _object(
            {
                "heartbeats": {"type": "array", "items": ref("HeartbeatListed")},
                "total": INT,
                "limit": INT,
                "offset": INT,
            },
            ["heartbeats", "total", "limit", "offset"],
        ),
        "HeartbeatChange": _object(
            {"id": INT, "heartbeat": ref("Heartbeat"), **change}, ["id", "heartbeat", "changed"]
        ),
        "HeartbeatDeleted": _object(
            {"id": INT, "deleted": ref("Heartbeat"), **change}, ["id", "deleted", "changed"]
        ),
    }


def _heartbeat_operations() -> dict[tuple[str, str], dict[str, Any]]:
    heartbeat_id = _param(
        "heartbeat_id", "path", {"type": "integer", "minimum": 0}, "the heartbeat's id"
    )
    return {
        ("get", "/heartbeats"): {
            "summary": "List heartbeats, those with quiet hosts first, with their quiet hosts",
            "parameters": [
                LIMIT,
                OFFSET,
                _param("is_active", "query", BOOL, "only active (true) or inactive (false)"),
                _param("quiet", "query", BOOL, "only heartbeats with quiet hosts now"),
            ],
            "responses": _ok("HeartbeatList") | _errors(400, 503),
        },
        ("post", "/heartbeats"): {
            "summary": "Create a heartbeat: a host, glob or team must send an event every N min",
            "parameters": CHANGE_HEADERS,
            "requestBody": _body("HeartbeatCreate"),
            "responses": _ok("HeartbeatChange", "201", "Created") | _errors(400, 409, 415, 422),
        },
        ("put", "/heartbeats/{heartbeat_id}"): {
            "summary": "Change some of a heartbeat's fields",
            "parameters": [heartbeat_id, *CHANGE_HEADERS],
            "requestBody": _body("HeartbeatUpdate"),
            "responses": _ok("HeartbeatChange") | _errors(400, 404, 409, 415, 422),
        },
        ("delete", "/heartbeats/{heartbeat_id}"): {
            "summary": "Delete a heartbeat (the next check clears its open alerts)",
            "parameters": [heartbeat_id, *CHANGE_HEADERS],
            "requestBody": _body("Reason", required=False),
            "responses": _ok("HeartbeatDeleted") | _errors(400, 404, 415, 422),
        },
    }


ERROR_TEXT = {
    400: "Malformed request: a query parameter, JSON syntax, or a header",
    401: "No or unknown X-API-Key",
    403: "The key's role does not allow this",
    404: "No such record",
    409: "Duplicate",
    415: "The body is not sent as application/json",
    422: "JSON, but not an acceptable change (unknown field, wrong type, invalid rule, no reason)",
    429: "Too many bad API keys from this address (Retry-After says how long to wait)",
    503: "A store (database, Redis) is unreachable",
}


def ref_response(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): ref_response(f"E{status}") for status in statuses}


def to_openapi_path(rule: str) -> str:
    """A Flask rule (``/rules/<int:rule_id>``) in OpenAPI's form (``/rules/{rule_id}``)."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", rule)


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document, with each operation's role as ``x-required-role`` from its view."""
    views: dict[tuple[str, str], Any] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(f"{bp.name}."):
            path = to_openapi_path(rule.rule.removeprefix(bp.url_prefix or ""))
            for method in rule.methods or ():
                views[(method.lower(), path)] = app.view_functions[rule.endpoint]
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in _operations().items():
        operation = dict(operation)
        view = views.get((method, path))
        operation["operationId"] = method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
        if view is not None and not getattr(view, "public", False):
            role = required_role(view, method.upper())
            operation["x-required-role"] = role
            if role == "viewer":  # a logged-in UI session may use these too
                operation["security"] = [{"ApiKey": []}, {"Session": []}]
            operation["description"] = f"Needs a key with the {role} role (or a higher one)."
            operation["responses"] = {
                **operation["responses"],
                **_errors(401, 403, 429),
            }
        operation["responses"] = {**operation["responses"], "414": ref_response("E414")}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MUTT REST API",
            "version": VERSION,
            "description": (
                "The MUTT web app's API. Every answer carries X-API-Version: 2; every error is"
                ' {"error": ..., "details": ...}. /api/v1 is an alias of the same routes.'
            ),
        },
        "servers": [{"url": "/api/v2"}, {"url": "/api/v1"}],
        "security": [{"ApiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "mutt_session",
                    "description": "the UI's log-in session (read-only use)",
                },
            },
            "schemas": _schemas(),
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {"application/json": {"schema": ref("Error")}},
                }
                for status, text in ERROR_TEXT.items()
            }
            | {
                # From the HTTP server (gunicorn's limit_request_line), before the app: not JSON.
                "E414": {"description": "The request line (path and query) is too long"}
            },
        },
    }


@bp.get("/openapi.json")
@public
def get_openapi() -> Response:
    """The OpenAPI description of this API."""
    cached = current_app.extensions.get("mutt_openapi")
    if cached is None:
        cached = current_app.extensions.setdefault(
            "mutt_openapi", document(current_app._get_current_object())
        )  # type: ignore[attr-defined]
    return json_response(cached)
