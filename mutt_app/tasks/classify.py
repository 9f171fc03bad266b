"""classify_event: decide each event of a batch, hand on what must reach Moog, audit all of it.

A task spends at most CLASSIFY_TIME_BUDGET_SECONDS deciding events, so that no rule set, however
slow, holds a worker for long while other batches (a CRITICAL event among them) wait. The budget is
checked before each event and between the regex searches of one event (RE2 cannot be stopped
mid-search; the rule bounds in :mod:`mutt_app.rules.engine` keep each search short). When it is spent:

* the events not yet decided are recorded in the ledger as a new batch and published as a new task
  at the back of the queue; this task audits what it decided and settles its own batch. The ledger
  entry covers a lost publish, and the idempotent audit covers a re-run, so each event is still
  audited exactly once;
* if the first event of a task alone spends the budget, that event is dead-lettered (error type
  BudgetExceeded) like any event that cannot be classified, and the rest go on as above. So every
  task settles at least one event, and a batch cannot be handed on forever.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout

from mutt_app import metrics
from mutt_app.classify.audit import audit_row, insert_audit_rows
from mutt_app.db.engine import database_unavailable
from mutt_app.events.schema import Event
from mutt_app.forwarding import lanes
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.forwarding.moog import build_payload, unhandled_meta_alert
from mutt_app.holdback import windows as maintenance_windows
from mutt_app.holdback.backpressure import Backpressure, shed_verdict
from mutt_app.holdback.dedup import Held, count_held, hold_duplicates
from mutt_app.holdback.flapping import hold_flapping
from mutt_app.holdback.scripts import UnhandledCounter
from mutt_app.holdback.storms import hold_over_budget
from mutt_app.ledger import Batch
from mutt_app.logs import correlation, log_context
from mutt_app.names import CLASSIFY_QUEUE as QUEUE
from mutt_app.names import CLASSIFY_TASK as TASK_NAME
from mutt_app.names import FORWARD_TASK, SHED
from mutt_app.rules.cache import RuleCache
from mutt_app.rules.engine import BudgetExceeded, Decision, RuleSnapshot, decide
from mutt_app.runtime import Runtime, RuntimeTask
from mutt_app.watch.heartbeats import record_seen

log = logging.getLogger(__name__)

# Waits before retrying a batch whose database or Redis was unreachable; all well under the
# broker's visibility timeout (a waiting retry is an unacked message). Retries go on without limit
# at the last wait: a PostgreSQL promotion takes seconds to a minute, and an outage that lasts
# longer must still not turn accepted events into dead letters.
INFRA_RETRY_DELAYS = (1, 2, 5, 10, 20, 30)


@shared_task(
    bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, max_retries=None
)
def classify_event(
    self: RuntimeTask, events: list[dict[str, Any]], batch_id: str, replays: int = 0
) -> dict[str, int]:
    """Classify a batch of accepted events (``Event.to_wire`` dicts) and audit them.

    ``replays`` counts remediation replays of these events, carried into any new dead letter.
    """
    ids = [e.get("correlation_id") for e in events if isinstance(e, dict)]
    with log_context(batch_id=batch_id, **correlation(ids)):
        outcome = _classify_event(self, events, batch_id, replays)
        log.info("batch %s: %s", batch_id, outcome)
        return outcome


def _classify_event(
    self: RuntimeTask, events: list[dict[str, Any]], batch_id: str, replays: int
) -> dict[str, int]:
    runtime = self.runtime
    attempt = runtime.ledger.start_attempt(batch_id)
    if attempt > runtime.settings.alerter_max_retries:
        # Every earlier attempt died mid-run (worker lost): stop feeding this batch to workers.
        return _dead_letter_batch(runtime, events, batch_id, attempt, replays)
    try:
        outcome = classify_batch(runtime, self.app, events, replays)
    except Exception as exc:
        cause = _outage(exc)
        if cause is None:
            # Not an event's fault (those are isolated inside) and not an outage: a bug or a
            # surprise. Dead-letter the batch durably now; the task would otherwise be acked as
            # failed.
            log.exception("batch %s failed; dead-lettering its %d events", batch_id, len(events))
            return _dead_letter_batch(runtime, events, batch_id, attempt, replays, error=exc)
        # The database or Redis is away (down, failing over, read-only): the transaction was
        # rolled back, so run the whole batch again later. Not a worker loss, so the attempt is
        # not counted against the batch; the idempotent audit insert and the forwards' sent keys
        # make the second run harmless.
        runtime.ledger.reset_attempts(batch_id)
        delay = INFRA_RETRY_DELAYS[min(self.request.retries, len(INFRA_RETRY_DELAYS) - 1)]
        metrics.CLASSIFY_OUTAGE_RETRIES.labels(cause).inc()
        log.warning(
            "batch %s: %s unavailable (%s: %s); retrying in %ss",
            batch_id,
            cause,
            type(exc).__name__,
            # libpq reports every server of a multi-host URL on a line of its own.
            " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:500],
            delay,
        )
        raise self.retry(exc=exc, countdown=delay) from exc
    runtime.ledger.settle([batch_id])
    return outcome


def _outage(exc: BaseException) -> str | None:
    """Which store ``exc`` says is unavailable ("database" or "redis"), or None for other errors."""
    if database_unavailable(exc):
        return "database"
    if isinstance(exc, RedisConnectionError | RedisTimeout | BrokerError | BatchPublishError):
        return "redis"
    return None


def classify_batch(
    runtime: Runtime, app: Any, wire_events: list[dict[str, Any]], replays: int = 0
) -> dict[str, int]:
    """Decide, forward, audit and count one batch; returns counts by outcome.

    Events left when CLASSIFY_TIME_BUDGET_SECONDS is spent go on in a new task (module docstring).
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

    # Every event that parsed is its host talking, whatever its rule does with it.
    record_seen(runtime.redis, [event for event, _ in decided])

    # Maintenance windows first: a suppressed alert neither opens a dedup window nor uses a
    # budget, and a downgraded one is counted as the ticket it became.
    classified = decided
    decided, held = maintenance_windows.apply(
        runtime.redis,
        2 * settings.reconcile_after,
        snapshot.maintenance_windows,
        decided,
    )
    # Between the decision and the forward queue: what is held back, and why.
    forwards, stormed, raised = hold_back(
        runtime, snapshot, [d for d in decided if d[0].correlation_id not in held]
    )
    held |= stormed

    # Forwards go out before the audit commits: a crash in between re-runs the batch, and the
    # forward's idempotency key stops a second post. The reverse order could lose an alert.
    shed = publish_forwards(runtime, app, forwards)
    # A dead-lettered (shed) alert waits for remediation; a deferred one is still on its way.
    held |= {cid: Held(SHED) for cid, mode in shed.items() if mode == "dlq"}

    write_started = time.perf_counter()
    version = snapshot.version_number
    with runtime.sessions.begin() as session:
        new = insert_audit_rows(
            session, [audit_row(e, d, held.get(e.correlation_id), version) for e, d in decided]
        )
        for wire, exc in failed:
            add_dead_letter(
                session,
                task_name=TASK_NAME,
                queue=QUEUE,
                payload={"events": [wire]},
                error=exc,
                backoff_base=settings.remediation_backoff_base,
                replays=replays,
                correlation_id=wire.get("correlation_id") if isinstance(wire, dict) else None,
            )
    committed = time.perf_counter()
    metrics.DB_WRITE_LATENCY.observe((committed - write_started) * 1000)

    _raise_meta_alerts(
        runtime, app, [e for e, d in decided if not d.matched and e.correlation_id in new]
    )
    _observe(decided, failed, new, started)
    count_held(held, new)
    maintenance_windows.count_downgraded(classified, decided, new)
    metrics.FLAPPING_ALERTS.labels("raised").inc(len(raised.keys() & new))
    if deferred:
        _defer(runtime, app, deferred, replays, budget)
    return {
        "audited": len(new),
        "duplicates": len(decided) - len(new),
        "dead_lettered": len(failed),
        "deferred": len(deferred),
    }


def hold_back(
    runtime: Runtime, snapshot: RuleSnapshot, decided: list[tuple[Event, Decision]]
) -> tuple[list[dict[str, Any]], dict[str, Held], dict[str, dict[str, Any]]]:
    """The storm stages: the alerts to forward now, the held events by correlation_id, and the
    flapping alerts this batch raised (by the correlation_id of the event that raised each; they
    are among the alerts to forward).

    In order: deduplication (:mod:`mutt_app.holdback.dedup`), flapping (:mod:`mutt_app.holdback.flapping`, which
    also watches the duplicates: a repeated LINK-DOWN after a LINK-UP is still a transition), then
    the storm budgets (:mod:`mutt_app.holdback.storms`), which count only what would reach Moog. Each stage
    keeps its state in Redis before the task acks, and a redelivered batch gets the same verdicts.
    """
    candidates = [
        (
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
    held = hold_duplicates(runtime, snapshot, candidates)
    flapping, raised = hold_flapping(runtime, snapshot, candidates, held)
    held |= flapping
    held |= hold_over_budget(runtime, [c for c in candidates if c[0].correlation_id not in held])
    forwards = [alert for event, _, alert in candidates if event.correlation_id not in held]
    return forwards + list(raised.values()), held, raised


def _spent_alone(budget: float) -> str:
    return (
        f"classifying this one event took longer than CLASSIFY_TIME_BUDGET_SECONDS ({budget}s);"
        " a rule is too slow for its message"
    )


def _defer(
    runtime: Runtime, app: Any, events: list[dict[str, Any]], replays: int, budget: float
) -> None:
    """Hand ``events`` on to a new classify task: in the ledger first, then on the broker."""
    batch_id = uuid.uuid4().hex
    runtime.ledger.record([Batch(batch_id, events)])
    app.send_task(
        TASK_NAME,
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


def publish_forwards(runtime: Runtime, app: Any, alerts: list[dict[str, Any]]) -> dict[str, str]:
    """Record ``alerts`` in the outbox, then publish them as forward_to_moog batches per lane.

    Each task carries up to ``moog_batch_size`` alerts of one lane (:func:`forward_batches`): pages
    batch only with pages, and go first. Under backpressure (:mod:`mutt_app.holdback.backpressure`)
    Ticket_only alerts are shed: dead-lettered (mode ``dlq``) or published with a delay
    (``defer``). Returns the shed alerts' external_id -> mode. The outbox entry (one per alert)
    outlives a message the broker loses (kombu issue 305); reconcile_ledger publishes it again.
    """
    if not alerts:
        return {}
    pressure = runtime.component(Backpressure.of).pressure()
    shed = {str(a["external_id"]): v for a in alerts if (v := shed_verdict(a, pressure))}
    if shed:
        _shed_to_dlq(runtime, [a for a in alerts if shed.get(str(a["external_id"])) == "dlq"])
        metrics.SHED_EVENTS.labels(pressure.mode).inc(len(shed))
        alerts = [a for a in alerts if shed.get(str(a["external_id"])) != "dlq"]
    if not alerts:
        return shed
    runtime.outbox.record([Batch(str(alert["external_id"]), [alert]) for alert in alerts])
    size = runtime.dynamic_config.get("moog_batch_size")
    now = [a for a in alerts if str(a["external_id"]) not in shed]
    later = [a for a in alerts if str(a["external_id"]) in shed]
    # One pooled connection and one Redis pipeline (kombu's Producer.batch) for the whole batch:
    # a round trip and a fresh redis client per message cost more than classifying the events.
    with app.producer_or_acquire() as producer, producer.batch():
        for group, countdown in ((now, None), (later, pressure.defer_seconds)):
            for queue, batch in forward_batches(group, size):
                app.send_task(
                    FORWARD_TASK,
                    args=[batch],
                    queue=queue,  # a page never queues behind tickets
                    countdown=countdown,
                    producer=producer,
                    declare=[],  # the forward workers declare their queues
                    argsrepr=f"({len(batch)} alerts)",  # not a repr() of the whole payload
                )
    return shed


def forward_batches(
    alerts: list[dict[str, Any]], size: int
) -> list[tuple[str, list[dict[str, Any]]]]:
    """``alerts`` as (lane queue, up to ``size`` alerts of that lane), pages first, order kept."""
    by_lane: dict[str, list[dict[str, Any]]] = {queue: [] for queue in lanes.QUEUES}
    for alert in alerts:
        by_lane[lanes.queue_for(alert)].append(alert)
    return [
        (queue, members[start : start + size])
        for queue, members in by_lane.items()
        for start in range(0, len(members), size)
    ]


def _shed_to_dlq(runtime: Runtime, alerts: list[dict[str, Any]]) -> None:
    """Write shed alerts as forward dead letters (error type ``shed``); remediation replays them."""
    if not alerts:
        return
    depth = runtime.component(Backpressure.of).pressure().depth
    with runtime.sessions.begin() as session:
        for alert in alerts:
            add_dead_letter(
                session,
                task_name=FORWARD_TASK,
                queue=lanes.queue_for(alert),
                payload={"alert": alert},
                error=f"shed: {lanes.TICKET_QUEUE} held {depth} messages",
                error_type="shed",
                backoff_base=runtime.settings.remediation_backoff_base,
                attempts=0,
                correlation_id=alert.get("external_id"),
            )
    log.warning("shed %d Ticket_only alerts to the dead-letter queue", len(alerts))


def _raise_meta_alerts(runtime: Runtime, app: Any, unmatched: list[Event]) -> None:
    settings = runtime.settings
    counter = UnhandledCounter(
        runtime.redis,
        settings.unhandled_prefix,
        settings.unhandled_threshold,
        settings.unhandled_expiry_seconds,
    )
    crossed = counter.add(Counter(e.hostname for e in unmatched))
    for hostname, count in crossed.items():
        payload = unhandled_meta_alert(
            hostname,
            count,
            team=settings.unhandled_default_team,
            window=settings.unhandled_expiry_seconds,
        )
        publish_forwards(runtime, app, [payload])
        metrics.META_ALERTS.inc()
        log.warning("meta-alert: %d unhandled events from %s", count, hostname)


def _observe(
    decided: list[tuple[Event, Decision]],
    failed: list[tuple[dict[str, Any], Exception]],
    new: set[str],
    started: float,
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
    for event, _ in decided:
        metrics.END_TO_END_LATENCY.observe((now - event.received_at).total_seconds())
    if failed:
        metrics.EVENTS_PROCESSED.labels("poison", "none").inc(len(failed))
        metrics.DEAD_LETTERED.labels(TASK_NAME, "classify_error").inc(len(failed))
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


def _dead_letter_batch(
    runtime: Runtime,
    events: list[dict[str, Any]],
    batch_id: str,
    attempt: int,
    replays: int,
    error: Exception | None = None,
) -> dict[str, int]:
    """Dead-letter every event of a batch, one item each, and settle the batch."""
    message: Exception | str = (
        error or f"batch {batch_id} was lost with its worker {attempt - 1} times"
    )
    reason = "task_error" if error else "worker_lost"
    with runtime.sessions.begin() as session:
        for wire in events:
            # One dead letter per event, so replaying them isolates the one that kills workers.
            add_dead_letter(
                session,
                task_name=TASK_NAME,
                queue=QUEUE,
                payload={"events": [wire]},
                error=message,
                error_type=None if error else "WorkerLost",
                backoff_base=runtime.settings.remediation_backoff_base,
                attempts=attempt if error else attempt - 1,
                replays=replays,
                correlation_id=wire.get("correlation_id") if isinstance(wire, dict) else None,
            )
    runtime.ledger.settle([batch_id])
    metrics.DEAD_LETTERED.labels(TASK_NAME, reason).inc(len(events))
    log.error("%s; its %d events are in the dead-letter queue", message, len(events))
    return {"audited": 0, "duplicates": 0, "dead_lettered": len(events)}
