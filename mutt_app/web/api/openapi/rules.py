"""OpenAPI of the rules (:mod:`mutt_app.web.api.rules`): list, read, create, change, deactivate,
and the rule tester.
"""

from __future__ import annotations

from mutt_app.commands.rules import RULE_FIELDS
from mutt_app.rules.validate import MATCH_TYPES
from mutt_app.web.api.openapi.schema import (
    ANY,
    BOOL,
    INT,
    LIMIT,
    NULLABLE_INT,
    NULLABLE_STR,
    OFFSET,
    QUERY_TEXT,
    STR,
    Operations,
    Schema,
    array,
    body,
    change_answer,
    change_body,
    change_operation,
    create_operation,
    errors,
    id_param,
    listing,
    nullable,
    object_schema,
    ok,
    param,
    read_one,
    ref,
    single,
    stored_fields,
    stored_record,
)

RULE_ID = id_param("rule_id", "rule")


def schemas() -> Schema:
    """A stored rule, its change bodies and answers, and the rule tester's request and answer."""
    stored = stored_fields(RULE_FIELDS)
    engine_rule = object_schema(
        {"id": INT, **{k: v for k, v in stored.items() if k != "is_active"}}, closed=False
    )
    return {
        "Rule": stored_record(RULE_FIELDS),
        "RuleCreate": change_body(
            RULE_FIELDS, ["match_type", "prod_handling", "dev_handling", "team_assignment"]
        ),
        "RuleUpdate": change_body(RULE_FIELDS) | {"minProperties": 1},
        "RuleOne": single("rule", "Rule"),
        "RuleChange": change_answer("rule", ref("Rule")),
        "RuleList": listing("rules", "Rule"),
        "RuleTestRequest": object_schema(
            {
                "hostname": STR,
                "message": STR,
                "syslog_severity": NULLABLE_INT,
                "severity": NULLABLE_INT,
                "trap_oid": NULLABLE_STR,
                "source": NULLABLE_STR,
                "timestamp": ANY,
            },
            ["hostname"],
            closed=False,
        ),
        "RuleTestAnswer": object_schema(
            {
                "event": object_schema(
                    {
                        "hostname": STR,
                        "message": STR,
                        "syslog_severity": NULLABLE_INT,
                        "trap_oid": NULLABLE_STR,
                        "source": NULLABLE_STR,
                    }
                ),
                "matched": BOOL,
                "rule_id": NULLABLE_INT,
                "rule": nullable(engine_rule),
                "handling": STR,
                "team": STR,
                "is_dev": BOOL,
                "forward": BOOL,
                "shadowed": array(engine_rule),
                "template": {
                    "type": "string",
                    "description": "the incident template: the message with what varies between"
                    " repeats masked, addresses and numbered identities kept",
                },
                "dedup_key": {
                    "type": "string",
                    "description": "the parts that make one incident: the winning rule's own"
                    " dedup_key, else the default",
                },
                "dedup_key_parts": array(
                    object_schema({"part": STR, "value": NULLABLE_STR}, ["part", "value"])
                ),
                "fingerprint": {
                    "type": "string",
                    "description": "the digest of the rule id and the dedup key's parts:"
                    " alerts with one fingerprint are repeats of one incident",
                },
                "dedup_window_seconds": {
                    "type": "integer",
                    "description": "the dedup window that applies (0: off)",
                },
                "skipped_rules": array(object_schema({"id": INT, "error": STR})),
            },
            [
                "matched",
                "rule_id",
                "handling",
                "team",
                "is_dev",
                "forward",
                "shadowed",
                "template",
                "dedup_key",
                "dedup_key_parts",
                "fingerprint",
                "dedup_window_seconds",
            ],
        ),
    }


def operations() -> Operations:
    """/rules, /rules/{rule_id} and /rules/test."""
    return {
        ("get", "/rules"): {
            "summary": "List rules, highest priority first",
            "parameters": [
                LIMIT,
                OFFSET,
                param("is_active", "query", BOOL, "only active (true) or inactive (false) rules"),
                param("match_type", "query", {"enum": list(MATCH_TYPES)}, "only this match type"),
                param("team", "query", QUERY_TEXT, "only rules for this team"),
            ],
            "responses": ok("RuleList") | errors(400),
        },
        ("post", "/rules"): create_operation(
            "Create a rule (validated by the rule engine; one audit row)",
            "RuleChange",
            "RuleCreate",
        ),
        ("get", "/rules/{rule_id}"): read_one("One rule, active or not", RULE_ID, "RuleOne"),
        ("put", "/rules/{rule_id}"): change_operation(
            "Change some of a rule's fields (the merged rule must be valid)",
            "RuleChange",
            "RuleUpdate",
            path_param=RULE_ID,
        ),
        ("delete", "/rules/{rule_id}"): change_operation(
            "Deactivate a rule (soft delete)", "RuleChange", path_param=RULE_ID
        ),
        ("post", "/rules/test"): {
            "summary": "Which active rule would win for a sample event, and what it shadows",
            "parameters": [
                param(
                    "dedup_key",
                    "query",
                    QUERY_TEXT,
                    "a dedup key to try on the winning rule instead of its own (not saved)",
                )
            ],
            "requestBody": body("RuleTestRequest"),
            "responses": ok("RuleTestAnswer") | errors(400, 415, 422),
        },
    }
