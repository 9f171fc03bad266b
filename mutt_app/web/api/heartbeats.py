"""API v2: heartbeats ("host X, or a glob, or a device team, must send an event every N minutes").

Changes are the commands of :mod:`mutt_app.commands.heartbeats` (one config_audit_log row each, a
reason required, the rules version bumped after the commit); reads need viewer, changes admin. A
heartbeat names exactly one of ``host`` (a host name, or a glob such as ``db-*`` over the hosts MUTT
has heard from) and ``team`` (a device team). The list carries
each heartbeat's quiet hosts as the last check recorded them (:mod:`mutt_app.watch.heartbeats`); the
check itself runs in beat every HEARTBEAT_CHECK_INTERVAL_SECONDS and reads the table afresh, so a
change applies from its next run.
"""

from __future__ import annotations

from typing import Any

import redis
from flask import Response, request
from sqlalchemy import select

from mutt_app.commands import heartbeats as heartbeat_commands
from mutt_app.commands.fields import FieldSpec, check_fields
from mutt_app.db.models import MAX_HEARTBEAT_MINUTES, PROD_HANDLINGS, Heartbeat
from mutt_app.events.schema import MAX_HOSTNAME_CHARS
from mutt_app.watch.heartbeats import quiet_hosts
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import change_reason, json_body
from mutt_app.web.api.params import bool_arg, int_arg, limit_arg
from mutt_app.web.api.resources import redis_connection, sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.api.rows import count

MAX_NAME_CHARS = 200
# Checked by check_fields and described in the OpenAPI document from these same specs.
HEARTBEAT_FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec(str, min_length=1, max_length=MAX_NAME_CHARS),
    "host": FieldSpec(
        str,
        nullable=True,
        min_length=1,
        max_length=MAX_HOSTNAME_CHARS,
        description="a host name, or a glob (*, ?, [...]) over the hosts heard from",
    ),
    "team": FieldSpec(str, nullable=True, min_length=1, description="a device team"),
    "interval_minutes": FieldSpec(int, minimum=1, maximum=MAX_HEARTBEAT_MINUTES),
    "handling": FieldSpec(str, enum=PROD_HANDLINGS, description="the alert's lane"),
    "team_assignment": FieldSpec(
        str, nullable=True, min_length=1, description="Moog class; null: the host's device team"
    ),
    "is_active": FieldSpec(bool),
    "description": FieldSpec(str, nullable=True),
}
REQUIRED_ON_CREATE = ("name", "interval_minutes")
READ_ONLY = ("id", "created_at", "updated_at")


def _quiet_by_heartbeat() -> dict[int, list[dict[str, Any]]] | None:
    """The open quiet alerts by heartbeat id; None if Redis cannot say."""
    try:
        found = quiet_hosts(redis_connection())
    except (redis.RedisError, OSError):
        return None
    by_id: dict[int, list[dict[str, Any]]] = {}
    for quiet in found:
        by_id.setdefault(quiet["heartbeat_id"], []).append(quiet)
    return by_id


def _with_quiet(row: Heartbeat, quiet: dict[int, list[dict[str, Any]]] | None) -> dict[str, Any]:
    hosts = None if quiet is None else quiet.get(row.id, [])
    return {**row.as_dict(), "quiet_hosts": hosts}


@bp.get("/heartbeats")
def list_heartbeats() -> Response:
    """Heartbeats, those with quiet hosts first, then by name. Filters: is_active, quiet
    (only those with quiet hosts now); limit (1..500), offset. ``quiet_hosts`` is null when
    Redis is unreachable."""
    limit = limit_arg()
    offset = int_arg("offset", 0, minimum=0)
    is_active = bool_arg("is_active")
    only_quiet = bool_arg("quiet")
    quiet = _quiet_by_heartbeat()
    query = select(Heartbeat)
    if is_active is not None:
        query = query.where(Heartbeat.is_active.is_(is_active))
    if only_quiet:
        if quiet is None:
            raise ApiError(503, "Redis is unreachable: which hosts are quiet is unknown")
        query = query.where(Heartbeat.id.in_(list(quiet)))
    with sessions()() as session:
        total = count(session, query)
        rows = session.scalars(query).all()
        # Few rows (one per watched host group): ordered here by what only Redis knows.
        rows = sorted(rows, key=lambda r: (-len((quiet or {}).get(r.id, [])), r.name))
        listed = [_with_quiet(row, quiet) for row in rows[offset : offset + limit]]
    return json_response({"heartbeats": listed, "total": total, "limit": limit, "offset": offset})


@bp.post("/heartbeats")
def create_heartbeat() -> Response:
    """Create a heartbeat; 201 with its id, 409 if the name is taken."""
    body = json_body()
    fields = check_fields(body, HEARTBEAT_FIELDS, required=REQUIRED_ON_CREATE, read_only=READ_ONLY)
    fields = heartbeat_commands.new_heartbeat(fields)
    reason = change_reason(body)
    conflict = f"a heartbeat named {fields['name']!r} already exists"
    with config_change(reason, conflict=conflict) as change:
        created = heartbeat_commands.create(change, fields)
    return json_response(
        {"id": created["id"], "heartbeat": created, **change.summary()},
        201,
        {"Location": f"{request.path}/{created['id']}"},
    )


@bp.put("/heartbeats/<int:heartbeat_id>")
def update_heartbeat(heartbeat_id: int) -> Response:
    """Change some of a heartbeat's fields; the merged heartbeat must name a host or a team."""
    body = json_body()
    fields = check_fields(body, HEARTBEAT_FIELDS, read_only=READ_ONLY)
    if not fields:
        raise ApiError(422, "nothing to update: the body names no heartbeat field")
    fields = heartbeat_commands.stripped(fields)
    reason = change_reason(body)
    with config_change(reason, conflict="a heartbeat with that name already exists") as change:
        current = heartbeat_commands.update(change, heartbeat_id, fields).as_dict()
    return json_response({"id": heartbeat_id, "heartbeat": current, **change.summary()})


@bp.delete("/heartbeats/<int:heartbeat_id>")
def delete_heartbeat(heartbeat_id: int) -> Response:
    """Delete a heartbeat; the next check clears its open alerts."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        old = heartbeat_commands.delete(change, heartbeat_id)
    return json_response({"id": heartbeat_id, "deleted": old, **change.summary()})
