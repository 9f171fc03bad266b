"""Commands on rule drafts: store one, save a new version, publish it; and its backtest.

A draft (:mod:`mutt_app.rules.drafts`) must fit the live rules when it is stored and again when it
is published: a rule it changes may have been changed or deactivated since. Storing or saving a draft
changes no live rule, so the caller opens its audited change without a rules-version bump; it is
audited all the same. Publishing applies the draft's changes through the rule commands
(:mod:`mutt_app.commands.rules`): one ``config_audit_log`` row per rule that really changes and one
marking the draft published, under one reason and correlation id.

A draft document (JSON, from the API or the admin UI's editor) becomes a :class:`Draft` through
:func:`parse_draft`, which checks each entry's fields with the rule commands' own
:data:`~mutt_app.commands.rules.RULE_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from mutt_app.commands import rules
from mutt_app.commands.changes import MAX_DB_INT, Change
from mutt_app.commands.errors import Conflict, Invalid, NotFound
from mutt_app.commands.fields import FieldSpec, check_fields, field_problem
from mutt_app.db.models import RuleDraft
from mutt_app.rules.backtest import run_backtest
from mutt_app.rules.drafts import Draft, DraftError, proposed_rules
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
    except DraftError as exc:
        raise Invalid(f"{NOT_FITTING}: {exc}") from None


def create(change: Change, name: str, draft: Draft) -> dict[str, Any]:
    """Store ``draft`` as ``name`` (by the change's author) once it fits; returns its values."""
    check_fits(change.session, draft)
    return change.create(
        RuleDraft(name=name, document=draft.document(), created_by=change.changed_by)
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
    change.update(row, {**fields, "updated_at": datetime.now(UTC)})
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


def publish_stored(change: Change, draft_id: int) -> tuple[RuleDraft, list[dict[str, Any]]]:
    """Publish the stored draft ``draft_id`` inside ``change`` and mark it published (its own
    audit row); returns it and the created rules' values.

    :class:`NotFound` if there is no such draft; :class:`Conflict` (its message says why) if it was
    published already or no longer fits the live rules.
    """
    row = change.found(RuleDraft, draft_id, "draft")
    try:
        if row.published_at is not None:
            raise DraftError(f"draft {draft_id} was published already ({row.published_by})")
        created = publish(change, Draft.from_document(row.document))
    except DraftError as exc:
        raise Conflict(str(exc)) from None
    change.update(row, {"published_at": datetime.now(UTC), "published_by": change.changed_by})
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
