"""OpenAPI of the SLO report (:mod:`mutt_app.web.api.slo`): ingest and forward availability, error
budget and burn rate.
"""

from __future__ import annotations

from mutt_app.web.api.openapi.schema import (
    BOOL,
    INT,
    NULLABLE_NUMBER,
    NUMBER,
    STR,
    Operations,
    Schema,
    errors,
    object_schema,
    ok,
    param,
)


def schemas() -> Schema:
    """The report: each objective against its target, over a window."""
    objective = object_schema(
        {
            "target": NUMBER,
            "actual": NULLABLE_NUMBER,
            "compliant": BOOL,
            "good": NUMBER,
            "total": NUMBER,
            "error_budget": NUMBER,
            "error_budget_remaining": NULLABLE_NUMBER,
            "burn_rate": NULLABLE_NUMBER,
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
    return {
        "SloReport": object_schema(
            {
                "timestamp": NUMBER,
                "window_hours": INT,
                "overall_compliant": BOOL,
                "slos": object_schema(
                    {"ingest_availability": objective, "forward_availability": objective},
                    ["ingest_availability", "forward_availability"],
                ),
                "fallback_reasons": {"type": "object", "additionalProperties": STR},
            },
            ["timestamp", "window_hours", "overall_compliant", "slos", "fallback_reasons"],
        ),
    }


def operations() -> Operations:
    """/slo."""
    return {
        ("get", "/slo"): {
            "summary": "Ingest and forward availability, error budget and burn rate",
            "parameters": [
                param(
                    "window_hours",
                    "query",
                    {"type": "integer", "minimum": 1, "maximum": 720},
                    "the window (default: dynamic setting slo_window_hours)",
                )
            ],
            "responses": ok("SloReport") | errors(400, 503),
        },
    }
