"""Audited changes: the one way rules, development hosts and device teams (and any later
configuration object) are created, changed and deleted, from the REST API, the admin UI and the CLI.

One change is one transaction: each row it touches is locked (``SELECT ... FOR UPDATE``) before its
old values are read, the new values are applied, and one ``config_audit_log`` row per touched record
(who, old and new values, the reason, the change's correlation id) is added to the same transaction.
After the commit, and only if something changed, the rules version in Redis is bumped so that
workers reload within seconds (:func:`mutt_app.rules.cache.bump_rules_version`); Redis being down
then does not undo the change: it becomes a warning, and workers still reload every
CACHE_RELOAD_INTERVAL.

The lock is what makes the recorded old values true: without it, two concurrent edits of one rule
both read the same old values and the second silently overwrites the first (a lost update), with
an audit row claiming an old value that was no longer there. SQLite has no row locks (SQLAlchemy
renders no ``FOR UPDATE`` there): its writers are serialised by the database-wide write lock instead,
and a transaction whose read went stale fails with "database is locked" rather than waiting.

Any mapped class with an integer primary key ``id``, a ``__tablename__`` and an ``as_dict()`` giving
its audited values (see :class:`Audited`) can be changed through :class:`Change` without new code
here.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import redis
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.commands.errors import NotFound
from mutt_app.db.config_audit import record_change
from mutt_app.rules.cache import bump_rules_version

log = logging.getLogger(__name__)

MAX_DB_INT = 2**31 - 1
"""The largest PostgreSQL integer: a larger id names no row (and the driver would refuse it)."""
NOT_BUMPED_WARNING = (
    "rules version not bumped (Redis unreachable); workers pick the change up within"
    " CACHE_RELOAD_INTERVAL"
)


class Audited(Protocol):
    """What a configuration object needs to be changed through :class:`Change`."""

    __tablename__: str
    id: Any

    def as_dict(self) -> dict[str, Any]:
        """The values the configuration audit keeps (JSON-friendly)."""
        ...


R = TypeVar("R", bound=Audited)
M = TypeVar("M")
Edit = Mapping[str, Any] | Callable[[Any], object]
"""Field values to set, or a function that sets them on the row (a form's ``populate_obj``)."""


@dataclass
class Change:
    """One audited change in progress: its transaction, who makes it, why, and what it did."""

    session: Session
    changed_by: str
    reason: str | None
    correlation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    changed: bool = False
    """Whether an audit row was written (a change that changes nothing writes none)."""
    rules_version: int | None = None
    """The rules version after the commit's bump; None if nothing changed or Redis was down."""
    warnings: list[str] = field(default_factory=list)
    _locked: set[Any] = field(default_factory=set, repr=False)

    # --- reading with a lock -------------------------------------------------------------------

    def locked(self, model: type[R], **by: Any) -> R | None:
        """The ``model`` row whose columns equal ``by`` (``id=3``, ``hostname="h"``), locked for
        the rest of the change; None if there is none."""
        row = self.session.scalars(select(model).filter_by(**by).with_for_update()).first()
        if row is not None:
            self._locked.add(inspect(row).identity_key)
        return row

    def found(self, model: type[M], row_id: int, what: str) -> M:
        """Row ``row_id`` of ``model``, locked for the rest of the change; :class:`NotFound`
        naming ``what`` ("no rule 3") when there is none."""
        row = self.locked(model, id=row_id) if row_id <= MAX_DB_INT else None  # type: ignore[type-var]
        if row is None:
            raise NotFound(f"no {what} {row_id}")
        return row  # type: ignore[return-value]

    def _lock(self, row: Audited) -> None:
        """Lock ``row`` (read earlier without a lock) and reload its values as they are now."""
        key = inspect(row).identity_key
        if key not in self._locked:
            # Reloads too: what was read before the lock may have changed since.
            self.session.refresh(row, with_for_update=True)
            self._locked.add(key)

    # --- the changes ---------------------------------------------------------------------------

    def create(self, row: R) -> dict[str, Any]:
        """Insert ``row`` and audit it; returns its values (server defaults included)."""
        self.session.add(row)
        self.session.flush()
        self.session.refresh(row)  # server defaults: created_at, updated_at, ...
        self._locked.add(inspect(row).identity_key)
        created = row.as_dict()
        self.record("CREATE", row.__tablename__, row.id, None, created)
        return created

    def update(self, row: R, edit: Edit, *, operation: str = "UPDATE") -> bool:
        """Lock ``row``, apply ``edit`` and audit old and new values; False if nothing changed.

        ``operation="DELETE"`` records a soft delete (a rule deactivated rather than removed).
        """
        self._lock(row)
        old = row.as_dict()
        if callable(edit):
            edit(row)
        else:
            for name, value in edit.items():
                setattr(row, name, value)
        self.session.flush()
        self.session.refresh(row)  # values a trigger sets (updated_at)
        new = row.as_dict()
        if new == old:
            return False
        self.record(operation, row.__tablename__, row.id, old, new)
        return True

    def delete(self, row: R) -> dict[str, Any]:
        """Lock ``row``, delete it and audit its last values; returns them."""
        self._lock(row)
        old = row.as_dict()
        self.session.delete(row)
        self.session.flush()
        self.record("DELETE", row.__tablename__, old["id"], old, None)
        return old

    def record(
        self,
        operation: str,
        table_name: str,
        record_id: int | None,
        old_values: dict[str, Any] | None,
        new_values: dict[str, Any] | None,
    ) -> None:
        """Add one config_audit_log row to this change's transaction."""
        record_change(
            self.session,
            changed_by=self.changed_by,
            operation=operation,
            table_name=table_name,
            record_id=record_id,
            old_values=old_values,
            new_values=new_values,
            reason=self.reason,
            correlation_id=self.correlation_id,
        )
        self.changed = True

    def summary(self) -> dict[str, Any]:
        """What a caller reports besides the record: changed, correlation id, rules version."""
        body: dict[str, Any] = {
            "changed": self.changed,
            "correlation_id": str(self.correlation_id),
            "rules_version": self.rules_version,
        }
        if self.warnings:
            body["warnings"] = self.warnings
        return body


@contextmanager
def audited_change(
    transaction: Session | sessionmaker[Session],
    redis_connection: redis.Redis | None,
    *,
    changed_by: str,
    reason: str | None,
    correlation_id: uuid.UUID | None = None,
) -> Iterator[Change]:
    """One audited change, committed when the block ends without error (rolled back otherwise).

    ``transaction`` is a session factory (a new session, closed afterwards) or a session whose
    transaction the change joins and commits (the admin UI's request session). After the commit, if
    the block changed anything, the rules version is bumped on ``redis_connection``; None when no
    worker can be running yet (``mutt run`` seeding an embedded database before it starts them).
    """
    if isinstance(transaction, sessionmaker):
        with (
            transaction() as session,
            _committed(session, changed_by, reason, correlation_id) as change,
        ):
            yield change
    else:
        with _committed(transaction, changed_by, reason, correlation_id) as change:
            yield change
    if change.changed and redis_connection is not None:
        _bump(change, redis_connection)


@contextmanager
def _committed(
    session: Session, changed_by: str, reason: str | None, correlation_id: uuid.UUID | None
) -> Iterator[Change]:
    change = Change(session, changed_by, reason, correlation_id or uuid.uuid4())
    try:
        yield change
        session.commit()
    except BaseException:
        session.rollback()
        raise


def _bump(change: Change, redis_connection: redis.Redis) -> None:
    try:
        change.rules_version = bump_rules_version(redis_connection)
    except (redis.RedisError, OSError) as exc:
        log.warning(
            "change %s committed but the rules version was not bumped: %s",
            change.correlation_id,
            exc,
        )
        change.warnings.append(NOT_BUMPED_WARNING)
