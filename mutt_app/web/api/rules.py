"""API v2: alert rules (list, create, read, update, soft delete), the rule tester, rule drafts and
their backtest.

The routes check the body's fields by type (the rule commands' FieldSpecs, also the OpenAPI
description; a draft document by :func:`mutt_app.commands.drafts.parse_draft`) and run the commands
of :mod:`mutt_app.commands.rules` and :mod:`mutt_app.commands.drafts`, which check the rest
once for every caller (a regex RE2 refuses is a 422 carrying RE2's message; an update is checked on
the merged rule) and write the audit.
"""

from __future__ import annotations

from typing import Any

from flask import Response, request
from sqlalchemy import select

from mutt_app.commands import drafts as draft_commands
from mutt_app.commands import rules as rule_commands
from mutt_app.commands.changes import MAX_DB_INT
from mutt_app.commands.errors import Conflict
from mutt_app.commands.fields import FieldSpec, check_fields
from mutt_app.commands.rules import READ_ONLY, REQUIRED_ON_CREATE, RULE_FIELDS
from mutt_app.db.models import AlertRule, RuleDraft
from mutt_app.events.schema import InvalidEvent
from mutt_app.rules.backtest import MAX_HOURS
from mutt_app.rules.compile import BudgetExceeded
from mutt_app.rules.validate import MATCH_TYPES
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.changes import config_change
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.fields import change_reason, json_body
from mutt_app.web.api.keys import requires
from mutt_app.web.api.params import bool_arg, choice_arg, int_arg, limit_arg
from mutt_app.web.api.resources import sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.api.rows import count
from mutt_app.web.capacity import BacktestsBusy, backtest_slots
from mutt_app.web.context import runtime

# The API's own bodies; a rule's fields are the rule commands' RULE_FIELDS.
BACKTEST_FIELDS = {"hours": FieldSpec(int, minimum=1, maximum=MAX_HOURS)}
DRAFT_FIELDS = {"name": FieldSpec(str, min_length=1, max_length=draft_commands.MAX_NAME)}
PUBLISH_FIELDS = {
    "force": FieldSpec(
        bool,
        description="publish even over rules changed since the draft was based on them (audited)",
    )
}


def _rule_fields(body: dict[str, Any], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    return check_fields(body, RULE_FIELDS, required=required, read_only=READ_ONLY)


@bp.get("/rules")
def list_rules() -> Response:
    """Rules, highest priority first. Filters: is_active, match_type, team; limit (1..500), offset."""
    limit = limit_arg()
    offset = int_arg("offset", 0, minimum=0)
    is_active = bool_arg("is_active")
    match_type = choice_arg("match_type", MATCH_TYPES)
    query = select(AlertRule)
    if is_active is not None:
        query = query.where(AlertRule.is_active.is_(is_active))
    if match_type is not None:
        query = query.where(AlertRule.match_type == match_type)
    if team := request.args.get("team", "").strip():
        query = query.where(AlertRule.team_assignment == team)
    with sessions()() as session:
        total = count(session, query)
        rows = session.scalars(
            query.order_by(AlertRule.priority.desc(), AlertRule.id).limit(limit).offset(offset)
        ).all()
        rules = [row.as_dict() for row in rows]
    return json_response({"rules": rules, "total": total, "limit": limit, "offset": offset})


@bp.post("/rules")
def create_rule() -> Response:
    """Create a rule (active unless ``is_active`` is false); 201 with its id."""
    body = json_body()
    fields = rule_commands.new_rule(_rule_fields(body, required=REQUIRED_ON_CREATE))
    reason = change_reason(body)
    with config_change(reason) as change:
        created = rule_commands.create(change, fields)
    return json_response(
        {"id": created["id"], "rule": created, **change.summary()},
        201,
        {"Location": f"{request.path}/{created['id']}"},
    )


def _rule_or_404(session: Any, rule_id: int) -> AlertRule:
    rule = session.get(AlertRule, rule_id) if rule_id <= MAX_DB_INT else None
    if rule is None:
        raise ApiError(404, f"no rule {rule_id}")
    return rule


@bp.get("/rules/<int:rule_id>")
def get_rule(rule_id: int) -> Response:
    """One rule, active or not."""
    with sessions()() as session:
        return json_response({"rule": _rule_or_404(session, rule_id).as_dict()})


@bp.put("/rules/<int:rule_id>")
def update_rule(rule_id: int) -> Response:
    """Change some of a rule's fields; the merged rule must still be valid."""
    body = json_body()
    fields = _rule_fields(body)
    if not fields:
        raise ApiError(422, "nothing to update: the body names no rule field")
    reason = change_reason(body)
    with config_change(reason) as change:
        current = rule_commands.update(change, rule_id, fields).as_dict()
    return json_response({"id": rule_id, "rule": current, **change.summary()})


@bp.delete("/rules/<int:rule_id>")
def delete_rule(rule_id: int) -> Response:
    """Deactivate a rule (soft delete: the audit and the event audit keep referring to it)."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    with config_change(reason) as change:
        current = rule_commands.deactivate_id(change, rule_id).as_dict()
    return json_response({"id": rule_id, "rule": current, **change.summary()})


@bp.post("/rules/test")
@requires("viewer")  # a question about the rules, not a change
def test_rule() -> Response:
    """Which active rule would win for a sample event, its handling and team, and what it shadows.

    The body is an event as ingest takes it (hostname, message, syslog_severity or severity,
    trap_oid, ...), read by the ingest's own validation, so the answer is the pipeline's: a trap
    OID inside the message is found the same way. Only ``hostname`` is required. The rules,
    development hosts and device teams are read from the database now, not from a worker's cache.
    A test that runs past CLASSIFY_TIME_BUDGET_SECONDS is a 422 naming it. The query parameter
    ``dedup_key`` tries a dedup key on the winning rule before it is saved (a 422 if it is not one).
    """
    dedup_key = request.args.get("dedup_key") or None
    try:
        trial = rule_commands.trial(runtime(), json_body(), dedup_key)
    except InvalidEvent as exc:
        raise ApiError(422, f"not a valid event: {exc}") from None
    except BudgetExceeded as exc:
        raise ApiError(422, str(exc)) from None
    event = trial.event
    return json_response(
        {
            "event": {
                "hostname": event.hostname,
                "message": event.message,
                "syslog_severity": event.syslog_severity,
                "trap_oid": event.trap_oid,
                "source": event.source,
            },
            **trial.outcome(),
            "skipped_rules": [
                {"id": rule_id, "error": error} for rule_id, error in trial.skipped_rules
            ],
        }
    )


# --- drafts and the backtest ---------------------------------------------------------------------


@bp.post("/rules/backtest")
def backtest_rules() -> Response:
    """How the audited events of the last ``hours`` would have been decided under ``draft``.

    Answers the changed decisions only, counted by (old rule, new rule, old handling, new handling)
    with sample correlation ids, and totals; ``truncated`` when BACKTEST_MAX_ROWS or
    BACKTEST_TIME_BUDGET_SECONDS stopped the scan (see :mod:`mutt_app.rules.backtest`). Admin only: it
    scans up to millions of audit rows. Nothing is changed. 429 with Retry-After while this process
    already runs BACKTEST_MAX_CONCURRENT backtests (:mod:`mutt_app.web.capacity`).
    """
    body = json_body()
    fields = check_fields(body, BACKTEST_FIELDS, required=("hours", "draft"), meta=("draft",))
    draft = draft_commands.parse_draft(body["draft"])
    try:
        with backtest_slots().taken():
            return json_response(draft_commands.backtest(runtime(), draft, fields["hours"]))
    except BacktestsBusy as exc:
        raise ApiError(429, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None


# --- stored drafts -------------------------------------------------------------------------------


def _draft_or_404(session: Any, draft_id: int) -> RuleDraft:
    row = session.get(RuleDraft, draft_id) if draft_id <= MAX_DB_INT else None
    if row is None:
        raise ApiError(404, f"no draft {draft_id}")
    return row


@bp.get("/rules/drafts")
def list_drafts() -> Response:
    """Rule drafts, newest first (published ones too: they record what was published)."""
    limit = limit_arg()
    offset = int_arg("offset", 0, minimum=0)
    query = select(RuleDraft)
    with sessions()() as session:
        total = count(session, query)
        rows = session.scalars(query.order_by(RuleDraft.id.desc()).limit(limit).offset(offset))
        drafts = [row.as_dict() for row in rows]
    return json_response({"drafts": drafts, "total": total, "limit": limit, "offset": offset})


@bp.post("/rules/drafts")
def create_draft() -> Response:
    """Store a draft (``name``, ``draft``); 201. Audited; no rules-version bump (workers do not
    read drafts)."""
    body = json_body()
    fields = check_fields(body, DRAFT_FIELDS, required=("name", "draft"), meta=("reason", "draft"))
    reason = change_reason(body)
    with config_change(reason, bump=False) as change:
        created = draft_commands.create(
            change, fields["name"], draft_commands.parse_draft(body["draft"])
        )
    return json_response(
        {"id": created["id"], "draft": created, **change.summary()},
        201,
        {"Location": f"{request.path}/{created['id']}"},
    )


@bp.get("/rules/drafts/<int:draft_id>")
def get_draft(draft_id: int) -> Response:
    """One draft."""
    with sessions()() as session:
        return json_response({"draft": _draft_or_404(session, draft_id).as_dict()})


@bp.put("/rules/drafts/<int:draft_id>")
def update_draft(draft_id: int) -> Response:
    """Replace a draft's ``draft`` document and/or ``name``; 409 once it is published."""
    body = json_body()
    fields = check_fields(body, DRAFT_FIELDS, meta=("reason", "draft"))
    if not fields and "draft" not in body:
        raise ApiError(422, "nothing to update: the body names neither draft nor name")
    reason = change_reason(body)
    read = (lambda: draft_commands.parse_draft(body["draft"])) if "draft" in body else None
    with config_change(reason, bump=False) as change:
        row = draft_commands.save(change, draft_id, name=fields.get("name"), read=read)
        current = row.as_dict()
    return json_response({"id": draft_id, "draft": current, **change.summary()})


@bp.post("/rules/drafts/<int:draft_id>/rebase")
def rebase_draft(draft_id: int) -> Response:
    """Base a draft on its rules as they are now (after checking it against them): a publish no
    longer conflicts over what changed before. Audited; 409 once it is published."""
    body = json_body()
    check_fields(body, {})
    reason = change_reason(body)
    try:
        with config_change(reason, bump=False) as change:
            current = draft_commands.rebase(change, draft_id).as_dict()
    except Conflict as exc:
        raise ApiError(409, f"not re-based: {exc.message}") from None
    return json_response({"id": draft_id, "draft": current, **change.summary()})


@bp.post("/rules/drafts/<int:draft_id>/publish")
def publish_draft(draft_id: int) -> Response:
    """Apply a stored draft to the live rules: one audit row per changed rule (and one marking the
    draft published), one reason and correlation id; then the rules version is bumped."""
    body = json_body()
    fields = check_fields(body, PUBLISH_FIELDS)
    reason = change_reason(body)
    try:
        with config_change(reason) as change:
            row, created = draft_commands.publish_stored(
                change, draft_id, force=fields.get("force", False)
            )
            current = row.as_dict()
    except Conflict as exc:
        raise ApiError(409, f"not published: {exc.message}", exc.details) from None
    return json_response(
        {
            "id": draft_id,
            "draft": current,
            "created_rule_ids": [rule["id"] for rule in created],
            **change.summary(),
        }
    )
