"""A configuration change made through the API: by the calling key, with its reason, audited.

Each change writes exactly one ``config_audit_log`` row in the same transaction as the change
(:mod:`mutt_app.commands.changes`, which locks the row first), with changed_by ``api:<key name>``
(``api-key`` for WEBUI_API_KEY) and a correlation id from ``X-Correlation-ID`` or a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from flask import request
from sqlalchemy.exc import IntegrityError

from mutt_app.commands.changes import Change, audited_change
from mutt_app.web.api.errors import ApiError, constraint_error
from mutt_app.web.api.keys import current_key
from mutt_app.web.api.params import MAX_DB_INT
from mutt_app.web.api.resources import redis_connection, sessions

M = TypeVar("M")


def _correlation_id() -> uuid.UUID:
    raw = request.headers.get("X-Correlation-ID")
    if not raw:
        return uuid.uuid4()
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, "X-Correlation-ID is not a UUID", raw) from None


@contextmanager
def config_change(
    reason: str, *, conflict: str = "already exists", bump: bool = True
) -> Iterator[Change]:
    """One configuration change by the calling key (:func:`mutt_app.commands.changes.audited_change`).

    Committed when the block ends without error, then the rules version is bumped if the block
    changed anything (a Redis failure then is a warning in :meth:`Change.summary`); ``bump=False``
    for what workers do not read (a rule draft). A unique violation becomes 409 ``conflict``, any
    other constraint violation 422.
    """
    try:
        with audited_change(
            sessions(),
            redis_connection() if bump else None,
            changed_by=current_key().changed_by,
            reason=reason,
            correlation_id=_correlation_id(),
        ) as change:
            yield change
    except IntegrityError as exc:
        raise constraint_error(exc, conflict=conflict) from None


def locked_or_404(change: Change, model: type[M], row_id: int, what: str) -> M:
    """Row ``row_id`` of ``model``, locked for ``change``; a 404 naming ``what`` when there is none.

    Locked, so that a concurrent change cannot slip between the old values and the write.
    """
    row = change.locked(model, id=row_id) if row_id <= MAX_DB_INT else None
    if row is None:
        raise ApiError(404, f"no {what} {row_id}")
    return row
