"""API v2: development hosts and device teams.

Hostnames are stripped of surrounding blanks, as ingest strips an event's hostname; otherwise they
are matched exactly, as the rule engine matches them. A duplicate hostname is a 409, decided by the
table's UNIQUE constraint so that two concurrent requests cannot both succeed.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.commands.changes import Change
from mutt_app.db.models import DevelopmentHost, DeviceTeam
from mutt_app.events.schema import MAX_HOSTNAME_CHARS
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import FieldSpec, change_reason, check_fields, json_body
from mutt_app.web.api.params import int_arg, limit_arg
from mutt_app.web.api.resources import sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.api.rows import count

# Checked by check_fields and described in the OpenAPI document from these same specs.
HOSTNAME_FIELD = FieldSpec(str, min_length=1, max_length=MAX_HOSTNAME_CHARS)
DEV_HOST_FIELDS = {"hostname": HOSTNAME_FIELD, "description": FieldSpec(str, nullable=True)}
TEAM_FIELDS = {"hostname": HOSTNAME_FIELD, "team_assignment": FieldSpec(str, min_length=1)}


def _hostname(value: str) -> str:
    hostname = value.strip()
    if not hostname:
        raise ApiError(422, "hostname must not be blank", {"fields": {"hostname": "blank"}})
    return hostname


def _team(value: str) -> str:
    if not value.strip():
        raise ApiError(
            422, "team_assignment must not be blank", {"fields": {"team_assignment": "blank"}}
        )
    return value


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
    hostname = _hostname(fields["hostname"])
    reason = change_reason(body)
    with config_change(reason, conflict=f"development host {hostname!r} already exists") as change:
        created = change.create(
            DevelopmentHost(hostname=hostname, description=fields.get("description"))
        )
    return json_response({"id": created["id"], "dev_host": created, **change.summary()}, 201)


@bp.delete("/dev-hosts/<hostname>")
def remove_dev_host(hostname: str) -> Response:
    """Make a host production again."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        host = change.locked(DevelopmentHost, hostname=hostname)
        if host is None:
            raise ApiError(404, f"no development host {hostname!r}")
        old = change.delete(host)
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
    hostname = _hostname(fields["hostname"])
    team = _team(fields["team_assignment"])
    reason = change_reason(body)
    with config_change(reason, conflict=f"host {hostname!r} already has a team") as change:
        created = change.create(DeviceTeam(hostname=hostname, team_assignment=team))
    return json_response({"id": created["id"], "team": created, **change.summary()}, 201)


def _mapping_or_404(change: Change, hostname: str) -> DeviceTeam:
    mapping = change.locked(DeviceTeam, hostname=hostname)
    if mapping is None:
        raise ApiError(404, f"no team mapping for host {hostname!r}")
    return mapping


@bp.put("/teams/<hostname>")
def update_team(hostname: str) -> Response:
    """Change the team a host maps to (the body's ``team_assignment``)."""
    body = json_body()
    fields = check_fields(body, {"team_assignment": TEAM_FIELDS["team_assignment"]})
    if "team_assignment" not in fields:
        raise ApiError(
            422, "missing required field: team_assignment", {"missing_fields": ["team_assignment"]}
        )
    team = _team(fields["team_assignment"])
    reason = change_reason(body)
    with config_change(reason) as change:
        mapping = _mapping_or_404(change, hostname)
        if mapping.team_assignment != team:
            change.update(mapping, {"team_assignment": team})
        current = mapping.as_dict()
    return json_response({"hostname": hostname, "team": current, **change.summary()})


@bp.delete("/teams/<hostname>")
def remove_team(hostname: str) -> Response:
    """Remove a host's team mapping (its events get their rule's team again)."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        old = change.delete(_mapping_or_404(change, hostname))
    return json_response({"hostname": hostname, "deleted": old, **change.summary()})
