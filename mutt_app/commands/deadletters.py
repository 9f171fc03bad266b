"""Commands on dead letters and poison items: replay one (publish its task again and remove it),
purge one for good.

Each runs in the caller's transaction (a session from ``sessions().begin()``), so that a replay whose
publish fails leaves the item where it was. A change made by a person is audited with one
config_audit_log row (operation DELETE; a purge's row keeps the item, payload and all). Replaying
with backoff and moving items to the poison store is remediation's work
(:mod:`mutt_app.forwarding.deadletters`), not a person's.
"""

from __future__ import annotations

from typing import Any

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


def _audit(
    session: Session,
    row: DeadLetter | PoisonLetter,
    old: dict[str, Any],
    new: dict[str, Any] | None,
    *,
    changed_by: str,
    reason: str | None,
) -> None:
    # The caller's transaction is the change: one row, operation DELETE (the item leaves the store).
    Change(session, changed_by, reason).record("DELETE", row.__tablename__, row.id, old, new)


def replay(
    session: Session,
    celery: Celery,
    item_id: int,
    *,
    poison: bool,
    changed_by: str | None = None,
    reason: str | None = None,
) -> tuple[str, str]:
    """Publish item ``item_id``'s task again now and remove the item; returns (task, queue).

    Audited when ``changed_by`` is given. :class:`NotFound`; :class:`Invalid` when its payload
    cannot be replayed (nothing is changed). A broker or Redis error propagates: the caller's
    transaction then rolls back and the item stays.
    """
    row = item(session, item_id, poison=poison)
    old = row.as_dict()
    replayed = deadletters.replay(session, celery, row)
    if replayed is None:
        raise Invalid(NOT_REPLAYABLE)
    name, queue = replayed
    if changed_by is not None:
        new = {"replayed": True, "task": name, "queue": queue}
        _audit(session, row, old, new, changed_by=changed_by, reason=reason)
    return name, queue


def purge(
    session: Session, item_id: int, *, poison: bool, changed_by: str, reason: str | None
) -> DeadLetter | PoisonLetter:
    """Delete item ``item_id`` for good, audited (the audit row keeps it); returns it."""
    row = item(session, item_id, poison=poison)
    old = row.as_dict()
    deadletters.purge(session, row)
    _audit(session, row, old, None, changed_by=changed_by, reason=reason)
    return row
