"""Names MUTT shares across layers: tasks, queues, lanes, held reasons, roles.

The lowest layer: the ingest endpoint, the Celery configuration, the tasks, the dead-letter replay,
the metrics and the database models all spell these the same way by importing them from here.
Which queue a task goes to is decided once, by ``task_routes`` in ``celeryconfig.py``; a sender
names a queue only when it chooses a lane (page or ticket) at send time.
"""

from __future__ import annotations

__all__ = [
    "CHECK_HEARTBEATS_TASK",
    "CLASSIFY_QUEUE",
    "CLASSIFY_TASK",
    "CREATE_PARTITIONS_TASK",
    "DUPLICATE",
    "EVENTS_CONTENT_TYPE",
    "EVENTS_SERIALIZER",
    "FLAPPING",
    "FLUSH_HELD_TASK",
    "FORWARD_QUEUES",
    "FORWARD_TASK",
    "HELD_REASONS",
    "MAINTENANCE",
    "MAINTENANCE_QUEUE",
    "PAGE_HANDLING",
    "PAGE_QUEUE",
    "QUEUES",
    "RECONCILE_LEDGER_TASK",
    "REMEDIATE_DLQ_TASK",
    "RETENTION_TASK",
    "ROLES",
    "SHED",
    "STORM_BUDGET",
    "TASK_PREFIX",
    "TICKET_QUEUE",
    "WORK_QUEUES",
]

# --- Celery tasks -----------------------------------------------------------------------------
TASK_PREFIX = "mutt."
"""Every MUTT task's name starts with it (dead letters of old releases may omit it)."""
CLASSIFY_TASK = "mutt.classify_event"
FORWARD_TASK = "mutt.forward_to_moog"
REMEDIATE_DLQ_TASK = "mutt.remediate_dlq"
RECONCILE_LEDGER_TASK = "mutt.reconcile_ledger"
CREATE_PARTITIONS_TASK = "mutt.create_partitions"
RETENTION_TASK = "mutt.retention"
FLUSH_HELD_TASK = "mutt.flush_held"
CHECK_HEARTBEATS_TASK = "mutt.check_heartbeats"

# --- Celery queues ----------------------------------------------------------------------------
# Classify tasks' message bodies: the accepted events, the senders' JSON (mutt_app.celery_app).
EVENTS_SERIALIZER = "mutt-events"
EVENTS_CONTENT_TYPE = "application/x-mutt-events+json"

CLASSIFY_QUEUE = "mutt.classify"
PAGE_QUEUE = "mutt.forward.page"
"""The page lane: Page_and_ticket alerts, which never queue behind tickets."""
TICKET_QUEUE = "mutt.forward"
"""The ticket lane: every other alert (Ticket_only, meta-alerts, summaries)."""
MAINTENANCE_QUEUE = "mutt.maintenance"
FORWARD_QUEUES = (PAGE_QUEUE, TICKET_QUEUE)
"""The forward lanes, page first; every forward worker consumes both."""
WORK_QUEUES = (CLASSIFY_QUEUE, *FORWARD_QUEUES)
"""The queues whose depth the dashboard and the metrics show."""
QUEUES = (CLASSIFY_QUEUE, PAGE_QUEUE, TICKET_QUEUE, MAINTENANCE_QUEUE)

# --- lanes ------------------------------------------------------------------------------------
PAGE_HANDLING = "Page_and_ticket"
"""The handling that pages someone, and so travels on the page lane."""

# --- vocabularies stored in the database ------------------------------------------------------
ROLES = ("viewer", "operator", "admin")
"""Web UI and API key roles, least to most privileged."""
DUPLICATE = "duplicate"
STORM_BUDGET = "storm_budget"
FLAPPING = "flapping"
MAINTENANCE = "maintenance"
SHED = "shed"
HELD_REASONS = (DUPLICATE, STORM_BUDGET, FLAPPING, MAINTENANCE, SHED)
"""Why an event that its rule would forward was held back from Moog (``event_audit_log.held_reason``).

``duplicate``: a repeat of an alert forwarded within its dedup window (``duplicate_of`` names that
alert; :mod:`mutt_app.holdback.dedup`); ``storm_budget``: over a device's or rule's budget
(:mod:`mutt_app.holdback.storms`); ``flapping``: a flapping problem/clear pair
(:mod:`mutt_app.holdback.flapping`); ``maintenance``: suppressed by an open maintenance window
(:mod:`mutt_app.holdback.windows`); ``shed``: forward-queue backpressure
(:mod:`mutt_app.holdback.backpressure`). The dashboard's "held back" figures count these only.
"""
