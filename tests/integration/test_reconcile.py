"""reconcile_ledger on a real Redis: what the broker lost is published again, and only that."""

from __future__ import annotations

import time

import redis

from mutt_app.config import Settings
from mutt_app.ledger import OUTBOX, Batch, Ledger
from mutt_app.runtime import Runtime
from tests import broker_messages


def _queued(client: redis.Redis, queue: str) -> list[tuple[str, list]]:
    """(task name, args) of the messages waiting in a Celery queue on the Redis transport."""
    return [
        (broker_messages.envelope(raw)["headers"]["task"], broker_messages.task_args(raw))
        for raw in client.lrange(queue, 0, -1)
    ]


def test_overdue_batches_and_alerts_are_published_again(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings).celery
    app.loader.import_default_modules()  # the task modules, as a worker imports them
    long_ago = time.time() - settings.ledger_reconcile_after - 60
    Ledger(redis_client).record([Batch("lost-batch", [{"message": "lost"}])], now=long_ago)
    Ledger(redis_client).record([Batch("fresh-batch", [{"message": "fresh"}])])
    alert = {"external_id": "a-1", "signature": "s"}
    Ledger(redis_client, OUTBOX).record([Batch("a-1", [alert])], now=long_ago)
    Ledger(redis_client, OUTBOX).record([Batch("a-2", [{"external_id": "a-2"}])])

    republished = app.tasks["mutt.reconcile_ledger"].apply().get()

    assert republished == 2
    assert _queued(redis_client, "mutt.classify") == [
        ("mutt.classify_event", [[{"message": "lost"}], "lost-batch"])
    ]
    assert _queued(redis_client, "mutt.forward") == [
        ("mutt.forward_to_moog", [[alert]])
    ]  # a batch of one
    # Republishing restarts the clock: the next run does not publish them a second time.
    assert app.tasks["mutt.reconcile_ledger"].apply().get() == 0


def test_outbox_and_batch_ledger_do_not_share_entries(redis_client: redis.Redis) -> None:
    Ledger(redis_client, OUTBOX).record([Batch("x", [{}])])
    assert Ledger(redis_client).depth() == 0
    assert Ledger(redis_client, OUTBOX).depth() == 1
