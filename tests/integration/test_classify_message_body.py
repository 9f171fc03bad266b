"""A classify task's message body: its events as the senders wrote them, whoever sends the task."""

from __future__ import annotations

import redis
from kombu.serialization import loads as decode_body

from mutt_app.config import Settings
from mutt_app.names import CLASSIFY_QUEUE, CLASSIFY_TASK, EVENTS_CONTENT_TYPE
from mutt_app.runtime import Runtime
from tests import broker_messages

# kombu's JSON decoder reads these as a datetime and bytes, and refuses the first.
MARKERS = [
    {"__type__": "bogus", "__value__": 1},
    {"__type__": "datetime", "__value__": "2026-12-06T14:00:00"},
    {"__type__": "bytes", "__value__": "aGk="},
]


def test_a_classify_task_sent_by_name_carries_its_events_verbatim(
    settings: Settings, redis_client: redis.Redis
) -> None:
    # As the ledger's reconcile, a dead-letter replay and a batch handed on send it: by name,
    # with the events as dicts (ingest's own send is covered end to end in test_hostile_ingest).
    runtime = Runtime(settings)
    events = [{"correlation_id": str(i), "raw": {"vendor": m}} for i, m in enumerate(MARKERS)]
    runtime.celery.send_task(CLASSIFY_TASK, args=[events, "batch-1"])

    envelope = broker_messages.envelope(redis_client.lindex(CLASSIFY_QUEUE, 0))
    assert envelope["content-type"] == EVENTS_CONTENT_TYPE
    # The worker's decoding: by content type, with the accept list the workers configure.
    args, _, _ = decode_body(
        broker_messages.body(envelope),
        envelope["content-type"],
        envelope["content-encoding"],
        accept=runtime.celery.conf.accept_content,
    )
    assert args == [events, "batch-1"]
