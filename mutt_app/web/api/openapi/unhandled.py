"""OpenAPI of the unhandled templates (:mod:`mutt_app.web.api.unhandled`): events no rule matched,
grouped by message template, each with a rule that would match it.
"""

from __future__ import annotations

from mutt_app.watch.unhandled import MAX_HOURS
from mutt_app.web.api.openapi.schema import (
    INT,
    LIMIT,
    STR,
    TIMESTAMP,
    Operations,
    Schema,
    array,
    errors,
    nullable,
    object_schema,
    ok,
    param,
)


def _template() -> Schema:
    """One template: its counts, busiest hosts, an example and a suggested rule."""
    suggested_rule = object_schema(
        {
            "match_type": {"enum": ["contains", "regex"]},
            "match_string": STR,
            "team_assignment": STR,
        },
        ["match_type", "match_string"],
    )
    return object_schema(
        {
            "template": {"type": "string", "description": "the message, volatile parts masked"},
            "events": INT,
            "hosts": {"type": "integer", "description": "distinct hosts"},
            "top_hosts": array(
                object_schema({"hostname": STR, "events": INT}, ["hostname", "events"])
            ),
            "first_seen": TIMESTAMP,
            "last_seen": TIMESTAMP,
            "example": {"type": "string", "description": "the newest message of the template"},
            "suggested_rule": {
                **nullable(suggested_rule),
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


def schemas() -> Schema:
    """The templates of a window (the dashboard shows them too)."""
    return {
        "UnhandledTemplates": object_schema(
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
                "templates": array(_template()),
            },
            ["hours", "since", "until", "scanned", "truncated", "max_rows", "templates"],
        ),
    }


def operations() -> Operations:
    """/unhandled/templates."""
    return {
        ("get", "/unhandled/templates"): {
            "summary": "Events no rule matched, grouped by message template, with a rule for each",
            "parameters": [
                param(
                    "hours",
                    "query",
                    {"type": "integer", "minimum": 1, "maximum": MAX_HOURS},
                    "the window (default: UNHANDLED_TEMPLATES_HOURS)",
                ),
                LIMIT,
            ],
            "responses": ok("UnhandledTemplates") | errors(400),
        },
    }
