"""REST API v2 for operators: the dead-letter queue and the dynamic (run-time) configuration.

- ``GET /dlq``: dead letters (``?poison=true``: the poison store), filters ``task``, ``limit`` and
  ``offset``; answers ``{items, total, limit, offset, poison}``.
- ``POST /dlq/<id>/replay``: publish a dead letter (or, with ``?poison=true``, a poison item) again
  now and remove it, the command the admin UI and ``mutt dlq replay`` run
  (:func:`mutt_app.commands.deadletters.replay`): a reason is required (body ``{"reason": ...}`` or
  the X-Change-Reason header, else 422) and the replay writes one config_audit_log row (who = the
  key's name). 404 if there is no such item, 422 if its payload cannot be replayed (it is left in
  place).
- ``GET /alerts/<correlation_id>/deliveries`` (a UUID, else 400): was this alert sent to Moog, when, and what did Moog
  say: ``{correlation_id, sent, sent_at, attempts}``, each attempt ``{at, outcome, status, error,
  task_id, batch_size}`` (a scheduled retry also ``retry_in``, seconds) (:mod:`mutt_app.forwarding.history`; kept MOOG_DELIVERY_HISTORY_SECONDS).
  404 when MUTT has no trace of a delivery of that id (never forwarded, or forgotten).
- ``GET /config``: every dynamic setting with its value, whether it is overridden, and its help.
- ``PUT /config``: ``{"<name>": value, ..., "reason": "..."}``, each value of the setting's JSON type
  (an integer setting takes an integer, a number setting a number). Every value is checked before any is
  stored; the values that differ from the current ones are stored with one config_audit_log row
  (table ``dynamic_config``, their old and new values), and every process picks them up within
  seconds (pub/sub and a 5-second cache). Answers ``{old, new, changed}``; values already as asked
  write nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request

from mutt_app.commands import deadletters as dead_letter_commands
from mutt_app.commands import dynamic_config as config_commands
from mutt_app.commands.fields import FieldSpec, check_fields, field_problem
from mutt_app.dynamic_config import KEYS, DynamicConfig, parse_value
from mutt_app.forwarding import deadletters
from mutt_app.forwarding import history as delivery_history
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import change_reason, json_body
from mutt_app.web.api.keys import current_key, requires
from mutt_app.web.api.params import bool_arg, int_arg, limit_arg
from mutt_app.web.api.resources import redis_connection, sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.api.rows import row_dict
from mutt_app.web.context import runtime

REASON_FIELD = "reason"
# The dynamic settings as body fields, typed by their real type (an integer setting takes a JSON
# integer, not 30.0 or "30"); PUT /config checks with these and the OpenAPI document shows them.
CONFIG_FIELDS: dict[str, FieldSpec] = {
    name: FieldSpec(
        key.kind, minimum=key.minimum, maximum=key.maximum, enum=key.choices, description=key.help
    )
    for name, key in KEYS.items()
}


def dynamic_config() -> DynamicConfig:
    """The app's dynamic configuration (Redis-backed, read afresh on every request)."""
    return runtime().dynamic_config


@bp.get("/dlq")
def list_dead_letters() -> Response:
    """Dead letters (or poison items), oldest first."""
    poison = bool_arg("poison") or False
    task = request.args.get("task") or None
    limit = limit_arg(50)
    offset = int_arg("offset", 0, minimum=0)
    with sessions()() as session:
        items = deadletters.find(session, poison=poison, task_name=task, limit=limit, offset=offset)
        total = deadletters.count(session, poison=poison, task_name=task)
        body = {
            "items": [row_dict(item) for item in items],
            "total": total,
            "limit": limit,
            "offset": offset,
            "poison": poison,
        }
    return json_response(body)


@bp.post("/dlq/<int:item_id>/replay")
@requires("operator")
def replay_dead_letter(item_id: int) -> Response:
    """Publish one item again now and remove it from the store."""
    poison = bool_arg("poison") or False
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason, bump=False) as change:
        name, queue = dead_letter_commands.replay(change, runtime().celery, item_id, poison=poison)
    return json_response({"replayed": item_id, "task": name, "queue": queue})


@bp.get("/alerts/<correlation_id>/deliveries")
def alert_deliveries(correlation_id: str) -> Response:
    """The alert's delivery history: sent or not, and every attempt with Moog's answer."""
    try:  # an alert's external_id is its event's correlation_id, a UUID
        correlation_id = str(uuid.UUID(correlation_id))
    except ValueError:
        raise ApiError(400, "correlation_id must be a UUID") from None
    found = delivery_history.report(redis_connection(), correlation_id)
    if not found["sent"] and not found["attempts"]:
        raise ApiError(404, f"no delivery of {correlation_id} is known")
    return json_response(found)


@bp.get("/config")
def get_dynamic_config() -> Response:
    """Every dynamic setting: value, overridden or default, help."""
    return json_response({"config": dynamic_config().get_all()})


@bp.put("/config")
@requires("operator")
def put_dynamic_config() -> Response:
    """Change dynamic settings (all or none), audited."""
    body = json_body()
    reason = change_reason(body)
    wanted = {k: v for k, v in body.items() if k != REASON_FIELD}
    if not wanted:
        raise ApiError(422, "name at least one setting", sorted(KEYS))
    unknown = sorted(set(wanted) - set(KEYS))
    if unknown:
        raise ApiError(422, "unknown settings", {"unknown": unknown, "known": sorted(KEYS)})
    problems: dict[str, str] = {}
    parsed: dict[str, Any] = {}
    for name, raw in wanted.items():
        if (problem := field_problem(raw, CONFIG_FIELDS[name])) is not None:
            problems[name] = f"{name} {problem}"
            continue
        try:
            parsed[name] = parse_value(name, raw)
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise ApiError(422, "invalid values", problems)

    config = dynamic_config()
    changing = config_commands.differing(config, parsed)
    old: dict[str, Any] = {}
    if changing:
        with sessions().begin() as session:
            old = config_commands.set_values(
                config, session, changing, changed_by=current_key().changed_by, reason=reason
            )
    return json_response({"old": old, "new": changing, "changed": bool(changing)})
