"""OpenAPI of one event's story (:mod:`mutt_app.web.api.events`): ``GET /events/{correlation_id}``."""

from __future__ import annotations

from mutt_app.db.models import NOT_FORWARDED_REASONS
from mutt_app.web.api.openapi.schema import (
    BOOL,
    INT,
    NULLABLE_INT,
    NULLABLE_STR,
    NULLABLE_TIMESTAMP,
    NULLABLE_UUID,
    STR,
    TIMESTAMP,
    UUID,
    Operations,
    Schema,
    array,
    errors,
    nullable,
    object_schema,
    ok,
    param,
    ref,
)

NULLABLE_BOOL = {"type": ["boolean", "null"]}


def schemas() -> Schema:
    """The story and its parts: arrival, decision, outcome, deliveries, dead letters."""
    return {
        "EventArrival": object_schema(
            {
                "event_timestamp": TIMESTAMP,
                "received_at": TIMESTAMP,
                "audited_at": TIMESTAMP,
                "hostname": STR,
                "message": STR,
                "source": NULLABLE_STR,
                "syslog_severity": NULLABLE_INT,
                "trap_oid": NULLABLE_STR,
                "raw": {"type": ["object", "null"]},
            },
            ["event_timestamp", "received_at", "hostname", "message"],
        ),
        "EventRule": object_schema(
            {
                "id": INT,
                "match_type": STR,
                "match_string": NULLABLE_STR,
                "trap_oid": NULLABLE_STR,
                "syslog_severity": NULLABLE_INT,
                "priority": INT,
                "prod_handling": STR,
                "dev_handling": STR,
                "team_assignment": STR,
                "is_active": BOOL,
                "updated_at": TIMESTAMP,
                "changed_since": {
                    "type": "boolean",
                    "description": "edited after the event: it may now say something else",
                },
            },
            ["id", "match_type", "prod_handling", "dev_handling", "changed_since"],
        ),
        "EventDecision": object_schema(
            {
                "rule_id": NULLABLE_INT,
                "rule": nullable(ref("EventRule")),
                "rules_version": NULLABLE_INT,
                "handling": STR,
                "team": NULLABLE_STR,
                "is_dev": BOOL,
            },
            ["rule_id", "rule", "rules_version", "handling", "team", "is_dev"],
        ),
        "EventOutcome": object_schema(
            {
                "forwarded": BOOL,
                "held_reason": {
                    "enum": [*NOT_FORWARDED_REASONS, None],
                    "description": "why the event was not forwarded; null: it was",
                },
                "explanation": STR,
                "duplicate_of": NULLABLE_UUID,
                "windows": {
                    "type": ["array", "null"],
                    "items": object_schema(
                        {
                            "id": INT,
                            "name": STR,
                            "occurrence_start": TIMESTAMP,
                            "occurrence_end": TIMESTAMP,
                        }
                    ),
                    "description": "maintenance: the suppressing windows open then that take it",
                },
                "budgets": {
                    "type": ["array", "null"],
                    "items": object_schema(
                        {
                            "scope": {"enum": ["device", "rule"]},
                            "name": STR,
                            "lane": {"enum": ["page", "ticket"]},
                            "limit": INT,
                            "window_seconds": INT,
                        }
                    ),
                    "description": "storm_budget: the budgets it counted in, with their size now",
                },
                "dedup_window_seconds": NULLABLE_INT,
                "flapping_pair": {"type": ["object", "null"]},
                "shed_mode": NULLABLE_STR,
            },
            ["forwarded", "held_reason", "explanation", "duplicate_of"],
        ),
        "EventDeliveries": object_schema(
            {
                "unavailable": {"type": "boolean", "description": "Redis could not be read"},
                "sent": NULLABLE_BOOL,
                "sent_at": NULLABLE_TIMESTAMP,
                "attempts": array(ref("DeliveryAttempt")),
            },
            ["unavailable", "sent", "sent_at", "attempts"],
        ),
        "EventDeadLetter": object_schema(
            {
                "store": {"enum": ["dead_letters", "poison_letters"]},
                "id": INT,
                "task_name": STR,
                "queue": STR,
                "error_type": STR,
                "error_message": STR,
                "attempts": INT,
                "replays": INT,
                "first_failed_at": TIMESTAMP,
                "last_failed_at": TIMESTAMP,
                "next_replay_at": NULLABLE_TIMESTAMP,
                "poisoned_at": NULLABLE_TIMESTAMP,
                "poison_reason": NULLABLE_STR,
            },
            ["store", "id", "task_name", "error_type", "error_message"],
        ),
        "EventStory": object_schema(
            {
                "correlation_id": UUID,
                "event": nullable(ref("EventArrival")),
                "decision": nullable(ref("EventDecision")),
                "outcome": nullable(ref("EventOutcome")),
                "deliveries": ref("EventDeliveries"),
                "dead_letters": array(ref("EventDeadLetter")),
                "trace_id": {
                    "type": ["string", "null"],
                    "description": "the event's trace, when tracing records one",
                },
            },
            [
                "correlation_id",
                "event",
                "decision",
                "outcome",
                "deliveries",
                "dead_letters",
                "trace_id",
            ],
        ),
    }


def operations() -> Operations:
    """/events/{correlation_id}."""
    return {
        ("get", "/events/{correlation_id}"): {
            "summary": "One event's whole story: what arrived, which rule decided, why it was"
            " or was not sent, each delivery attempt, its dead letter, its trace id",
            "parameters": [param("correlation_id", "path", UUID, "the event's correlation_id")],
            "responses": ok("EventStory") | errors(400, 404),
        },
    }
