"""OpenAPI of maintenance windows (:mod:`mutt_app.web.api.windows`): the stored window with what it
means now (open or not, its next occurrences), and its changes.
"""

from __future__ import annotations

from mutt_app.web.api.openapi.schema import (
    BOOL,
    CONFLICT_ERRORS,
    INT,
    NULLABLE_TIMESTAMP,
    STR,
    TIMESTAMP,
    Operations,
    Schema,
    array,
    change_answer,
    change_body,
    change_operation,
    create_operation,
    errors,
    id_param,
    nullable,
    object_schema,
    ok,
    param,
    read_one,
    ref,
    single,
    stored_fields,
)
from mutt_app.web.api.windows import WINDOW_FIELDS

WINDOW_ID = id_param("window_id", "window")


def schemas() -> Schema:
    """A maintenance window, its change bodies and answers."""
    occurrence = object_schema({"start": TIMESTAMP, "end": TIMESTAMP}, ["start", "end"])
    stored = stored_fields(WINDOW_FIELDS)
    stored["starts_at"] = TIMESTAMP
    stored["ends_at"] = NULLABLE_TIMESTAMP
    columns = {
        "id": INT,
        **stored,
        "ended_at": NULLABLE_TIMESTAMP,
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
    window = object_schema(
        {
            **columns,
            "active": BOOL,
            "occurrence": nullable(occurrence),
            "next_occurrences": array(occurrence),
            "error": STR,
        },
        ["id", *WINDOW_FIELDS, "ended_at", "active", "occurrence", "next_occurrences"],
    )
    return {
        "MaintenanceWindow": window,
        "MaintenanceWindowCreate": change_body(WINDOW_FIELDS, ["name", "starts_at", "action"]),
        "MaintenanceWindowUpdate": change_body(WINDOW_FIELDS),
        "MaintenanceWindowOne": single("maintenance_window", "MaintenanceWindow"),
        "MaintenanceWindowList": object_schema(
            {"maintenance_windows": array(ref("MaintenanceWindow")), "total": INT},
            ["maintenance_windows", "total"],
        ),
        "MaintenanceWindowChange": change_answer("maintenance_window", ref("MaintenanceWindow")),
        "MaintenanceWindowDeleted": change_answer(
            "deleted", object_schema(columns, ["id", *WINDOW_FIELDS]), changed=False
        ),
    }


def operations() -> Operations:
    """/maintenance-windows and /maintenance-windows/{window_id}."""
    return {
        ("get", "/maintenance-windows"): {
            "summary": "Maintenance windows, each open or not now, with its next occurrences",
            "parameters": [
                param("active", "query", BOOL, "only windows open now (true) or closed (false)")
            ],
            "responses": ok("MaintenanceWindowList") | errors(400),
        },
        ("post", "/maintenance-windows"): create_operation(
            "Create a maintenance window (one-off, or an RRULE in a time zone)",
            "MaintenanceWindowChange",
            "MaintenanceWindowCreate",
        ),
        ("get", "/maintenance-windows/{window_id}"): read_one(
            "One maintenance window", WINDOW_ID, "MaintenanceWindowOne"
        ),
        ("put", "/maintenance-windows/{window_id}"): change_operation(
            "Change some of a window's fields (the merged window must be valid)",
            "MaintenanceWindowChange",
            "MaintenanceWindowUpdate",
            path_param=WINDOW_ID,
            statuses=CONFLICT_ERRORS,
        ),
        ("post", "/maintenance-windows/{window_id}/end"): change_operation(
            "End the window's open occurrence now (409 if none is open)",
            "MaintenanceWindowChange",
            path_param=WINDOW_ID,
            statuses=CONFLICT_ERRORS,
        ),
        ("delete", "/maintenance-windows/{window_id}"): change_operation(
            "Delete a maintenance window", "MaintenanceWindowDeleted", path_param=WINDOW_ID
        ),
    }
