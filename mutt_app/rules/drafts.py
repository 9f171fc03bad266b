"""Rule drafts: a set of proposed rule changes (new, changed and deactivated rules) kept apart from
the live rules until someone publishes it.

A draft is a JSON document::

    {"create": [{rule fields}, ...],
     "update": [{"id": 3, "priority": 500, ...}, ...],
     "deactivate": [7, 9]}

``update`` entries lay the given fields over the stored rule (as ``PUT /api/v2/rules/<id>`` does;
``"is_active": true`` re-activates a rule); ``deactivate`` is a soft delete. :func:`proposed_rules`
gives the rule set the draft would make, which :mod:`mutt_app.rules.backtest` compiles with the real rule
engine; publishing it is a command (:mod:`mutt_app.commands.drafts`): one ``config_audit_log`` row
per changed rule, all under one reason and correlation id.

A draft is checked against the live rules whenever it is used, not only when it is saved: a rule it
changes may have been changed or deactivated since (the overlay applies to the rule as it is now).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.db.models import AlertRule
from mutt_app.rules.clearing import ClearingCycle, cycle_through
from mutt_app.rules.validate import RuleError, validate_rule_mapping

RULE_DEFAULTS: dict[str, Any] = {
    "match_string": None,
    "trap_oid": None,
    "syslog_severity": None,
    "priority": 100,
    "is_active": True,
    "dedup_window_seconds": None,
    "dedup_key": None,
    "clears_rule_id": None,
}
"""A new rule's values for the optional fields it leaves out (the API's and a draft's)."""

RULE_FIELD_NAMES = (
    "match_type",
    "match_string",
    "trap_oid",
    "syslog_severity",
    "priority",
    "prod_handling",
    "dev_handling",
    "team_assignment",
    "is_active",
    "dedup_window_seconds",
    "dedup_key",
    "clears_rule_id",
)
"""A rule's own fields, the ones a person sets (the API's body fields, a draft entry's, the admin
form's), in the order a form shows them."""


class DraftError(ValueError):
    """The draft cannot be applied to the live rules (a rule it names is gone, a result is invalid)."""


class DraftCycle(DraftError, ClearingCycle):
    """The draft's rules would close a loop of clearing rules (refused: 422, naming it)."""

    def __init__(self, cycle: list[int]) -> None:
        ClearingCycle.__init__(self, cycle)


@dataclass(frozen=True)
class Draft:
    """Proposed changes to the rule set. Field values are already type-checked (by the API's
    FieldSpecs); what only the whole rule can show is checked against the live rules on use."""

    create: tuple[Mapping[str, Any], ...] = ()
    update: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    deactivate: frozenset[int] = frozenset()

    def document(self) -> dict[str, Any]:
        """The draft as its JSON document (what is stored and what the API takes)."""
        return {
            "create": [dict(fields) for fields in self.create],
            "update": [
                {"id": rule_id, **fields} for rule_id, fields in sorted(self.update.items())
            ],
            "deactivate": sorted(self.deactivate),
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Draft:
        """The draft a stored document holds (checked when it was saved)."""
        return cls(
            create=tuple(document.get("create", ())),
            update={
                entry["id"]: {k: v for k, v in entry.items() if k != "id"}
                for entry in document.get("update", ())
            },
            deactivate=frozenset(document.get("deactivate", ())),
        )

    @property
    def empty(self) -> bool:
        """True when the draft changes nothing."""
        return not (self.create or self.update or self.deactivate)


@dataclass(frozen=True)
class Proposal:
    """The rule set a draft would make: every rule row (transient, never added to a session), and
    which of them are the draft's new rules (their ids are provisional, past every stored id, so
    that ties in priority break as they will after publishing)."""

    rows: tuple[AlertRule, ...]
    new_rules: Mapping[int, int]
    """Provisional id -> index of the rule in the draft's ``create`` list."""

    def active(self) -> list[AlertRule]:
        """The rows that would be active."""
        return [row for row in self.rows if row.is_active]


def check_entry(fields: Mapping[str, Any], what: str) -> None:
    """:class:`DraftError` naming ``what`` unless ``fields`` make a rule the engine can use."""
    try:
        validate_rule_mapping(fields)
    except RuleError as exc:
        raise DraftError(f"{what}: {exc}") from None


def _known(draft: Draft, ids: Iterable[int]) -> None:
    missing = sorted((set(draft.update) | draft.deactivate) - set(ids))
    if missing:
        raise DraftError(f"the draft names rules that do not exist: {missing}")
    both = sorted(set(draft.update) & draft.deactivate)
    if both:
        raise DraftError(f"the draft both changes and deactivates rules {both}")


def proposed_rules(session: Session, draft: Draft) -> Proposal:
    """Every rule as it would be with ``draft`` applied; :class:`DraftError` if it cannot be."""
    stored = session.scalars(select(AlertRule).order_by(AlertRule.id)).all()
    _known(draft, (row.id for row in stored))
    rows: list[AlertRule] = []
    for row in stored:
        fields = {name: getattr(row, name) for name in RULE_FIELD_NAMES}
        if row.id in draft.update:
            fields.update(draft.update[row.id])
            check_entry(fields, f"rule {row.id} as changed")
        if row.id in draft.deactivate:
            fields["is_active"] = False
        rows.append(AlertRule(id=row.id, **fields))
    next_id = max((row.id for row in stored), default=0) + 1
    new_rules: dict[int, int] = {}
    for index, created in enumerate(draft.create):
        fields = {**RULE_DEFAULTS, **created}
        check_entry(fields, f"new rule {index + 1}")
        rows.append(AlertRule(id=next_id + index, **fields))
        new_rules[next_id + index] = index
    ids = {row.id for row in rows}
    for row in rows:
        if row.clears_rule_id is not None and row.clears_rule_id not in ids:
            raise DraftError(f"rule {row.id}: clears_rule_id names no rule {row.clears_rule_id}")
    # The loops the draft's own rules would close (one already in the live rules is not its doing).
    touched = set(draft.update) | set(new_rules)
    cycle = next(
        (found for rule_id in sorted(touched) if (found := cycle_through(links_of(rows), rule_id))),
        None,
    )
    if cycle is not None:
        raise DraftCycle(cycle)
    return Proposal(tuple(rows), new_rules)


def links_of(rows: Iterable[AlertRule]) -> dict[int, int | None]:
    """Rule id -> the rule it clears, for ``rows``."""
    return {row.id: row.clears_rule_id for row in rows}
