"""Celery's configuration for MUTT: the static options.

What depends on MUTT's settings (broker URL, visibility timeout, beat intervals) is filled in by
:func:`mutt_app.celery_app.make_celery` from the one Settings object, so nothing here reads the
environment. See https://docs.celeryq.dev/en/stable/userguide/configuration.html for each option.
"""

from kombu import Queue

from mutt_app.names import (
    CLASSIFY_QUEUE,
    CLASSIFY_TASK,
    EVENTS_CONTENT_TYPE,
    EVENTS_SERIALIZER,
    FORWARD_TASK,
    MAINTENANCE_QUEUE,
    PAGE_QUEUE,
    TASK_PREFIX,
    TICKET_QUEUE,
)

# --- queues ---------------------------------------------------------------------------------
# Classify and forward run on separate queues so that forward's rate limit and retries (which hold
# messages) never starve classification, and each can get its own workers. Forward has two lanes:
# pages (Page_and_ticket) on mutt.forward.page, the rest on mutt.forward; the publisher names the
# lane (mutt_app.forwarding.lanes), and every forward worker consumes both.
task_queues = tuple(
    Queue(name, routing_key=name)
    for name in (CLASSIFY_QUEUE, PAGE_QUEUE, TICKET_QUEUE, MAINTENANCE_QUEUE)
)
task_default_queue = CLASSIFY_QUEUE
task_routes = {
    # Every sender of a classify task (ingest, the ledger's reconcile, a replay, a batch handed on)
    # writes its events with MUTT's serializer (mutt_app.celery_app says why).
    CLASSIFY_TASK: {"queue": CLASSIFY_QUEUE, "serializer": EVENTS_SERIALIZER},
    FORWARD_TASK: {"queue": TICKET_QUEUE},
    f"{TASK_PREFIX}*": {"queue": MAINTENANCE_QUEUE},
}

# --- serialisation ----------------------------------------------------------------------------
task_serializer = "json"
result_serializer = "json"
accept_content = ["json", EVENTS_CONTENT_TYPE]

# --- reliability --------------------------------------------------------------------------------
# Ack after the task ran, not before: a worker killed mid-task leaves its message unacked, and the
# broker hands it to another worker once the visibility timeout has passed.
task_acks_late = True
# A worker process that dies (SIGKILL, OOM) requeues its message instead of acking it. A message that
# kills its worker every time would loop forever, so classify_event counts attempts per batch in
# Redis and dead-letters after ALERTER_MAX_RETRIES.
task_reject_on_worker_lost = True
# With acks_late every prefetched message is unacked while it waits in the worker; if it waited longer
# than the visibility timeout it would be delivered twice. One message per process keeps that wait
# to a single task's runtime (a classify task is a whole batch, up to CLASSIFY_BATCH_SIZE events, so
# throughput is fine).
worker_prefetch_multiplier = 1
# After a lost broker connection, unacked messages are redelivered; cancelling the running copies
# avoids working on both at once.
worker_cancel_long_running_tasks_on_connection_loss = True
broker_connection_retry_on_startup = True
task_track_started = False
# Results are not used: the audit log and Flower are where outcomes are seen.
task_ignore_result = True

# --- events for Flower ----------------------------------------------------------------------------
worker_send_task_events = True
# A "task-sent" event is a second Redis publish for every task sent, for a state Flower shows as
# "received" a moment later anyway (BENCHMARKS.md).
task_send_sent_event = False

# --- housekeeping --------------------------------------------------------------------------------------
# A prefork pool's only: the classify worker's solo processes (mutt_app/worker/shape.py) and the
# forward worker's threads are never recycled.
worker_max_tasks_per_child = 10_000
worker_hijack_root_logger = False
timezone = "UTC"
enable_utc = True
