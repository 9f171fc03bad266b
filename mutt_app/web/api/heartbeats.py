"""API v2: heartbeats ("host X, or a glob, or a device team, must send an event every N minutes").

Changes are the commands of :mod:`mutt_app.commands.heartbeats` (one config_audit_log row each, a
reason required, the rules version bumped after the commit); reads need viewer, changes admin. A
heartbeat names exactly one of ``host`` (a host name, or a glob such as ``db-*`` over the hosts MUTT
has heard from) and ``team`` (a device team). The list carries
each heartbeat's quiet hosts as the last check recorded them (:mod:`mutt_app.watch.heartbeats`): how
many, and the first ``quiet_limit`` of them (longest quiet first); all of one heartbeat's are paged
by ``/heartbeats/{id}/quiet-hosts``. Both answers carry ``links`` (next and previous page), and no
answer grows with the number of hosts a heartbeat watches. The check itself runs in beat every
HEARTBEAT_CHECK_INTERVAL_SECONDS and reads the table afresh, so a change applies from its next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask import Response, request, url_for
from sqlalchemy import select

from mutt_app.commands import heartbeats as heartbeat_commands
from mutt_app.commands.fields import FieldSpec, check_fields
from mutt_app.db.models import MAX_HEARTBEAT_MINUTES, PROD_HANDLINGS, Heartbeat
from mutt_app.events.schema import MAX_HOSTNAME_CHARS
from mutt_app.watch.heartbeat_quiet import over_cap, quiet_counts, quiet_hosts
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import change_reason, json_body
from mutt_app.web.api.params import MAX_DB_INT, bool_arg, int_arg, limit_arg
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


MAX_QUIET_LIMIT = 100
"""Most quiet hosts one listed heartbeat carries (``quiet_limit``); the rest are paged."""


@dataclass(frozen=True)
class _Quiet:
    """What Redis says of the quiet hosts: counts and over-cap counts per heartbeat id."""

    counts: dict[int, int]
    over_cap: dict[int, int]


def _quiet_now() -> _Quiet | None:
    """The open quiet alerts counted per heartbeat; None if Redis cannot say."""
    client = redis_connection()
    try:
        return _Quiet(quiet_counts(client), over_cap(client))
    except (redis.RedisError, OSError):
        return None


def _with_quiet(row: Heartbeat, quiet: _Quiet | None, quiet_limit: int) -> dict[str, Any]:
    if quiet is None:
        return {**row.as_dict(), "quiet_hosts": None, "quiet_count": None, "quiet_over_cap": None}
    count = quiet.counts.get(row.id, 0)
    try:
        hosts = (
            quiet_hosts(redis_connection(), heartbeat_id=row.id, limit=quiet_limit)
            if count and quiet_limit
            else []
        )
    except (redis.RedisError, OSError):
        hosts = None
    return {
        **row.as_dict(),
        "quiet_hosts": hosts,
        "quiet_count": count,
        "quiet_over_cap": quiet.over_cap.get(row.id, 0),
    }


def page_links(total: int, limit: int, offset: int, **values: Any) -> dict[str, str | None]:
    """The next and previous pages of the request's endpoint (its other query arguments kept)."""
    args = {**request.args.to_dict(), **request.view_args, **values}  # type: ignore[dict-item]

    def page(at: int) -> str:
        return url_for(request.endpoint or "", **{**args, "limit": limit, "offset": at})

    return {
        "next": page(offset + limit) if offset + limit < total else None,
        "prev": page(max(0, offset - limit)) if offset > 0 else None,
    }


@bp.get("/heartbeats")
def list_heartbeats() -> Response:
    """Heartbeats, those with quiet hosts first, then by name. Filters: is_active, quiet
    (only those with quiet hosts now); limit (1..500), offset; quiet_limit (0..100, default 10):
    quiet hosts listed per heartbeat (``quiet_count`` says how many there are). ``quiet_hosts``
    and the counts are null when Redis is unreachable."""
    limit = limit_arg()
    offset = int_arg("offset", 0, minimum=0)
    quiet_limit = int_arg("quiet_limit", 10, minimum=0, maximum=MAX_QUIET_LIMIT)
    is_active = bool_arg("is_active")
    only_quiet = bool_arg("quiet")
    quiet = _quiet_now()
    query = select(Heartbeat)
    if is_active is not None:
        query = query.where(Heartbeat.is_active.is_(is_active))
    if only_quiet:
        if quiet is None:
            raise ApiError(503, "Redis is unreachable: which hosts are quiet is unknown")
        query = query.where(Heartbeat.id.in_([k for k, n in quiet.counts.items() if n]))
    counts = {} if quiet is None else quiet.counts
    with sessions()() as session:
        total = count(session, query)
        rows = session.scalars(query).all()
        # Few rows (one per watched host group): ordered here by what only Redis knows.
        rows = sorted(rows, key=lambda r: (-counts.get(r.id, 0), r.name))
        listed = [_with_quiet(row, quiet, quiet_limit) for row in rows[offset : offset + limit]]
    return json_response(
        {
            "heartbeats": listed,
            "total": total,
            "limit": limit,
            "offset": offset,
            "links": page_links(total, limit, offset),
        }
    )


@bp.get("/heartbeats/<int:heartbeat_id>/quiet-hosts")
def list_quiet_hosts(heartbeat_id: int) -> Response:
    """One heartbeat's quiet hosts, longest quiet first, a page at a time (limit 1..500,
    offset), with ``over_cap``: quiet hosts not alerted past HEARTBEAT_MAX_QUIET_HOSTS."""
    limit = limit_arg()
    offset = int_arg("offset", 0, minimum=0)
    with sessions()() as session:
        if heartbeat_id > MAX_DB_INT or session.get(Heartbeat, heartbeat_id) is None:
            raise ApiError(404, f"no heartbeat {heartbeat_id}")
    quiet = _quiet_now()
    if quiet is None:
        raise ApiError(503, "Redis is unreachable: which hosts are quiet is unknown")
    total = quiet.counts.get(heartbeat_id, 0)
    try:
        page = quiet_hosts(
            redis_connection(), heartbeat_id=heartbeat_id, offset=offset, limit=limit
        )
    except (redis.RedisError, OSError):
        raise ApiError(503, "Redis is unreachable: which hosts are quiet is unknown") from None
    return json_response(
        {
            "quiet_hosts": page,
            "total": total,
            "limit": limit,
            "offset": offset,
            "over_cap": quiet.over_cap.get(heartbeat_id, 0),
            "links": page_links(total, limit, offset),
        }
    )


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
