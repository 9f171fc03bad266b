"""OpenAPI of rule drafts and their backtest (:mod:`mutt_app.web.api.rules`): store, change and
publish a draft; replay the audited events of the last hours under one.
"""

from __future__ import annotations

from mutt_app.commands.drafts import DRAFT_RULE_ID, MAX_CHANGES
from mutt_app.commands.rules import REQUIRED_ON_CREATE, RULE_FIELDS
from mutt_app.web.api.openapi.schema import (
    BOOL,
    CONFLICT_ERRORS,
    INT,
    LIMIT,
    NULLABLE_INT,
    NULLABLE_STR,
    NULLABLE_TIMESTAMP,
    NUMBER,
    OFFSET,
    STR,
    TIMESTAMP,
    UUID,
    Operations,
    Schema,
    array,
    body,
    change_answer,
    change_body,
    change_operation,
    create_operation,
    errors,
    fields,
    id_param,
    listing,
    object_schema,
    ok,
    read_one,
    ref,
    single,
)
from mutt_app.web.api.rules import BACKTEST_FIELDS, DRAFT_FIELDS, PUBLISH_FIELDS

DRAFT_ID = id_param("draft_id", "draft")


def _draft() -> Schema:
    """A draft's document: rules to create, update and deactivate."""
    return object_schema(
        {
            "create": array(
                object_schema(fields(RULE_FIELDS), list(REQUIRED_ON_CREATE)), "new rules"
            ),
            "update": array(
                object_schema({"id": DRAFT_RULE_ID.json_schema(), **fields(RULE_FIELDS)}, ["id"])
                | {"minProperties": 2},
                "fields laid over a stored rule (is_active true re-activates it)",
            ),
            "deactivate": array(DRAFT_RULE_ID.json_schema(), "ids of rules to deactivate"),
        }
    ) | {"description": f"at most {MAX_CHANGES} entries in all"}


def _backtest_answer() -> Schema:
    """The decisions a draft would have changed, grouped, with the bounds of the run."""
    change = object_schema(
        {
            "old_rule_id": NULLABLE_INT,
            "new_rule_id": {
                "type": ["integer", "null"],
                "description": "null when no rule matches, or when new_rule_draft_index is set",
            },
            "new_rule_draft_index": {
                "type": ["integer", "null"],
                "description": "the winner is the draft's create[i]",
            },
            "old_handling": STR,
            "new_handling": STR,
            "count": INT,
            "sample_correlation_ids": array(UUID),
        },
        [
            "old_rule_id",
            "new_rule_id",
            "new_rule_draft_index",
            "old_handling",
            "new_handling",
            "count",
            "sample_correlation_ids",
        ],
    )
    return object_schema(
        {
            "hours": INT,
            "since": TIMESTAMP,
            "rows_examined": INT,
            "rows_changed": INT,
            "truncated": BOOL,
            "truncated_by": {"enum": ["rows", "time", None]},
            "oldest_examined": NULLABLE_TIMESTAMP,
            "seconds": NUMBER,
            "changes": array(change),
            "skipped_rules": array(object_schema({"id": INT, "error": STR}, ["id", "error"])),
        },
        [
            "hours",
            "since",
            "rows_examined",
            "rows_changed",
            "truncated",
            "truncated_by",
            "oldest_examined",
            "changes",
        ],
    )


def schemas() -> Schema:
    """A rule draft, stored or not, its change bodies and answers, and the backtest."""
    stored = ref("StoredRuleDraft")
    return {
        "RuleDraft": _draft(),
        "StoredRuleDraft": object_schema(
            {
                "id": INT,
                "name": STR,
                "document": ref("RuleDraft"),
                "created_by": STR,
                "created_at": TIMESTAMP,
                "updated_at": TIMESTAMP,
                "published_at": NULLABLE_TIMESTAMP,
                "published_by": NULLABLE_STR,
                "base": {
                    "type": ["object", "null"],
                    "description": "the rules it changes as they were when drafted or re-based",
                },
            },
            ["id", "name", "document", "created_by", "created_at", "updated_at", "published_at"],
        ),
        "RuleDraftCreate": change_body(DRAFT_FIELDS, ["name", "draft"], draft=ref("RuleDraft")),
        "RuleDraftUpdate": change_body(DRAFT_FIELDS, draft=ref("RuleDraft")) | {"minProperties": 1},
        "RuleDraftOne": single("draft", "StoredRuleDraft"),
        "RuleDraftChange": change_answer("draft", stored),
        "RuleDraftPublish": change_body(PUBLISH_FIELDS),
        "RuleDraftPublished": change_answer("draft", stored, created_rule_ids=array(INT)),
        "RuleDraftList": listing("drafts", "StoredRuleDraft"),
        "BacktestRequest": object_schema(
            {"draft": ref("RuleDraft"), **fields(BACKTEST_FIELDS)}, ["draft", "hours"]
        ),
        "BacktestAnswer": _backtest_answer(),
    }


def operations() -> Operations:
    """/rules/backtest and /rules/drafts."""
    return {
        ("post", "/rules/backtest"): {
            "summary": (
                "How the audited events of the last hours would have been decided under a rule"
                " draft: changed decisions only, bounded by BACKTEST_MAX_ROWS and"
                " BACKTEST_TIME_BUDGET_SECONDS (then truncated)"
            ),
            "requestBody": body("BacktestRequest"),
            "responses": ok("BacktestAnswer") | errors(400, 415, 422, 503),
        },
        ("get", "/rules/drafts"): {
            "summary": "Rule drafts, newest first (published ones too)",
            "parameters": [LIMIT, OFFSET],
            "responses": ok("RuleDraftList") | errors(400),
        },
        ("post", "/rules/drafts"): create_operation(
            "Store a rule draft (checked against the live rules; audited, no bump)",
            "RuleDraftChange",
            "RuleDraftCreate",
            (400, 415, 422),
        ),
        ("get", "/rules/drafts/{draft_id}"): read_one("One rule draft", DRAFT_ID, "RuleDraftOne"),
        ("put", "/rules/drafts/{draft_id}"): change_operation(
            "Replace a draft's document and/or name (409 once published)",
            "RuleDraftChange",
            "RuleDraftUpdate",
            path_param=DRAFT_ID,
            statuses=CONFLICT_ERRORS,
        ),
        ("post", "/rules/drafts/{draft_id}/publish"): change_operation(
            "Apply a stored draft to the live rules: one audit row per changed rule, one"
            " reason; 409 if published already, it no longer fits the live rules, or a rule it"
            " is based on changed since (details.stale; re-base it or force); 422 if it would"
            " close a loop of clearing rules (details.cycle)",
            "RuleDraftPublished",
            "RuleDraftPublish",
            path_param=DRAFT_ID,
            statuses=CONFLICT_ERRORS,
        ),
        ("post", "/rules/drafts/{draft_id}/rebase"): change_operation(
            "Base a draft on its rules as they are now, after checking it against them"
            " (audited, no bump); 409 once published",
            "RuleDraftChange",
            path_param=DRAFT_ID,
            statuses=CONFLICT_ERRORS,
        ),
    }
