"""OpenAPI of development hosts and device teams (:mod:`mutt_app.web.api.hosts`)."""

from __future__ import annotations

from mutt_app.web.api.hosts import DEV_HOST_FIELDS, TEAM_FIELDS
from mutt_app.web.api.openapi.schema import (
    HOSTNAME,
    INT,
    LIMIT,
    NULLABLE_STR,
    OFFSET,
    QUERY_TEXT,
    STR,
    TIMESTAMP,
    Operations,
    Schema,
    change_answer,
    change_body,
    change_operation,
    create_operation,
    errors,
    listing,
    object_schema,
    ok,
    param,
    ref,
)

BY_HOSTNAME = ("hostname", STR)


def schemas() -> Schema:
    """A development host and a host's team, with their change bodies and answers."""
    return {
        "DevHost": object_schema(
            {"id": INT, "hostname": STR, "description": NULLABLE_STR, "added_at": TIMESTAMP},
            ["id", "hostname", "description", "added_at"],
        ),
        "DevHostCreate": change_body(DEV_HOST_FIELDS, ["hostname"]),
        "DevHostList": listing("dev_hosts", "DevHost"),
        "DevHostCreated": change_answer("dev_host", ref("DevHost")),
        "DevHostDeleted": change_answer("deleted", ref("DevHost"), by=BY_HOSTNAME, changed=False),
        "Team": object_schema(
            {"id": INT, "hostname": STR, "team_assignment": STR, "updated_at": TIMESTAMP},
            ["id", "hostname", "team_assignment", "updated_at"],
        ),
        "TeamCreate": change_body(TEAM_FIELDS, ["hostname", "team_assignment"]),
        "TeamUpdate": change_body(
            {"team_assignment": TEAM_FIELDS["team_assignment"]}, ["team_assignment"]
        ),
        "TeamList": listing("teams", "Team"),
        "TeamCreated": change_answer("team", ref("Team")),
        "TeamChange": change_answer("team", ref("Team"), by=BY_HOSTNAME),
        "TeamDeleted": change_answer("deleted", ref("Team"), by=BY_HOSTNAME, changed=False),
    }


def operations() -> Operations:
    """/dev-hosts and /teams."""
    return {
        ("get", "/dev-hosts"): {
            "summary": "List development hosts",
            "parameters": [LIMIT, OFFSET],
            "responses": ok("DevHostList") | errors(400),
        },
        ("post", "/dev-hosts"): create_operation(
            "Mark a host as development",
            "DevHostCreated",
            "DevHostCreate",
        ),
        ("delete", "/dev-hosts/{hostname}"): change_operation(
            "Make a host production again", "DevHostDeleted", path_param=HOSTNAME
        ),
        ("get", "/teams"): {
            "summary": "List host-to-team mappings",
            "parameters": [LIMIT, OFFSET, param("team", "query", QUERY_TEXT, "only this team")],
            "responses": ok("TeamList") | errors(400),
        },
        ("post", "/teams"): create_operation("Map a host to a team", "TeamCreated", "TeamCreate"),
        ("put", "/teams/{hostname}"): change_operation(
            "Change the team a host maps to", "TeamChange", "TeamUpdate", path_param=HOSTNAME
        ),
        ("delete", "/teams/{hostname}"): change_operation(
            "Remove a host's team mapping", "TeamDeleted", path_param=HOSTNAME
        ),
    }
