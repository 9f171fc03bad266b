"""The ingest publisher on a real Redis: concurrent requests share ledger writes and classify tasks."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from mutt_app.config import load_settings
from mutt_app.ledger import Batch
from mutt_app.runtime import Runtime
from mutt_app.tasks.classify import QUEUE
from mutt_app.web.ingest.endpoint import Ingestor
from mutt_app.web.ingest.publisher import BatchPublisher, PublishTimeout, QueueFull, plan_batches
from tests import broker_messages


def _wire(n: int) -> dict:
    return {"hostname": f"h{n}", "message": f"event {n}", "timestamp": "2026-12-01T10:00:00+00:00"}


@pytest.fixture
def ingestor(redis_url: str, tmp_path) -> Iterator[Ingestor]:  # type: ignore[no-untyped-def]
    settings = load_settings(
        {
            "REDIS_URL": redis_url,
            "MUTT_DATA_DIR": str(tmp_path),
            "CLASSIFY_BATCH_SIZE": "4",
            "MAX_INGEST_QUEUE_SIZE": "3",
        }
    )
    runtime = Runtime(settings)
    ingestor = Ingestor(runtime)
    yield ingestor
    ingestor.close()
    runtime.close()


def _queued(client: redis.Redis) -> list[list[dict]]:
    """The event lists of the classify tasks waiting in the queue, oldest first."""
    # classify_event's args are (events, batch_id).
    return [args[0] for args in broker_messages.queued_args(client, QUEUE)]


def _publisher(ingestor: Ingestor, send, linger: float = 0.0, published=None) -> BatchPublisher:  # type: ignore[no-untyped-def]
    return BatchPublisher(
        depth=ingestor.queue_depth,
        record=ingestor.ledger.record,
        forget=ingestor.ledger.forget,
        send=send,
        published=published or (lambda requests: None),
        batch_size=ingestor.settings.classify_batch_size,
        max_queue=lambda: ingestor.settings.max_ingest_queue_size,
        linger_seconds=linger,
        wait_seconds=10,
    )


def test_plan_batches_keeps_order_and_size() -> None:
    batches = plan_batches([[_wire(0)], [_wire(1), _wire(2), _wire(3), _wire(4)], [_wire(5)]], 4)
    assert [[e["hostname"] for e in b.events] for b in batches] == [
        ["h0", "h1", "h2", "h3"],
        ["h4", "h5"],
    ]
    assert len({b.batch_id for b in batches}) == 2
    assert plan_batches([], 4) == []


def test_a_lone_request_is_published_at_once(ingestor: Ingestor, redis_client) -> None:  # type: ignore[no-untyped-def]
    ingestor.publisher.submit([_wire(1)])
    assert _queued(redis_client) == [[_wire(1)]]
    assert ingestor.ledger.depth() == 1


def test_requests_arriving_during_a_round_share_the_next_one(
    ingestor: Ingestor,
    redis_client,  # type: ignore[no-untyped-def]
) -> None:
    first_round_started = threading.Event()
    release = threading.Event()
    rounds: list[int] = []

    def send(batches: list[Batch]) -> None:
        rounds.append(sum(len(b.events) for b in batches))
        if len(rounds) == 1:
            first_round_started.set()
            assert release.wait(10)
        ingestor.send(batches)

    published: list[int] = []
    publisher = _publisher(ingestor, send, published=published.append)
    first = threading.Thread(target=publisher.submit, args=([_wire(0)],))
    first.start()
    assert first_round_started.wait(10)
    # Six single-event requests arrive while the first round is still publishing.
    others = [threading.Thread(target=publisher.submit, args=([_wire(n)],)) for n in range(1, 7)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while len(publisher._pending) < 6 and time.monotonic() < deadline:  # all six waiting
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(10)

    assert rounds == [1, 6]
    assert published == [1, 6]  # requests per round, for the SLO counters
    queued = _queued(redis_client)
    # One task for the lone first event, then the six cut at CLASSIFY_BATCH_SIZE (4).
    assert [len(events) for events in queued] == [1, 4, 2]
    assert sorted(e["hostname"] for events in queued for e in events) == [f"h{n}" for n in range(7)]
    assert ingestor.ledger.depth() == 3


def test_a_full_queue_refuses_the_whole_round_and_records_nothing(
    ingestor: Ingestor,
    redis_client,  # type: ignore[no-untyped-def]
) -> None:
    redis_client.rpush(QUEUE, *[b"x"] * 4)  # over MAX_INGEST_QUEUE_SIZE (3)
    with pytest.raises(QueueFull):
        ingestor.publisher.submit([_wire(1)])
    assert ingestor.ledger.depth() == 0
    assert redis_client.llen(QUEUE) == 4


def test_the_queue_cap_follows_the_runtime_setting(ingestor: Ingestor, redis_client) -> None:  # type: ignore[no-untyped-def]
    redis_client.rpush(QUEUE, *[b"x"] * 4)  # over the static cap (3)
    ingestor.dynamic_config.set(
        "max_ingest_queue_size", 10
    )  # `mutt config set` / PUT /api/v2/config
    ingestor.publisher.submit([_wire(1)])
    assert redis_client.llen(QUEUE) == 5
    ingestor.dynamic_config.set("max_ingest_queue_size", 2)
    with pytest.raises(QueueFull):
        ingestor.publisher.submit([_wire(2)])


def test_a_failed_send_is_reported_to_every_request_and_forgotten(ingestor: Ingestor) -> None:
    failures = [redis.ConnectionError("broker went away")]

    def send(batches: list[Batch]) -> None:
        if failures:
            raise failures.pop()
        ingestor.send(batches)

    publisher = _publisher(ingestor, send)
    with pytest.raises(redis.ConnectionError, match="broker went away"):
        publisher.submit([_wire(1), _wire(2)])
    assert ingestor.ledger.depth() == 0
    # The publishing thread survives a failed round and serves the next request.
    publisher.submit([_wire(3)])
    assert ingestor.ledger.depth() == 1


def test_a_small_round_lingers_for_more_requests(ingestor: Ingestor, redis_client) -> None:  # type: ignore[no-untyped-def]
    publisher = _publisher(ingestor, ingestor.send, linger=1.0)
    first = threading.Thread(target=publisher.submit, args=([_wire(1)],))
    first.start()
    time.sleep(0.1)  # well inside the linger: the first request is still held
    assert redis_client.llen(QUEUE) == 0
    publisher.submit([_wire(2)])
    first.join(10)
    assert _queued(redis_client) == [[_wire(1), _wire(2)]]


def test_a_full_batch_does_not_linger(ingestor: Ingestor, redis_client) -> None:  # type: ignore[no-untyped-def]
    publisher = _publisher(ingestor, ingestor.send, linger=30.0)
    started = time.monotonic()
    publisher.submit([_wire(n) for n in range(4)])  # CLASSIFY_BATCH_SIZE events
    assert time.monotonic() - started < 10  # published at once, not after the 30 s linger
    assert [len(events) for events in _queued(redis_client)] == [4]


def test_a_batch_filled_by_several_lingering_requests_goes_at_once(
    ingestor: Ingestor, redis_client
) -> None:  # type: ignore[no-untyped-def]
    # The publishing thread sleeps through the linger unless a batch fills: the request that
    # fills it must wake it.
    publisher = _publisher(ingestor, ingestor.send, linger=30.0)
    first = threading.Thread(target=publisher.submit, args=([_wire(1), _wire(2)],))
    first.start()
    time.sleep(0.1)
    started = time.monotonic()
    publisher.submit([_wire(3), _wire(4)])  # CLASSIFY_BATCH_SIZE events in all
    first.join(10)
    assert time.monotonic() - started < 10
    assert _queued(redis_client) == [[_wire(1), _wire(2), _wire(3), _wire(4)]]


def test_a_request_not_answered_in_time_is_told_to_retry(ingestor: Ingestor) -> None:
    def stuck(batches):  # type: ignore[no-untyped-def]
        time.sleep(1.0)
        ingestor.send(batches)

    publisher = BatchPublisher(
        depth=ingestor.queue_depth,
        record=ingestor.ledger.record,
        forget=ingestor.ledger.forget,
        send=stuck,
        batch_size=ingestor.settings.classify_batch_size,
        max_queue=lambda: ingestor.settings.max_ingest_queue_size,
        wait_seconds=0.2,
    )
    with pytest.raises(PublishTimeout):
        publisher.submit([_wire(1)])
    # The round still ends (it tells no one twice), and the next request is served.
    publisher._wait_seconds = 10
    publisher.submit([_wire(2)])
