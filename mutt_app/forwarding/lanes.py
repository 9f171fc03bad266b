"""Forward lanes: a page (Page_and_ticket) never waits behind tickets, retries or a storm.

Each alert travels on the Celery queue of its lane: pages on ``mutt.forward.page``, everything else
(Ticket_only, meta-alerts) on ``mutt.forward``. The lane is derived from the alert payload itself
(``custom_info.handling``, set by :func:`mutt_app.forwarding.moog.build_payload`), so every path that publishes
an alert (classify, retries and deferrals, ledger reconciliation, dead-letter replay) agrees on it
without carrying anything else.

Every forward worker consumes both lanes. Kombu's Redis transport issues one BRPOP over the worker's
queues and moves the queue it just took a message from to the end of the list (its default
``round_robin`` order), so a page waiting on its lane is taken at the worker's next fetch, after at
most one ticket. Pages also hold a reserved share of the cluster-wide Moog rate limit
(``moog_page_reserved_share``): tickets may fill only the rest of a window, so a ticket backlog never
leaves a page without a slot.
"""

from __future__ import annotations

import math
from typing import Any

from mutt_app.ledger import Batch
from mutt_app.names import FORWARD_QUEUES as QUEUES
from mutt_app.names import FORWARD_TASK, PAGE_HANDLING, PAGE_QUEUE, TICKET_QUEUE
from mutt_app.runtime import Runtime

__all__ = [
    "FORWARD_TASK",
    "PAGE_QUEUE",
    "QUEUES",
    "TICKET_QUEUE",
    "forward_batches",
    "is_page",
    "queue_for",
    "reserved_slots",
    "send",
]


def is_page(alert: Any) -> bool:
    """Whether ``alert`` (a Moog payload) pages someone: its handling is Page_and_ticket."""
    info = alert.get("custom_info") if isinstance(alert, dict) else None
    return isinstance(info, dict) and info.get("handling") == PAGE_HANDLING


def queue_for(alert: Any) -> str:
    """The forward queue of ``alert``'s lane."""
    return PAGE_QUEUE if is_page(alert) else TICKET_QUEUE


def reserved_slots(limit: int, share: float) -> int:
    """Slots of each rate-limit window that only pages may take: ``floor(limit x share)``.

    Tickets always keep at least one slot, so a large share on a small limit cannot stop them.
    """
    return max(0, min(math.floor(limit * share), limit - 1))


def forward_batches(
    alerts: list[dict[str, Any]], size: int
) -> list[tuple[str, list[dict[str, Any]]]]:
    """``alerts`` as (lane queue, up to ``size`` alerts of that lane), pages first, order kept."""
    by_lane: dict[str, list[dict[str, Any]]] = {queue: [] for queue in QUEUES}
    for alert in alerts:
        by_lane[queue_for(alert)].append(alert)
    return [
        (queue, members[start : start + size])
        for queue, members in by_lane.items()
        for start in range(0, len(members), size)
    ]


def send(
    runtime: Runtime, app: Any, alerts: list[dict[str, Any]], later: float | None = None
) -> None:
    """Record ``alerts`` in the outbox, then publish them as forward_to_moog batches per lane.

    Each task carries up to ``moog_batch_size`` alerts of one lane: pages batch only with pages,
    and go first. ``later`` delays them that many seconds. The outbox entry (one per alert)
    outlives a message the broker loses (kombu issue 305); reconcile_ledger publishes it again.
    """
    if not alerts:
        return
    runtime.outbox.record([Batch(str(alert["external_id"]), [alert]) for alert in alerts])
    size = runtime.dynamic_config.get("moog_batch_size")
    # One pooled connection and one Redis pipeline (kombu's Producer.batch) for the whole batch:
    # a round trip and a fresh redis client per message cost more than classifying the events.
    with app.producer_or_acquire() as producer, producer.batch():
        for queue, batch in forward_batches(alerts, size):
            app.send_task(
                FORWARD_TASK,
                args=[batch],
                queue=queue,  # a page never queues behind tickets
                countdown=later,
                producer=producer,
                declare=[],  # the forward workers declare their queues
                argsrepr=f"({len(batch)} alerts)",  # not a repr() of the whole payload
            )
