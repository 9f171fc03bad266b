"""OpenAPI of the dashboard's numbers (:mod:`mutt_app.web.api.dashboard`): ``GET /metrics``,
:func:`mutt_app.watch.dashboard.collect`'s answer; a part whose store was unreachable is null and
named in ``errors``.
"""

from __future__ import annotations

from mutt_app.db.models import HELD_REASONS
from mutt_app.web.api.openapi.schema import (
    INT,
    NULLABLE_INT,
    NULLABLE_NUMBER,
    NULLABLE_STR,
    NULLABLE_TIMESTAMP,
    STR,
    TIMESTAMP,
    Operations,
    Schema,
    object_schema,
    ok,
    ref,
)


def schemas() -> Schema:
    """The dashboard's figures (the quiet hosts and templates are the heartbeats' and unhandled's)."""
    return {"Metrics": _metrics()}


def _metrics() -> Schema:
    return object_schema(
        {
            "timestamp": TIMESTAMP,
            "events_per_second": object_schema(
                {w: NULLABLE_NUMBER for w in ("1m", "1h", "24h")},
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
                "items": object_schema(
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
                "items": object_schema({"hostname": STR, "events": INT}, ["hostname", "events"]),
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
                "items": object_schema({"hostname": STR, "held": INT}, ["hostname", "held"]),
            },
            "top_storming_rules": {
                "type": ["array", "null"],
                "description": "last hour: the rules with most events held as storm_budget",
                "items": object_schema(
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
                "items": object_schema(
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
    )


def operations() -> Operations:
    """/metrics."""
    return {
        ("get", "/metrics"): {
            "summary": "The dashboard's numbers (events per second, queues, DLQ, circuit, top rules)",
            "responses": ok("Metrics"),
        },
    }
