"""CLASSIFY_TIME_BUDGET_SECONDS: the classify task body in-process, on a real PostgreSQL and Redis.

A budget far smaller than one event's work makes every task run out of it: the rest of the batch must
go on in new, ledger-recorded tasks, and once those have run every event is audited (or
dead-lettered) exactly once, with no task handed on forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, DeadLetter, EventAuditLog
from mutt_app.events.schema import validate_items
from mutt_app.ledger import Batch, Ledger
from mutt_app.runtime import Runtime
from mutt_app.tasks.classify import QUEUE, TASK_NAME
from tests import broker_messages

EVENTS = 6
RULE = {
    "match_type": "contains",
    "match_string": "CRITICAL",
    "priority": 900,
    "prod_handling": "Page_and_ticket",
    "dev_handling": "Ticket_only",
    "team_assignment": "NETO",
}
# A regex needs an RE2 search, between which the budget is checked, so it can run out mid-event.
REGEX_RULE = RULE | {"match_type": "regex", "match_string": "CRITICAL.*failed"}


@pytest.fixture
def budget_celery_app(settings: Settings) -> Celery:
    app = Runtime(settings.model_copy(update={"classify_time_budget_seconds": 1e-6})).celery
    app.loader.import_default_modules()  # the task modules, as a worker imports them
    return app


def _wire_events(n: int) -> list[dict[str, Any]]:
    items = [
        {"timestamp": datetime.now(UTC).isoformat(), "hostname": f"router-{i}", "message": m}
        for i, m in enumerate(
            f"CRITICAL power supply {i} failed" if i % 2 else f"link {i} flapping" for i in range(n)
        )
    ]
    events, rejected = validate_items(
        items, required_fields=("hostname",), received_at=datetime.now(UTC)
    )
    assert not rejected
    return [e.to_wire() for e in events]


def _pop_classify_tasks(client: redis.Redis) -> list[list]:
    """Take the args of every classify task waiting on the broker (Redis transport envelopes)."""
    found = []
    while (raw := client.rpop(QUEUE)) is not None:
        assert broker_messages.envelope(raw)["headers"]["task"] == TASK_NAME
        found.append(broker_messages.task_args(raw))
    return found


def _run_until_drained(app: Celery, client: redis.Redis, first: list) -> list[dict[str, int]]:
    """Run the task on ``first``, then on every task it hands on, until none is left."""
    outcomes, pending = [], [first]
    while pending:
        assert len(outcomes) <= EVENTS, "batches are handed on more often than they have events"
        args = pending.pop()
        outcomes.append(app.tasks[TASK_NAME].apply(args=args).get())
        pending.extend(_pop_classify_tasks(client))
    return outcomes


def _deferred_total() -> float:
    return metrics.CLASSIFY_BUDGET_EXCEEDED.labels("deferred")._value.get()


def test_a_spent_budget_hands_the_rest_on_and_every_event_is_audited_once(
    budget_celery_app: Celery, engine: Engine, redis_client: redis.Redis
) -> None:
    with engine.begin() as conn:
        conn.execute(insert(AlertRule).values(**RULE))
    wire = _wire_events(EVENTS)
    ledger = Ledger(redis_client)
    ledger.record([Batch("budget-batch", wire)])
    deferred_before = _deferred_total()

    first = budget_celery_app.tasks[TASK_NAME].apply(args=[wire, "budget-batch"]).get()

    # Only a contains rule: no search can be cut short, so the first event is always decided.
    assert first == {"audited": 1, "duplicates": 0, "dead_lettered": 0, "deferred": EVENTS - 1}
    assert _deferred_total() - deferred_before == EVENTS - 1
    [handed_on] = _pop_classify_tasks(redis_client)
    rest, new_batch_id, replays = handed_on
    assert rest == wire[1:] and replays == 0
    # The original batch is settled; the rest is in the ledger, so a lost message is republished.
    assert [b.batch_id for b in ledger.overdue(-60)] == [new_batch_id]

    outcomes = [first, *_run_until_drained(budget_celery_app, redis_client, handed_on)]

    assert len(outcomes) == EVENTS  # one event per task at this budget, and then it stops
    assert sum(o["audited"] for o in outcomes) == EVENTS
    assert ledger.depth() == 0
    with Session(engine) as session:
        ids = session.scalars(select(EventAuditLog.correlation_id)).all()
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0
    assert sorted(str(i) for i in ids) == sorted(w["correlation_id"] for w in wire)
    handled = {str(row.correlation_id): row for row in _audit_rows(engine)}
    for event in wire:
        matched = "CRITICAL" in event["message"]
        assert handled[event["correlation_id"]].handling_decision == (
            "Page_and_ticket" if matched else "Log_only"
        )


def test_an_event_that_alone_spends_the_budget_is_dead_lettered_not_handed_on_forever(
    budget_celery_app: Celery, engine: Engine, redis_client: redis.Redis
) -> None:
    with engine.begin() as conn:
        conn.execute(insert(AlertRule).values(**REGEX_RULE))
    wire = _wire_events(EVENTS)
    Ledger(redis_client).record([Batch("slow-batch", wire)])

    outcomes = _run_until_drained(budget_celery_app, redis_client, [wire, "slow-batch"])

    # Events without a "CRITICAL" never reach the regex; the others spend the budget on it.
    slow = [w for w in wire if "CRITICAL" in w["message"]]
    assert sum(o["dead_lettered"] for o in outcomes) == len(slow)
    assert sum(o["audited"] for o in outcomes) == EVENTS - len(slow)
    assert Ledger(redis_client).depth() == 0
    with Session(engine) as session:
        letters = session.scalars(select(DeadLetter)).all()
        audited = session.scalars(select(EventAuditLog.correlation_id)).all()
    assert sorted(str(d.correlation_id) for d in letters) == sorted(
        w["correlation_id"] for w in slow
    )
    assert {d.error_type for d in letters} == {"BudgetExceeded"}
    assert all("CLASSIFY_TIME_BUDGET_SECONDS" in d.error_message for d in letters)
    assert len(audited) + len(letters) == EVENTS  # each event exactly once, one way or the other
    assert {str(i) for i in audited}.isdisjoint(str(d.correlation_id) for d in letters)


def _audit_rows(engine: Engine) -> list[EventAuditLog]:
    with Session(engine) as session:
        return list(session.scalars(select(EventAuditLog)))


def test_a_stored_rule_over_a_bound_is_skipped_with_an_error_and_a_metric(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app = Runtime(settings).celery  # the default budget
    app.loader.import_default_modules()
    # Written straight to the database, as a rule stored before the bounds existed would be.
    with engine.begin() as conn:
        huge = conn.execute(
            insert(AlertRule)
            .values(**REGEX_RULE | {"match_string": "x" * 100_000, "priority": 1000})
            .returning(AlertRule.id)
        ).scalar_one()
        conn.execute(insert(AlertRule).values(**RULE))
    wire = _wire_events(2)

    outcome = app.tasks[TASK_NAME].apply(args=[wire, "old-rules"]).get()

    assert outcome == {"audited": 2, "duplicates": 0, "dead_lettered": 0, "deferred": 0}
    assert metrics.RULES_SKIPPED._value.get() == 1
    assert metrics.RULES_CACHED._value.get() == 1
    assert any(
        r.levelname == "ERROR"
        and f"rule {huge} skipped" in r.getMessage()
        and "MAX_PATTERN_CHARS" in r.getMessage()
        for r in caplog.records
    )
    handling = {str(r.correlation_id): r.handling_decision for r in _audit_rows(engine)}
    assert handling[wire[1]["correlation_id"]] == "Page_and_ticket"  # the valid rule still applies
