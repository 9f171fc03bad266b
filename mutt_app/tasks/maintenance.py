"""Beat jobs that keep MUTT healthy: ledger reconciliation and partitions."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from celery import Task, shared_task

from mutt_app import metrics
from mutt_app.celery_app import runtime_of
from mutt_app.partitions import ensure_partitions
from mutt_app.tasks.classify import QUEUE as CLASSIFY_QUEUE
from mutt_app.tasks.classify import TASK_NAME as CLASSIFY_TASK

log = logging.getLogger(__name__)


@shared_task(bind=True, name="mutt.reconcile_ledger", ignore_result=True)
def reconcile_ledger(self: Task, limit: int = 500) -> int:
    """Publish again the accepted batches whose audit never committed (a lost message)."""
    runtime = runtime_of(self.app)
    overdue = runtime.ledger.overdue(runtime.settings.reconcile_after, limit=limit)
    for batch in overdue:
        self.app.send_task(CLASSIFY_TASK, args=[batch.events, batch.batch_id], queue=CLASSIFY_QUEUE)
    runtime.ledger.touch([b.batch_id for b in overdue])
    if overdue:
        metrics.LEDGER_REPUBLISHED.inc(len(overdue))
        log.warning("republished %d accepted batches that were never audited", len(overdue))
    return len(overdue)


@shared_task(bind=True, name="mutt.create_partitions", ignore_result=True)
def create_partitions(self: Task) -> list[str]:
    """Ensure this month's and the next PARTITION_PRECREATE_MONTHS' audit partitions exist."""
    runtime = runtime_of(self.app)
    results = ensure_partitions(
        runtime.engine, datetime.now(UTC).date(), runtime.settings.partition_precreate_months
    )
    created = [r.name for r in results if r.created]
    if created:
        log.info("created partitions: %s", ", ".join(created))
    return created
