"""One classify batch: decide each event, hand on what must reach Moog, audit all of it.

A task spends at most CLASSIFY_TIME_BUDGET_SECONDS deciding events, so that no rule set, however
slow, holds a worker for long while other batches (a CRITICAL event among them) wait. The budget is
checked before each event and between the regex searches of one event (RE2 cannot be stopped
mid-search; the rule bounds in :mod:`mutt_app.rules.validate` keep each search short). When it is spent:

* the events not yet decided are recorded in the ledger as a new batch and published as a new task
  at the back of the queue; this task audits what it decided and settles its own batch. The ledger
  entry covers a lost publish, and the idempotent audit covers a re-run, so each event is still
  audited exactly once;
* if the first event of a task alone spends the budget, that event is dead-lettered (error type
  BudgetExceeded) like any event that cannot be classified, and the rest go on as above. So every
  task settles at least one event, and a batch cannot be handed on forever.

An event that cannot be classified is dead-lettered on its own, so that replaying it isolates it;
except in the replay of a dead letter (``replay_of``): the events that fail again stay together in
one dead letter with each one's reason (:func:`mutt_app.forwarding.deadletters.add_replay_failures`),
so a replay never multiplies dead letters (one of 50,000 malformed events used to make 50,000).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from redis.client import Pipeline

from mutt_app import metrics, tracing
from mutt_app.classify.audit import audit_values, insert_audit_values
from mutt_app.events.schema import Event
from mutt_app.forwarding.deadletters import (
    add_dead_letter,
    add_replay_failures,
    replay_batch_id,
)
from mutt_app.forwarding.moog import build_payload
from mutt_app.holdback.base import META_ALERT, Candidate, count_held
from mutt_app.holdback.pipeline import hand_on, to_moog
from mutt_app.holdback.windows import count_downgraded
from mutt_app.ledger import Batch
from mutt_app.names import CLASSIFY_QUEUE, CLASSIFY_TASK
from mutt_app.rules.cache import RuleCache
from mutt_app.rules.compile import BudgetExceeded
from mutt_app.rules.decide import Decision, decide
from mutt_app.runtime import Runtime
from mutt_app.watch.last_seen import record_seen
from mutt_app.watch.unhandled import raise_meta_alerts

log = logging.getLogger(__name__)


def classify_batch(
    runtime: Runtime,
    app: Any,
    wire_events: list[dict[str, Any]],
    replays: int = 0,
    replay_of: int | None = None,
    settle_with: Pipeline | None = None,
) -> dict[str, int]:
    """Decide, forward, audit and count one batch; returns counts by outcome.

    Events left when CLASSIFY_TIME_BUDGET_SECONDS is spent go on in a new task (module docstring).
    ``replay_of``: the dead letter this batch replays, whose failures keep one dead letter.
    ``settle_with``: the transaction pipeline the caller executes with the batch's settle in the
    ledger, whatever the outcome: the hosts' last-seen write is queued there, one round trip
    fewer per batch (None: it is written at once).
    """
    started = time.perf_counter()
    settings = runtime.settings
    snapshot = runtime.component(RuleCache.of).current()
    budget = settings.classify_time_budget_seconds
    deadline = time.perf_counter() + budget
    decided: list[tuple[Event, Decision]] = []
    failed: list[tuple[dict[str, Any], Exception]] = []
    deferred: list[dict[str, Any]] = []
    for index, wire in enumerate(wire_events):
        if index and time.perf_counter() > deadline:
            deferred = wire_events[index:]
            break
        try:
            event = Event.from_wire(wire)
            decision = decide(
                event.message,
                event.trap_oid,
                event.syslog_severity,
                event.hostname,
                snapshot,
                settings.unhandled_default_team,
                deadline,
            )
        except BudgetExceeded:
            if index:
                deferred = wire_events[index:]
                break
            # This event alone spent the whole budget: handing it on would only repeat that.
            failed.append((wire, BudgetExceeded(_spent_alone(budget))))
            metrics.CLASSIFY_BUDGET_EXCEEDED.labels("dead_lettered").inc()
            log.error("one event used the whole classify time budget (%ss)", budget)
            continue
        except Exception as exc:  # one bad event must not cost the others
            failed.append((wire, exc))
            continue
        decided.append((event, decision))

    # Every event that parsed is its host talking, whatever its rule does with it. Queued with the
    # settle, it still lands no later than the batch leaves the ledger, which is all the heartbeat
    # check relies on (mutt_app.watch.heartbeats: quiet is judged as of the oldest unsettled batch).
    record_seen(runtime.redis if settle_with is None else settle_with, [e for e, _ in decided])

    # Between the decision and the forward queue: what is held back, and why
    # (:mod:`mutt_app.holdback.pipeline`). A maintenance downgrade changes the decision itself.
    # Forwards go out before the audit commits: a crash in between re-runs the batch, and the
    # forward's idempotency key stops a second post. The reverse order could lose an alert.
    # A dead-lettered (shed) alert waits for remediation; a deferred one is still on its way.
    passage = hand_on(runtime, app, candidates_of(decided), snapshot)
    held = passage.held
    if passage.changed:
        decided = [
            (e, _decision_after(passage.changed.get(e.correlation_id), d)) for e, d in decided
        ]

    write_started = time.perf_counter()
    version = snapshot.version_number
    trace_id = tracing.trace_id()
    # A span of its own: on PostgreSQL the INSERT goes through the driver's cursor, past the
    # SQLAlchemy instrumentation (audit.py says why), so the transaction's time shows here.
    with (
        tracing.tracer.start_as_current_span("mutt.classify.audit") as span,
        runtime.sessions.begin() as session,
    ):
        new = insert_audit_values(
            session,
            [audit_values(e, d, held.get(e.correlation_id), version, trace_id) for e, d in decided],
        )
        if failed and replay_of is not None:
            add_replay_failures(
                session,
                letter_id=replay_of,
                wires=[wire for wire, _ in failed],
                errors=[f"{type(exc).__name__}: {exc}"[:1000] for _, exc in failed],
                error_type=_error_type(failed),
                backoff_base=settings.remediation_backoff_base,
                replays=replays,
            )
        for wire, exc in failed if replay_of is None else ():
            add_dead_letter(
                session,
                task_name=CLASSIFY_TASK,
                queue=CLASSIFY_QUEUE,
                payload={"events": [wire]},
                error=exc,
                backoff_base=settings.remediation_backoff_base,
                replays=replays,
                correlation_id=wire.get("correlation_id") if isinstance(wire, dict) else None,
            )
        if span.is_recording():
            span.set_attributes(
                {
                    "mutt.rows": len(decided),
                    "mutt.audited": len(new),
                    "mutt.dead_lettered": len(failed),
                }
            )
    committed = time.perf_counter()
    metrics.DB_WRITE_LATENCY.observe((committed - write_started) * 1000)

    raise_meta_alerts(
        runtime,
        [e for e, d in decided if not d.matched and e.correlation_id in new],
        lambda alerts: to_moog(runtime, app, alerts, META_ALERT),
    )
    _observe(decided, failed, new, started, replay_of)
    count_held(held, new)
    count_downgraded(passage.changed, new)
    metrics.FLAPPING_ALERTS.labels("raised").inc(len(passage.raised.keys() & new))
    if deferred:
        _defer(runtime, app, deferred, replays, budget, replay_of)
    return {
        "audited": len(new),
        "duplicates": len(decided) - len(new),
        "dead_lettered": len(failed),
        "deferred": len(deferred),
    }


def candidates_of(decided: list[tuple[Event, Decision]]) -> list[Candidate]:
    """The forwardable decisions of a batch as hold-back candidates, with their Moog payloads."""
    return [
        Candidate.of_event(
            event,
            decision,
            build_payload(
                event,
                rule_id=decision.rule_id,
                handling=decision.handling,
                team=decision.team,
                is_dev=decision.is_dev,
            ),
        )
        for event, decision in decided
        if decision.forward
    ]


def _decision_after(changed: Candidate | None, decision: Decision) -> Decision:
    return decision if changed is None or changed.decision is None else changed.decision


def _spent_alone(budget: float) -> str:
    return (
        f"classifying this one event took longer than CLASSIFY_TIME_BUDGET_SECONDS ({budget}s);"
        " a rule is too slow for its message"
    )


def _error_type(failed: list[tuple[dict[str, Any], Exception]]) -> str:
    kinds = {type(exc).__name__ for _, exc in failed}
    return kinds.pop() if len(kinds) == 1 else "ReplayFailed"


def _defer(
    runtime: Runtime,
    app: Any,
    events: list[dict[str, Any]],
    replays: int,
    budget: float,
    replay_of: int | None,
) -> None:
    """Hand ``events`` on to a new classify task: in the ledger first, then on the broker.

    A replay's events stay a replay of the same dead letter (its batch id says so)."""
    batch_id = uuid.uuid4().hex if replay_of is None else replay_batch_id(replay_of)
    runtime.ledger.record([Batch(batch_id, events)])
    app.send_task(
        CLASSIFY_TASK,
        args=[events, batch_id, replays],
        argsrepr=f"({len(events)} events, batch {batch_id})",
    )
    metrics.CLASSIFY_BUDGET_EXCEEDED.labels("deferred").inc(len(events))
    log.warning(
        "classify time budget (%ss) spent; %d events handed on in batch %s",
        budget,
        len(events),
        batch_id,
    )


def _observe(
    decided: list[tuple[Event, Decision]],
    failed: list[tuple[dict[str, Any], Exception]],
    new: set[str],
    started: float,
    replay_of: int | None = None,
) -> None:
    elapsed = time.perf_counter() - started
    metrics.CLASSIFY_BATCH_LATENCY.observe(elapsed)
    size = len(decided) + len(failed)
    if size:
        metrics.CLASSIFY_EVENT_LATENCY.observe(elapsed / size)
    now = datetime.now(UTC)
    outcomes = Counter(
        ("handled" if d.matched else "unhandled", d.handling)
        for e, d in decided
        if e.correlation_id in new
    )
    for (status, handling), n in outcomes.items():
        metrics.EVENTS_PROCESSED.labels(status, handling).inc(n)
    metrics.observe_many(
        metrics.END_TO_END_LATENCY,
        [(now - event.received_at).total_seconds() for event, _ in decided],
    )
    if failed and replay_of is not None:
        # One dead letter, one line: a replay of 50,000 bad events must not log 50,000 lines.
        metrics.EVENTS_PROCESSED.labels("poison", "none").inc(len(failed))
        metrics.DEAD_LETTERED.labels(CLASSIFY_TASK, "classify_error").inc()
        log.error(
            "%d events of the replay of dead letter %d failed again; kept in one dead letter"
            " (first: %s: %s)",
            len(failed),
            replay_of,
            type(failed[0][1]).__name__,
            failed[0][1],
        )
    elif failed:
        metrics.EVENTS_PROCESSED.labels("poison", "none").inc(len(failed))
        metrics.DEAD_LETTERED.labels(CLASSIFY_TASK, "classify_error").inc(len(failed))
        for wire, exc in failed:
            log.error(
                "event dead-lettered: %s: %s (%r)",
                type(exc).__name__,
                exc,
                str(wire)[:200],
                extra={
                    "correlation_id": wire.get("correlation_id") if isinstance(wire, dict) else None
                },
            )
