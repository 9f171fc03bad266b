"""OpenAPI of heartbeats (:mod:`mutt_app.web.api.heartbeats`): list with their quiet hosts (a
bounded number each), one heartbeat's quiet hosts a page at a time, create, change, delete.
"""

from __future__ import annotations

from mutt_app.web.api.heartbeats import HEARTBEAT_FIELDS, MAX_QUIET_LIMIT
from mutt_app.web.api.openapi.schema import (
    BOOL,
    CONFLICT_ERRORS,
    INT,
    LIMIT,
    NULLABLE_TIMESTAMP,
    OFFSET,
    STR,
    TIMESTAMP,
    Operations,
    Schema,
    change_answer,
    change_body,
    change_operation,
    create_operation,
    errors,
    id_param,
    listing,
    object_schema,
    ok,
    param,
    ref,
    stored_record,
)

HEARTBEAT_ID = id_param("heartbeat_id", "heartbeat")
NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 0}
LINKS = object_schema(
    {
        "next": {"type": ["string", "null"], "description": "the next page; null on the last"},
        "prev": {"type": ["string", "null"], "description": "the previous page; null on the first"},
    },
    ["next", "prev"],
)


def schemas() -> Schema:
    """A heartbeat, as stored and as listed (with its quiet hosts), its change bodies and answers."""
    heartbeat = stored_record(HEARTBEAT_FIELDS)
    listed = object_schema(
        {
            **heartbeat["properties"],
            "quiet_hosts": {
                "type": ["array", "null"],
                "items": ref("QuietHost"),
                "description": "its open quiet alerts, longest quiet first, at most quiet_limit"
                " (all of them: /heartbeats/{id}/quiet-hosts); null if Redis is unreachable",
            },
            "quiet_count": NULLABLE_COUNT
            | {"description": "how many open quiet alerts it has; null if Redis is unreachable"},
            "quiet_over_cap": NULLABLE_COUNT
            | {"description": "quiet hosts not alerted at the last check past its cap"},
        },
        [*heartbeat["required"], "quiet_hosts", "quiet_count", "quiet_over_cap"],
    )
    return {
        "QuietHost": object_schema(
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
        ),
        "Heartbeat": heartbeat,
        "HeartbeatListed": listed,
        "HeartbeatCreate": change_body(HEARTBEAT_FIELDS, ["name", "interval_minutes"]),
        "HeartbeatUpdate": change_body(HEARTBEAT_FIELDS),
        "HeartbeatList": listing("heartbeats", "HeartbeatListed", links=LINKS),
        "QuietHostList": listing(
            "quiet_hosts",
            "QuietHost",
            over_cap=INT
            | {"description": "quiet hosts not alerted at the last check past its cap"},
            links=LINKS,
        ),
        "HeartbeatChange": change_answer("heartbeat", ref("Heartbeat")),
        "HeartbeatDeleted": change_answer("deleted", ref("Heartbeat")),
    }


def operations() -> Operations:
    """/heartbeats and /heartbeats/{heartbeat_id}."""
    return {
        ("get", "/heartbeats"): {
            "summary": "List heartbeats, those with quiet hosts first, with their quiet hosts",
            "parameters": [
                LIMIT,
                OFFSET,
                param("is_active", "query", BOOL, "only active (true) or inactive (false)"),
                param("quiet", "query", BOOL, "only heartbeats with quiet hosts now"),
                param(
                    "quiet_limit",
                    "query",
                    {"type": "integer", "minimum": 0, "maximum": MAX_QUIET_LIMIT},
                    "quiet hosts listed per heartbeat (default 10)",
                ),
            ],
            "responses": ok("HeartbeatList") | errors(400, 503),
        },
        ("get", "/heartbeats/{heartbeat_id}/quiet-hosts"): {
            "summary": "One heartbeat's quiet hosts, longest quiet first, a page at a time",
            "parameters": [HEARTBEAT_ID, LIMIT, OFFSET],
            "responses": ok("QuietHostList") | errors(400, 404, 503),
        },
        ("post", "/heartbeats"): create_operation(
            "Create a heartbeat: a host, glob or team must send an event every N min",
            "HeartbeatChange",
            "HeartbeatCreate",
        ),
        ("put", "/heartbeats/{heartbeat_id}"): change_operation(
            "Change some of a heartbeat's fields",
            "HeartbeatChange",
            "HeartbeatUpdate",
            path_param=HEARTBEAT_ID,
            statuses=CONFLICT_ERRORS,
        ),
        ("delete", "/heartbeats/{heartbeat_id}"): change_operation(
            "Delete a heartbeat (the next check clears its open alerts)",
            "HeartbeatDeleted",
            path_param=HEARTBEAT_ID,
        ),
    }
