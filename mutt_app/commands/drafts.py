"""Commands on rule drafts: store one, save a new version, publish it; and its backtest.

A draft (:mod:`mutt_app.rules.drafts`) must fit the live rules when it is stored and again when it
is published: a rule it changes may have been changed or deactivated since. Storing or saving a draft
changes no live rule, so the caller opens its audited change without a rules-version bump; it is
audited all the same. Publishing applies the draft's changes through the rule commands
(:mod:`mutt_app.commands.rules`): one ``config_audit_log`` row per rule that really changes and one
marking the draft published, under one reason and correlation id.

A draft records what it was based on (``rule_drafts.base``: the rules it updates or deactivates as
they were when it was stored). Publishing over a rule that changed since is a :class:`Conflict`
naming the rules and fields (the API answers 409), since the draft was written and backtested
against the rule as it was: the second of two drafts of one rule would silently undo the first's
change. The admin re-bases the draft (:func:`rebase`: its base becomes the rules as they are now,
after review) or forces the publish, both audited with a reason. A draft whose rules would close a
loop of clearing rules is :class:`Invalid` (422) when stored and when published
(:mod:`mutt_app.rules.clearing`).

A draft document (JSON, from the API or the admin UI's editor) becomes a :class:`Draft` through
:func:`parse_draft`, which checks each entry's fields with the rule commands' own
:data:`~mutt_app.commands.rules.RULE_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.commands import rules
from mutt_app.commands.changes import MAX_DB_INT, Change
from mutt_app.commands.errors import Conflict, Invalid, NotFound
from mutt_app.commands.fields import FieldSpec, check_fields, field_problem
from mutt_app.db.models import AlertRule, RuleDraft
from mutt_app.rules.backtest import run_backtest
from mutt_app.rules.drafts import RULE_FIELD_NAMES, Draft, DraftCycle, DraftError, proposed_rules
from mutt_app.runtime import Runtime

MAX_NAME = 200
"""The longest name a draft may have."""
MAX_CHANGES = 1000
"""Entries a draft may hold (new, changed and deactivated rules together)."""
NOT_FITTING = "the draft does not fit the live rules"
DRAFT_RULE_ID = FieldSpec(int, minimum=1, maximum=MAX_DB_INT)
"""The id of a rule a draft changes or deactivates."""


def _entries(document: dict[str, Any], key: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise Invalid(f"draft.{key} must be a list")
    return value


def _draft_fields(entry: Any, where: str, **kwargs: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise Invalid(f"{where} must be an object")
    try:
        return check_fields(entry, rules.RULE_FIELDS, read_only=rules.READ_ONLY, meta=(), **kwargs)
    except Invalid as exc:
        raise Invalid(f"{where}: {exc.message}", exc.details) from None


def parse_draft(document: Any) -> Draft:
    """A draft document (``create``, ``update``, ``deactivate``) type-checked field by field with
    the rule commands' FieldSpecs; :class:`Invalid` naming the first bad entry. Whether the draft
    fits the live rules is checked when it is used (:func:`check_fits`)."""
    if not isinstance(document, dict):
        raise Invalid("draft must be an object with create, update and deactivate lists")
    unknown = sorted(set(document) - {"create", "update", "deactivate"})
    if unknown:
        raise Invalid(f"unknown draft field{'s' if len(unknown) > 1 else ''}: {unknown}")
    creates, updates, deactivations = (
        _entries(document, key) for key in ("create", "update", "deactivate")
    )
    if len(creates) + len(updates) + len(deactivations) > MAX_CHANGES:
        raise Invalid(f"a draft holds at most {MAX_CHANGES} changes")
    create = tuple(
        _draft_fields(entry, f"draft.create[{i}]", required=rules.REQUIRED_ON_CREATE)
        for i, entry in enumerate(creates)
    )
    update: dict[int, dict[str, Any]] = {}
    for i, entry in enumerate(updates):
        where = f"draft.update[{i}]"
        rule_id = entry.get("id") if isinstance(entry, dict) else None
        problem = "is missing" if rule_id is None else field_problem(rule_id, DRAFT_RULE_ID)
        if problem is not None:
            raise Invalid(f"{where}.id {problem}")
        fields = _draft_fields({k: v for k, v in entry.items() if k != "id"}, where)
        if not fields:
            raise Invalid(f"{where}: names no rule field to change")
        if rule_id in update:
            raise Invalid(f"{where}: rule {rule_id} is changed twice")
        update[rule_id] = fields
    for i, rule_id in enumerate(deactivations):
        problem = field_problem(rule_id, DRAFT_RULE_ID)
        if problem is not None:
            raise Invalid(f"draft.deactivate[{i}] {problem}")
    return Draft(create=create, update=update, deactivate=frozenset(deactivations))


def check_fits(session: Session, draft: Draft) -> None:
    """:class:`Invalid` unless ``draft`` can be applied to the live rules as they are now."""
    try:
        proposed_rules(session, draft)
    except DraftCycle as exc:
        raise Invalid(f"{NOT_FITTING}: {exc}", {"cycle": exc.cycle}) from None
    except DraftError as exc:
        raise Invalid(f"{NOT_FITTING}: {exc}") from None


def _based_on(draft: Draft) -> list[int]:
    return sorted(set(draft.update) | draft.deactivate)


def _rule_state(rule: AlertRule) -> dict[str, Any]:
    return {name: getattr(rule, name) for name in RULE_FIELD_NAMES}


def current_base(session: Session, rule_ids: list[int]) -> dict[str, dict[str, Any]]:
    """``{"<rule id>": {field: value}}``: the rules ``rule_ids`` as they are now (a draft's base)."""
    rows = session.scalars(select(AlertRule).where(AlertRule.id.in_(rule_ids))).all()
    return {str(row.id): _rule_state(row) for row in rows}


def changed_since(session: Session, row: RuleDraft) -> dict[str, dict[str, dict[str, Any]]]:
    """The rules draft ``row`` is based on that changed since: ``{"<rule id>": {field: {"drafted":
    value, "now": value}}}``; empty when none did or the draft records no base."""
    if not row.base:
        return {}
    now = current_base(session, [int(rule_id) for rule_id in row.base])
    stale: dict[str, dict[str, dict[str, Any]]] = {}
    for rule_id, drafted in row.base.items():
        current = now.get(rule_id)
        if current is None:
            continue  # gone: the draft no longer fits, which publishing says
        fields = {
            name: {"drafted": drafted.get(name), "now": current[name]}
            for name in RULE_FIELD_NAMES
            if name in drafted and drafted[name] != current[name]
        }
        if fields:
            stale[rule_id] = fields
    return stale


def describe_stale(stale: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One line naming each rule changed since the draft, and how."""
    rules_text = "; ".join(
        f"rule {rule_id} ("
        + ", ".join(
            f"{name}: drafted {v['drafted']!r}, now {v['now']!r}" for name, v in fields.items()
        )
        + ")"
        for rule_id, fields in sorted(stale.items(), key=lambda item: int(item[0]))
    )
    return (
        f"rules changed since the draft was based on them: {rules_text}; re-base the draft on"
        " the rules as they are now (after checking it and its backtest again), or force the publish"
    )


def create(change: Change, name: str, draft: Draft) -> dict[str, Any]:
    """Store ``draft`` as ``name`` (by the change's author) once it fits, based on the rules it
    changes as they are now; returns its values."""
    check_fits(change.session, draft)
    return change.create(
        RuleDraft(
            name=name,
            document=draft.document(),
            created_by=change.changed_by,
            base=current_base(change.session, _based_on(draft)),
        )
    )


def save(
    change: Change,
    draft_id: int,
    *,
    name: str | None = None,
    read: Callable[[], Draft] | None = None,
) -> RuleDraft:
    """A new name and/or document for draft ``draft_id`` (locked). ``read`` gives the new document's
    draft; it is read once the draft is known to exist and to be unpublished, then checked to fit.
    :class:`NotFound`, :class:`Conflict` once it is published, :class:`Invalid`."""
    row = change.found(RuleDraft, draft_id, "draft")
    if row.published_at is not None:
        raise Conflict(f"draft {draft_id} is published; start a new one")
    fields: dict[str, Any] = {} if name is None else {"name": name}
    if read is not None:
        draft = read()
        check_fits(change.session, draft)
        fields["document"] = draft.document()
        # A rule already in the draft keeps the base it was drafted against; one new to it is
        # based on the rule as it is now.
        now = current_base(change.session, _based_on(draft))
        kept = row.base or {}
        fields["base"] = {rule_id: kept.get(rule_id, state) for rule_id, state in now.items()}
    change.update(row, {**fields, "updated_at": datetime.now(UTC)})
    return row


def rebase(change: Change, draft_id: int) -> RuleDraft:
    """Base draft ``draft_id`` (locked) on its rules as they are now, once a person has checked it
    against them: a later publish no longer conflicts over what changed before. Audited.
    :class:`NotFound`; :class:`Conflict` once it is published; :class:`Invalid` if it no longer
    fits the live rules."""
    row = change.found(RuleDraft, draft_id, "draft")
    if row.published_at is not None:
        raise Conflict(f"draft {draft_id} is published; start a new one")
    draft = Draft.from_document(row.document)
    check_fits(change.session, draft)
    base = current_base(change.session, _based_on(draft))
    change.update(row, {"base": base, "updated_at": datetime.now(UTC)})
    return row


@contextmanager
def _refused(what: str) -> Iterator[None]:
    try:
        yield
    except Invalid as exc:
        raise DraftError(f"{what}: {exc.message}") from None


def publish(change: Change, draft: Draft) -> list[dict[str, Any]]:
    """Apply ``draft`` to the live rules inside ``change``; returns the created rules' values.

    Locks every rule it changes, in id order (two publishes never wait on each other in a cycle),
    before reading its old values; each rule that really changes gets one audit row. Raises
    :class:`DraftError` (the change is then rolled back by its caller) if the draft no longer fits.
    """
    for rule_id in sorted(set(draft.update) | draft.deactivate):
        try:
            with _refused(f"rule {rule_id} as changed"):
                if rule_id in draft.deactivate:
                    rules.deactivate_id(change, rule_id)
                else:
                    rules.update(change, rule_id, draft.update[rule_id])
        except NotFound:
            raise DraftError(f"the draft names rule {rule_id}, which does not exist") from None
    created = []
    for index, fields in enumerate(draft.create):
        with _refused(f"new rule {index + 1}"):
            created.append(rules.create(change, rules.new_rule(fields)))
    return created


def publish_stored(
    change: Change, draft_id: int, *, force: bool = False
) -> tuple[RuleDraft, list[dict[str, Any]]]:
    """Publish the stored draft ``draft_id`` inside ``change`` and mark it published (its own
    audit row); returns it and the created rules' values.

    :class:`NotFound` if there is no such draft; :class:`Conflict` (its message says why) if it was
    published already, no longer fits the live rules, or a rule it is based on changed since
    (``details["stale"]``, :func:`changed_since`) and ``force`` is not given; :class:`Invalid` if
    it would close a loop of clearing rules. A forced publish records the rules it overrode: the
    draft's base becomes them, in its audit row.
    """
    row = change.found(RuleDraft, draft_id, "draft")
    if row.published_at is not None:
        raise Conflict(f"draft {draft_id} was published already ({row.published_by})")
    draft = Draft.from_document(row.document)
    # Its rules locked in id order (as publish locks them) before they are compared with its base.
    for rule_id in _based_on(draft):
        change.locked(AlertRule, id=rule_id)
    try:
        proposed_rules(change.session, draft)
    except DraftCycle as exc:
        raise Invalid(f"not published: {exc}", {"cycle": exc.cycle}) from None
    except DraftError:
        pass  # publish says which rule no longer fits
    stale = changed_since(change.session, row)
    if stale and not force:
        raise Conflict(describe_stale(stale), {"stale": stale})
    overridden = current_base(change.session, [int(rule_id) for rule_id in stale])
    try:
        created = publish(change, draft)
    except DraftError as exc:
        raise Conflict(str(exc)) from None
    done: dict[str, Any] = {"published_at": datetime.now(UTC), "published_by": change.changed_by}
    if stale:
        done["base"] = {**(row.base or {}), **overridden}
    change.update(row, done)
    return row, created


def backtest(runtime: Runtime, draft: Draft, hours: int) -> dict[str, Any]:
    """The backtest of ``draft`` over the last ``hours`` with ``runtime``'s settings (the API's and
    the admin UI's answer); :class:`Invalid` if the draft does not fit the live rules."""
    config = runtime.settings
    try:
        with runtime.sessions() as session:
            result = run_backtest(
                session,
                draft,
                hours,
                default_team=config.unhandled_default_team,
                max_rows=config.backtest_max_rows,
                budget_seconds=config.backtest_time_budget_seconds,
            )
    except DraftError as exc:
        raise Invalid(f"{NOT_FITTING}: {exc}") from None
    return result.as_dict()
