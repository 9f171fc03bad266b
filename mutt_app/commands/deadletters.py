"""Commands on dead letters and poison items: replay one (publish its task again and remove it),
purge one for good.

Each runs in the caller's transaction (a session from ``sessions().begin()``), so that a replay whose
publish fails leaves the item where it was. Every replay and purge a person makes, whatever the
surface (REST API, admin UI, ``mutt dlq``), comes here: it names who and needs a reason, and writes
one config_audit_log row (operation DELETE; a purge's row keeps the item, payload and all), so an
operator cannot push poisoned work back into the pipeline without a trace. Replaying with backoff
and moving items to the poison store is remediation's work (:mod:`mutt_app.forwarding.deadletters`),
not a person's.
"""

from __future__ import annotations

from celery import Celery
from sqlalchemy.orm import Session

from mutt_app.commands.changes import Change
from mutt_app.commands.errors import Invalid, NotFound
from mutt_app.db.models import DeadLetter, PoisonLetter
from mutt_app.forwarding import deadletters

MAX_ITEM_ID = 2**63 - 1
"""The largest id an item may have (a 64-bit key): past it, an id names nothing."""
NOT_REPLAYABLE = "the item's payload cannot be replayed; it is left in place"


def item(session: Session, item_id: int, *, poison: bool) -> DeadLetter | PoisonLetter:
    """Dead letter (or, with ``poison``, poison item) ``item_id``; :class:`NotFound` if none."""
    found = (
        session.get(PoisonLetter if poison else DeadLetter, item_id)
        if item_id <= MAX_ITEM_ID
        else None
    )
    if found is None:
        store = "poison store" if poison else "dead-letter queue"
        raise NotFound(f"no item {item_id} in the {store}")
    return found


def _reason_of(change: Change) -> None:
    if not (change.reason or "").strip():
        raise Invalid("a replay or purge needs a reason", {"missing_fields": ["reason"]})


def replay(change: Change, celery: Celery, item_id: int, *, poison: bool) -> tuple[str, str]:
    """Publish item ``item_id``'s task again now and remove the item, audited; returns (task, queue).

    ``change`` (:func:`mutt_app.commands.changes.audited_change`, no rules-version bump needed)
    names who and why. :class:`NotFound`; :class:`Invalid` when its payload cannot be replayed or
    the change has no reason (nothing is changed). A broker or Redis error propagates: the change
    then rolls back and the item stays.
    """
    _reason_of(change)
    row = item(change.session, item_id, poison=poison)
    old = row.as_dict()
    replayed = deadletters.replay(change.session, celery, row)
    if replayed is None:
        raise Invalid(NOT_REPLAYABLE)
    name, queue = replayed
    new = {"replayed": True, "task": name, "queue": queue}
    # One row, operation DELETE (the item leaves the store), in the change's transaction.
    change.record("DELETE", row.__tablename__, row.id, old, new)
    return name, queue


def purge(change: Change, item_id: int, *, poison: bool) -> DeadLetter | PoisonLetter:
    """Delete item ``item_id`` for good, audited (the audit row keeps it); returns it."""
    _reason_of(change)
    row = item(change.session, item_id, poison=poison)
    old = row.as_dict()
    deadletters.purge(change.session, row)
    change.record("DELETE", row.__tablename__, row.id, old, None)
    return row
