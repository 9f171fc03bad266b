"""API v2: development hosts and device teams.

The changes are the commands of :mod:`mutt_app.commands.hosts` and :mod:`mutt_app.commands.teams`
(hostnames stripped; a duplicate hostname is a 409, decided by the table's UNIQUE constraint so that
two concurrent requests cannot both succeed).
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.commands import hosts, teams
from mutt_app.commands.fields import FieldSpec, check_fields
from mutt_app.db.models import DevelopmentHost, DeviceTeam
from mutt_app.events.schema import MAX_HOSTNAME_CHARS
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import change_reason, json_body
from mutt_app.web.api.params import int_arg, limit_arg
from mutt_app.web.api.resources import sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.api.rows import count

# Checked by check_fields and described in the OpenAPI document from these same specs.
HOSTNAME_FIELD = FieldSpec(str, min_length=1, max_length=MAX_HOSTNAME_CHARS)
DEV_HOST_FIELDS = {"hostname": HOSTNAME_FIELD, "description": FieldSpec(str, nullable=True)}
TEAM_FIELDS = {"hostname": HOSTNAME_FIELD, "team_assignment": FieldSpec(str, min_length=1)}


def _page(session: Session, query: Any, order: Any) -> tuple[list[Any], int, int, int]:
    limit = limit_arg()
    offset = int_arg("offset", 0, minimum=0)
    total = count(session, query)
    rows = session.scalars(query.order_by(order).limit(limit).offset(offset)).all()
    return list(rows), total, limit, offset


# --- development hosts -------------------------------------------------------------------------


@bp.get("/dev-hosts")
def list_dev_hosts() -> Response:
    """Development hosts by hostname; limit (1..500) and offset."""
    with sessions()() as session:
        rows, total, limit, offset = _page(
            session, select(DevelopmentHost), DevelopmentHost.hostname
        )
        hosts = [row.as_dict() for row in rows]
    return json_response({"dev_hosts": hosts, "total": total, "limit": limit, "offset": offset})


@bp.post("/dev-hosts")
def add_dev_host() -> Response:
    """Mark a host as development (its events get the rules' dev_handling); 409 if it is already."""
    body = json_body()
    fields = check_fields(body, DEV_HOST_FIELDS, required=("hostname",))
    hostname = hosts.hostname(fields["hostname"])
    reason = change_reason(body)
    with config_change(reason, conflict=f"development host {hostname!r} already exists") as change:
        created = hosts.add(change, hostname, fields.get("description"))
    return json_response({"id": created["id"], "dev_host": created, **change.summary()}, 201)


@bp.delete("/dev-hosts/<hostname>")
def remove_dev_host(hostname: str) -> Response:
    """Make a host production again."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        old = hosts.remove(change, hostname)
    return json_response({"hostname": hostname, "deleted": old, **change.summary()})


# --- device teams ------------------------------------------------------------------------------


@bp.get("/teams")
def list_teams() -> Response:
    """Host-to-team mappings by hostname. Filter: team; limit (1..500) and offset."""
    query = select(DeviceTeam)
    if team := request.args.get("team", "").strip():
        query = query.where(DeviceTeam.team_assignment == team)
    with sessions()() as session:
        rows, total, limit, offset = _page(session, query, DeviceTeam.hostname)
        teams = [row.as_dict() for row in rows]
    return json_response({"teams": teams, "total": total, "limit": limit, "offset": offset})


@bp.post("/teams")
def add_team() -> Response:
    """Map a host to a team (overriding its rules' team); 409 if the host is mapped already."""
    body = json_body()
    fields = check_fields(body, TEAM_FIELDS, required=("hostname", "team_assignment"))
    hostname = hosts.hostname(fields["hostname"])
    team = teams.team(fields["team_assignment"])
    reason = change_reason(body)
    with config_change(reason, conflict=f"host {hostname!r} already has a team") as change:
        created = teams.add(change, hostname, team)
    return json_response({"id": created["id"], "team": created, **change.summary()}, 201)


@bp.put("/teams/<hostname>")
def update_team(hostname: str) -> Response:
    """Change the team a host maps to (the body's ``team_assignment``)."""
    body = json_body()
    fields = check_fields(body, {"team_assignment": TEAM_FIELDS["team_assignment"]})
    if "team_assignment" not in fields:
        raise ApiError(
            422, "missing required field: team_assignment", {"missing_fields": ["team_assignment"]}
        )
    team = teams.team(fields["team_assignment"])
    reason = change_reason(body)
    with config_change(reason) as change:
        current = teams.set_team(change, hostname, team).as_dict()
    return json_response({"hostname": hostname, "team": current, **change.summary()})


@bp.delete("/teams/<hostname>")
def remove_team(hostname: str) -> Response:
    """Remove a host's team mapping (its events get their rule's team again)."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        old = teams.remove(change, hostname)
    return json_response({"hostname": hostname, "deleted": old, **change.summary()})
