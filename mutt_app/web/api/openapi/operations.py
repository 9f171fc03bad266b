"""OpenAPI of the operators' routes (:mod:`mutt_app.web.api.operations`): the dead-letter queue,
an alert's deliveries to Moog, and the dynamic configuration.
"""

from __future__ import annotations

from mutt_app.dynamic_config import KEYS
from mutt_app.web.api.openapi.schema import (
    ANY,
    BOOL,
    CHANGE_HEADERS,
    INT,
    LIMIT,
    NULLABLE_INT,
    NULLABLE_STR,
    NULLABLE_TIMESTAMP,
    NULLABLE_UUID,
    NUMBER,
    OFFSET,
    QUERY_TEXT,
    STR,
    TIMESTAMP,
    UUID,
    Operations,
    Schema,
    array,
    change_body,
    change_operation,
    errors,
    fields,
    id_param,
    listing,
    object_schema,
    ok,
    param,
    ref,
)
from mutt_app.web.api.operations import CONFIG_FIELDS

ITEM_ID = id_param("item_id", "item")
POISON = param("poison", "query", {"type": "boolean"}, "the poison store instead of the DLQ")


def schemas() -> Schema:
    """A dead letter and its list, an alert's deliveries, the dynamic configuration and its change."""
    dynamic_values = fields(CONFIG_FIELDS)
    return {
        "DeadLetter": object_schema(
            {
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
            },
            ["id", "task_name", "queue", "error_message"],
        ),
        "DeadLetterList": listing("items", "DeadLetter", poison=BOOL),
        "DeliveryAttempt": object_schema(
            {
                "at": TIMESTAMP,
                "outcome": {
                    "enum": [
                        "delivered",
                        "retry",
                        "rejected",
                        "redirected",
                        "unreadable",
                        "dead_lettered",
                    ]
                },
                "status": NULLABLE_INT,
                "error": STR,
                "task_id": STR,
                "batch_size": INT,
                "retry_in": NUMBER,
            },
            ["at", "outcome", "status", "error", "task_id", "batch_size"],
        ),
        "Deliveries": object_schema(
            {
                "correlation_id": STR,
                "sent": BOOL,
                "sent_at": NULLABLE_TIMESTAMP,
                "attempts": array(ref("DeliveryAttempt")),
            },
            ["correlation_id", "sent", "sent_at", "attempts"],
        ),
        "Replayed": object_schema(
            {"replayed": INT, "task": STR, "queue": STR}, ["replayed", "task", "queue"]
        ),
        "DynamicConfig": object_schema(
            {
                "config": object_schema(
                    {
                        name: object_schema(
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
        "DynamicConfigPut": change_body(CONFIG_FIELDS) | {"minProperties": 1},
        "DynamicConfigChange": object_schema(
            {"old": {"type": "object"}, "new": {"type": "object"}, "changed": BOOL},
            ["old", "new", "changed"],
        ),
    }


def operations() -> Operations:
    """/dlq, /alerts/{correlation_id}/deliveries and /config."""
    return {
        ("get", "/dlq"): {
            "summary": "Dead letters (or poison items), oldest first",
            "parameters": [
                POISON,
                param("task", "query", QUERY_TEXT, "only this task"),
                LIMIT,
                OFFSET,
            ],
            "responses": ok("DeadLetterList") | errors(400),
        },
        ("post", "/dlq/{item_id}/replay"): change_operation(
            "Publish a dead letter again now and remove it (audited, with a reason)",
            "Replayed",
            path_param=ITEM_ID,
            statuses=(400, 404, 415, 422),
        )
        | {"parameters": [ITEM_ID, POISON, *CHANGE_HEADERS]},
        ("get", "/alerts/{correlation_id}/deliveries"): {
            "summary": "Was this alert sent to Moog, when, and what did Moog say (each attempt)",
            "parameters": [
                param("correlation_id", "path", UUID, "the alert's external_id (a UUID)"),
            ],
            "responses": ok("Deliveries") | errors(400, 404),
        },
        ("get", "/config"): {
            "summary": "Every dynamic setting: value, overridden or default, help",
            "responses": ok("DynamicConfig"),
        },
        ("put", "/config"): change_operation(
            "Change dynamic settings, all or none (one audit row)",
            "DynamicConfigChange",
            "DynamicConfigPut",
            statuses=(400, 415, 422),
        ),
    }
