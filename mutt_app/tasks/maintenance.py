"""Beat jobs that keep MUTT healthy: ledger reconciliation, the alerts of closed windows (dedup
updates, storm summaries, flapping ends), heartbeats, partitions, retention."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celery import shared_task

from mutt_app import metrics
from mutt_app.db import retention
from mutt_app.db.partitions import ensure_partitions
from mutt_app.forwarding.lanes import forward_batches
from mutt_app.holdback import pipeline
from mutt_app.holdback.base import HEARTBEAT
from mutt_app.names import (
    CHECK_HEARTBEATS_TASK,
    CLASSIFY_TASK,
    CREATE_PARTITIONS_TASK,
    FLUSH_HELD_TASK,
    FORWARD_TASK,
    RECONCILE_LEDGER_TASK,
    RETENTION_TASK,
)
from mutt_app.runtime import RuntimeTask
from mutt_app.watch import heartbeats

log = logging.getLogger(__name__)


@shared_task(bind=True, name=RECONCILE_LEDGER_TASK, ignore_result=True)
def reconcile_ledger(self: RuntimeTask, limit: int = 500) -> int:
    """Publish again what the broker lost: accepted batches never audited, alerts never finished."""
    runtime = self.runtime
    older_than = runtime.settings.ledger_reconcile_after
    batches = runtime.ledger.overdue(older_than, limit=limit)
    for batch in batches:
        self.app.send_task(CLASSIFY_TASK, args=[batch.events, batch.batch_id])
    runtime.ledger.touch([b.batch_id for b in batches])
    alerts = runtime.outbox.overdue(older_than, limit=limit)
    # An outbox entry holds the alert itself ([alert]): batched again per lane, as classify does.
    lost = [alert for entry in alerts for alert in entry.events if isinstance(alert, dict)]
    for queue, batch in forward_batches(lost, runtime.dynamic_config.get("moog_batch_size")):
        self.app.send_task(FORWARD_TASK, args=[batch], queue=queue)
    runtime.outbox.touch([entry.batch_id for entry in alerts])
    if batches:
        metrics.LEDGER_REPUBLISHED.labels("classify").inc(len(batches))
        log.warning("republished %d accepted batches that were never audited", len(batches))
    if alerts:
        metrics.LEDGER_REPUBLISHED.labels("forward").inc(len(alerts))
        log.warning("republished %d alerts whose forward task was lost", len(alerts))
    return len(batches) + len(alerts)


@shared_task(bind=True, name=CREATE_PARTITIONS_TASK, ignore_result=True)
def create_partitions(self: RuntimeTask) -> list[str]:
    """Ensure this month's and the next PARTITION_PRECREATE_MONTHS' audit partitions exist."""
    runtime = self.runtime
    results = ensure_partitions(
        runtime.engine, datetime.now(UTC).date(), runtime.settings.partition_precreate_months
    )
    created = [r.name for r in results if r.created]
    if created:
        log.info("created partitions: %s", ", ".join(created))
    return created


@shared_task(bind=True, name=RETENTION_TASK, ignore_result=True)
def retention_job(self: RuntimeTask) -> dict[str, object]:
    """Archive, verify and remove what is past retention (see :mod:`mutt_app.db.retention`)."""
    runtime = self.runtime
    try:
        report = retention.run(runtime.engine, runtime.settings)
    except retention.RetentionBusy as exc:
        log.info("retention skipped: %s", exc)
        return {"skipped": str(exc)}
    log.info(
        "retention: %d partitions dropped, rows archived %s, %d failures",
        len(report.partitions_dropped),
        report.rows_archived or "{}",
        len(report.failures),
    )
    return {
        "partitions_dropped": report.partitions_dropped,
        "rows_archived": report.rows_archived,
        "failures": report.failures,
    }


@shared_task(bind=True, name=FLUSH_HELD_TASK, ignore_result=True)
def flush_held(self: RuntimeTask) -> dict[str, int]:
    """Send, via the outbox, what the hold-back windows that closed held back
    (:func:`mutt_app.holdback.pipeline.flush`)."""
    return pipeline.flush(self.runtime, self.app)


@shared_task(bind=True, name=CHECK_HEARTBEATS_TASK, ignore_result=True)
def check_heartbeats(self: RuntimeTask) -> dict[str, int]:
    """Alert once for each watched host gone quiet, clear once when it talks again (only an
    alert Moog got: ``to_moog`` answers what it held), via the outbox
    (:mod:`mutt_app.watch.heartbeats`). A failure (Redis, the database) fails this run, and the next
    run does the same work: nothing is recorded before its alerts are in the outbox."""
    runtime = self.runtime
    outcome = heartbeats.check(
        runtime, lambda alerts: pipeline.to_moog(runtime, self.app, alerts, HEARTBEAT).held
    )
    if outcome.raised or outcome.cleared:
        log.info("heartbeats: %s", outcome.as_dict())
    return outcome.as_dict()
