"""The dead-letter queue: work that failed for good, stored durably in the database.

A dead letter is written in the failing task's own transaction or before its message is acknowledged,
so it exists before the broker forgets the message. Remediation replays dead letters; what it gives up
on moves to the poison table.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from celery import Celery
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from mutt_app.db.models import DeadLetter, PoisonLetter
from mutt_app.forwarding.lanes import queue_for
from mutt_app.names import CLASSIFY_QUEUE, CLASSIFY_TASK, FORWARD_TASK, TASK_PREFIX

MAX_BACKOFF_SECONDS = 3600


def add_dead_letter(
    session: Session,
    *,
    task_name: str,
    queue: str,
    payload: Any,
    error: BaseException | str,
    error_type: str | None = None,
    backoff_base: int,
    attempts: int = 1,
    replays: int = 0,
    correlation_id: str | uuid.UUID | None = None,
    first_failed_at: datetime | None = None,
) -> DeadLetter:
    """Add one dead letter to ``session`` (committed by the caller).

    ``replays`` is how many times remediation already replayed this work; it decides both when it may
    be replayed next and when remediation gives up on it.
    """
    now = datetime.now(UTC)
    letter = DeadLetter(
        task_name=task_name,
        queue=queue,
        payload=payload,
        correlation_id=_uuid_or_none(correlation_id),
        error_type=error_type
        or (type(error).__name__ if isinstance(error, BaseException) else "Error"),
        error_message=str(error)[:4000],
        attempts=attempts,
        replays=replays,
        first_failed_at=first_failed_at or now,
        last_failed_at=now,
        next_replay_at=now + replay_backoff(replays, backoff_base),
    )
    session.add(letter)
    return letter


def add_poison(
    session: Session,
    *,
    task_name: str,
    queue: str,
    payload: Any,
    error_type: str,
    reason: str,
    attempts: int = 0,
    replays: int = 0,
    correlation_id: str | uuid.UUID | None = None,
    first_failed_at: datetime | None = None,
) -> PoisonLetter:
    """Add work to the poison store straight away (committed by the caller), for what no replay
    could mend (a malformed or oversize alert: :mod:`mutt_app.forwarding.admission`)."""
    now = datetime.now(UTC)
    try:  # a payload that is not JSON is kept as text, so the row can still be written
        orjson.dumps(payload)
        stored, raw = payload, None
    except TypeError:
        stored, raw = None, repr(payload)[:100_000]
    letter = PoisonLetter(
        task_name=task_name,
        queue=queue,
        payload=stored,
        raw_payload=raw,
        correlation_id=_uuid_or_none(correlation_id),
        error_type=error_type,
        error_message=reason[:4000],
        attempts=attempts,
        replays=replays,
        first_failed_at=first_failed_at or now,
        last_failed_at=now,
        reason=reason[:4000],
    )
    session.add(letter)
    return letter


def replay_backoff(replays: int, base: int) -> timedelta:
    """How long after failing a dead letter waits: REMEDIATION_BACKOFF_BASE x its replay number."""
    return timedelta(seconds=min(base * (replays + 1), MAX_BACKOFF_SECONDS))


def _uuid_or_none(value: str | uuid.UUID | None) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def find(
    session: Session,
    *,
    poison: bool = False,
    task_name: str | None = None,
    older_than: timedelta | None = None,
    limit: int | None = 50,
    offset: int = 0,
) -> list[DeadLetter] | list[PoisonLetter]:
    """Dead letters (or poison), oldest first, filtered by task and age."""
    model = PoisonLetter if poison else DeadLetter
    query = select(model).order_by(model.id)
    if task_name:
        query = query.where(model.task_name == _full_task_name(task_name))
    if older_than is not None:
        query = query.where(model.last_failed_at < datetime.now(UTC) - older_than)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count(
    session: Session,
    *,
    poison: bool = False,
    task_name: str | None = None,
    older_than: timedelta | None = None,
) -> int:
    """How many dead letters (or poison items) match the filters."""
    model = PoisonLetter if poison else DeadLetter
    query = select(func.count()).select_from(model)
    if task_name:
        query = query.where(model.task_name == _full_task_name(task_name))
    if older_than is not None:
        query = query.where(model.last_failed_at < datetime.now(UTC) - older_than)
    return session.scalar(query) or 0


REPLAY_BATCH_PREFIX = "replay-"


def replay_batch_id(letter_id: int) -> str:
    """A new batch id for events replayed from dead letter ``letter_id`` (or handed on from such a
    batch): the classify task knows a replay by it, and keeps one dead letter for what fails again."""
    return f"{REPLAY_BATCH_PREFIX}{letter_id}-{uuid.uuid4().hex[:8]}"


def replayed_letter(batch_id: str) -> int | None:
    """The dead letter whose events batch ``batch_id`` replays; None for any other batch."""
    if not batch_id.startswith(REPLAY_BATCH_PREFIX):
        return None
    number = batch_id[len(REPLAY_BATCH_PREFIX) :].split("-", 1)[0]
    return int(number) if number.isdigit() else None


def add_replay_failures(
    session: Session,
    *,
    letter_id: int,
    wires: list[Any],
    errors: list[str],
    error_type: str,
    backoff_base: int,
    replays: int,
) -> DeadLetter:
    """The one dead letter of classify dead letter ``letter_id``'s replay: ``wires`` (the events
    that failed again) with their reasons, added to the one an earlier part of the same replay
    wrote (a part the classify time budget handed on), else new.

    One replay of a dead letter of N malformed events used to write N dead letters; replaying those
    multiplied them again. A replay that fails keeps one, its ``payload["reasons"]`` one per event.
    """
    found = session.scalars(
        select(DeadLetter)
        .where(DeadLetter.task_name == CLASSIFY_TASK)
        .where(DeadLetter.payload["replay_of"].as_integer() == letter_id)
        .with_for_update()
        .limit(1)
    ).first()
    if found is not None:
        payload = dict(found.payload)
        found.payload = {
            **payload,
            "events": [*payload.get("events", []), *wires],
            "reasons": [*payload.get("reasons", []), *errors],
        }
        found.error_message = _failures_message(found.payload["reasons"])
        found.last_failed_at = datetime.now(UTC)
        return found
    ids = [w.get("correlation_id") for w in wires if isinstance(w, dict)]
    return add_dead_letter(
        session,
        task_name=CLASSIFY_TASK,
        queue=CLASSIFY_QUEUE,
        payload={"events": wires, "reasons": errors, "replay_of": letter_id},
        error=_failures_message(errors),
        error_type=error_type,
        backoff_base=backoff_base,
        replays=replays,
        correlation_id=ids[0] if len(ids) == 1 else None,
    )


def _failures_message(reasons: list[str]) -> str:
    distinct = sorted(set(reasons))
    shown = "; ".join(distinct[:5]) + (
        f"; and {len(distinct) - 5} more" if len(distinct) > 5 else ""
    )
    return f"{len(reasons)} replayed events failed again: {shown}"


def replay_call(
    item: DeadLetter | PoisonLetter,
) -> tuple[str, list[Any], dict[str, Any], str] | None:
    """The task call that replays ``item``, or None when its payload is not usable."""
    payload = item.payload
    if not isinstance(payload, dict):
        return None
    if item.task_name == FORWARD_TASK and isinstance(payload.get("alert"), dict):
        alert = payload["alert"]
        return FORWARD_TASK, [alert], {}, queue_for(alert)  # a page to the page lane
    events = payload.get("events")
    if (
        item.task_name == CLASSIFY_TASK
        and isinstance(events, list)
        and events
        and all(isinstance(e, dict) for e in events)
    ):
        return CLASSIFY_TASK, [events, replay_batch_id(item.id)], {}, CLASSIFY_QUEUE
    return None


def replay(
    session: Session, app: Celery, item: DeadLetter | PoisonLetter, replays: int | None = None
) -> tuple[str, str] | None:
    """Publish ``item``'s task again and delete the item; returns (task name, queue).

    None, and the item left in place, when its payload cannot be replayed. ``replays``, when given,
    is passed to the task, so a new failure carries the replay count. The task is published before
    the delete commits: a failure in between replays twice, never zero times.
    """
    call = replay_call(item)
    if call is None:
        return None
    name, args, kwargs, queue = call
    if replays is not None:
        kwargs["replays"] = replays
    app.send_task(name, args=args, kwargs=kwargs, queue=queue)
    model = type(item)
    session.execute(delete(model).where(model.id == item.id))
    return name, queue


def purge(session: Session, item: DeadLetter | PoisonLetter) -> None:
    """Delete ``item`` for good (the caller audits it: the audit row keeps its payload)."""
    model = type(item)
    session.execute(delete(model).where(model.id == item.id))


def _full_task_name(name: str) -> str:
    return name if name.startswith(TASK_PREFIX) else f"{TASK_PREFIX}{name}"
