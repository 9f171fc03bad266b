"""Commands on alert rules: create, update, deactivate, (de)activate in bulk, and the rule tester.

A rule is checked by the engine's own :func:`~mutt_app.rules.engine.validate_rule_mapping` before
it is written, so what is accepted is exactly what workers can compile (a regex RE2 refuses is
:class:`~mutt_app.commands.errors.Invalid` carrying RE2's message). An update is checked on the
merged result: the stored rule with the new fields laid over it. ``clears_rule_id`` must name
another rule that exists (:func:`check_clears`, the one place that says so). Before that, the rule's
fields are type-checked one by one against :data:`RULE_FIELDS` (the API's request check and its
OpenAPI description, and the check of a draft's entries).

Every change runs inside an audited change (:mod:`mutt_app.commands.changes`) that the caller opens
with its identity and reason; deleting a rule deactivates it (a soft delete), since the event audit
keeps referring to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.commands.changes import MAX_DB_INT, Change
from mutt_app.commands.errors import Invalid
from mutt_app.commands.fields import FieldSpec
from mutt_app.db.models import MAX_DEDUP_KEY_CHARS, MAX_DEDUP_WINDOW_SECONDS, AlertRule
from mutt_app.rules import clearing
from mutt_app.rules.dedup_key import DEFAULT_KEY, DedupKeyError
from mutt_app.rules.drafts import RULE_DEFAULTS, RULE_FIELD_NAMES
from mutt_app.rules.tester import Trial, try_event
from mutt_app.rules.validate import (
    DEV_HANDLINGS,
    MATCH_TYPES,
    MAX_CONTAINS_CHARS,
    MAX_PATTERN_CHARS,
    MAX_TRAP_OID_CHARS,
    PROD_HANDLINGS,
    RuleError,
    validate_rule_mapping,
)
from mutt_app.runtime import Runtime

# Checked by check_fields and described in the OpenAPI document from these same specs; the engine's
# validate_rule_fields then checks what a field alone cannot (a regex compiles, no blank team).
_RULE_SPECS: dict[str, FieldSpec] = {
    # The engine's rule bounds: MAX_PATTERN_CHARS for a regex, MAX_CONTAINS_CHARS otherwise
    # (validate_rule_fields tells which applies).
    "match_string": FieldSpec(
        str, nullable=True, min_length=1, max_length=max(MAX_PATTERN_CHARS, MAX_CONTAINS_CHARS)
    ),
    "trap_oid": FieldSpec(str, nullable=True, min_length=1, max_length=MAX_TRAP_OID_CHARS),
    "syslog_severity": FieldSpec(int, nullable=True, minimum=0, maximum=7),
    "match_type": FieldSpec(str, enum=MATCH_TYPES),
    "priority": FieldSpec(int, minimum=1, maximum=1000),
    "prod_handling": FieldSpec(str, enum=PROD_HANDLINGS),
    "dev_handling": FieldSpec(str, enum=DEV_HANDLINGS),
    "team_assignment": FieldSpec(str, min_length=1),
    "is_active": FieldSpec(bool),
    "dedup_window_seconds": FieldSpec(
        int, nullable=True, minimum=0, maximum=MAX_DEDUP_WINDOW_SECONDS
    ),
    # Which parts make one incident; the engine's check_dedup_key checks the parts themselves.
    "dedup_key": FieldSpec(
        str,
        nullable=True,
        min_length=1,
        max_length=MAX_DEDUP_KEY_CHARS,
        description="which parts of an alert make one incident, comma-separated: host, severity,"
        " template, masked, message, field:<name>, group:<name> (a named group of a regex rule);"
        f" null: the default ({DEFAULT_KEY})",
    ),
    # The rule whose alerts this one clears (LINK-UP clears LINK-DOWN): the pair flapping watches.
    "clears_rule_id": FieldSpec(int, nullable=True, minimum=1, maximum=MAX_DB_INT),
}
RULE_FIELDS = {name: _RULE_SPECS[name] for name in RULE_FIELD_NAMES}
"""The rule's own fields (:data:`~mutt_app.rules.drafts.RULE_FIELD_NAMES`) with their specs."""
REQUIRED_ON_CREATE = ("match_type", "prod_handling", "dev_handling", "team_assignment")
"""The fields a new rule must name."""
READ_ONLY = ("id", "created_at", "updated_at")
"""A stored rule's fields no change may set."""


def _echoed(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` for an error's details, a string over the rule bounds cut short (not all 5 MB)."""
    longest = max(MAX_PATTERN_CHARS, MAX_CONTAINS_CHARS, MAX_TRAP_OID_CHARS)
    return {
        name: f"{value[:64]}... ({len(value):,} characters)"
        if isinstance(value, str) and len(value) > longest
        else value
        for name, value in fields.items()
    }


def check_rule(fields: Mapping[str, Any]) -> None:
    """:class:`Invalid` with the engine's message unless ``fields`` make a rule it can use."""
    try:
        validate_rule_mapping(fields)
    except RuleError as exc:
        raise Invalid(str(exc), {"rule": _echoed(fields)}) from None


def check_clears(session: Session, clears_rule_id: int | None, rule_id: int | None) -> None:
    """:class:`Invalid` unless ``clears_rule_id`` is empty or names another rule that exists
    (``rule_id``: the rule that would clear it, None for a new one) without closing a loop of
    clearing rules (:mod:`mutt_app.rules.clearing`; ``details["cycle"]`` names its rules)."""
    if clears_rule_id is None:
        return
    if clears_rule_id == rule_id:
        raise Invalid("clears_rule_id: a rule cannot clear itself", {"cycle": [rule_id, rule_id]})
    if session.get(AlertRule, clears_rule_id) is None:
        raise Invalid(f"clears_rule_id: no rule {clears_rule_id}")
    if rule_id is None:
        return  # no rule clears a new one yet: it cannot be in a loop
    # Every rule's link, inactive ones too: re-activating a rule must not close a loop unseen.
    links = {
        row_id: clears
        for row_id, clears in session.execute(select(AlertRule.id, AlertRule.clears_rule_id))
    }
    links[rule_id] = clears_rule_id
    try:
        clearing.check(links, [rule_id])
    except clearing.ClearingCycle as exc:
        raise Invalid(f"clears_rule_id: {exc}", {"cycle": exc.cycle}) from None


def new_rule(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A new rule's fields: ``fields`` over the defaults, checked by the engine (:class:`Invalid`)."""
    checked = {**RULE_DEFAULTS, **fields}
    check_rule(checked)
    return checked


def create(change: Change, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Add the rule ``fields`` (from :func:`new_rule`) in ``change``; returns its stored values."""
    check_clears(change.session, fields["clears_rule_id"], None)
    return change.create(AlertRule(**fields))


def update(change: Change, rule_id: int, fields: Mapping[str, Any]) -> AlertRule:
    """Lay ``fields`` over rule ``rule_id`` (locked); the merged rule must still be valid. Only the
    fields whose value differs are written (nothing differs: no audit row)."""
    rule = change.found(AlertRule, rule_id, "rule")
    old = rule.as_dict()
    check_rule({**{name: old[name] for name in RULE_FIELD_NAMES}, **fields})
    changed = {name: value for name, value in fields.items() if old[name] != value}
    if "clears_rule_id" in changed:
        check_clears(change.session, changed["clears_rule_id"], rule_id)
    if changed:
        change.update(rule, changed)
    return rule


def deactivate(change: Change, rule: AlertRule) -> bool:
    """Deactivate ``rule`` (a soft delete, audited as DELETE); False if it was inactive already.

    Decided on the locked row, so a rule deactivated meanwhile is no change and no audit row.
    """
    return change.update(rule, {"is_active": False}, operation="DELETE")


def deactivate_id(change: Change, rule_id: int) -> AlertRule:
    """Deactivate rule ``rule_id`` (:class:`~mutt_app.commands.errors.NotFound` if there is none)."""
    rule = change.found(AlertRule, rule_id, "rule")
    if rule.is_active:
        deactivate(change, rule)
    return rule


def set_active(change: Change, rules: Iterable[AlertRule], active: bool) -> int:
    """Activate or deactivate ``rules`` (give them in id order, so that two bulk changes take their
    row locks in the same order); returns how many changed (one audit row each)."""
    return sum(change.update(rule, {"is_active": active}) for rule in rules)


def trial(runtime: Runtime, body: Mapping[str, Any], dedup_key: str | None = None) -> Trial:
    """The rule tester's trial of the event ``body`` with ``runtime``'s settings and dynamic
    configuration, over the rules in the database now (the API's and the admin UI's answer);
    ``dedup_key``: a key to try instead of the winning rule's (:class:`Invalid` if it is not one)."""
    config = runtime.settings
    with runtime.sessions() as session:
        try:
            return try_event(
                session,
                body,
                config.unhandled_default_team,
                dedup_window=runtime.dynamic_config.get("dedup_window_seconds"),
                budget_seconds=config.classify_time_budget_seconds,
                dedup_key=dedup_key,
            )
        except DedupKeyError as exc:
            raise Invalid(str(exc), {"dedup_key": dedup_key}) from None
