"""The ingest app on a real Redis: one client's hostile body is that client's problem alone.

Requests of one process share a publishing round (mutt_app.web.ingest.publisher); an item that cannot be
written must be rejected with its index before it joins one, not fail the round for everybody.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis
from flask import Flask

from mutt_app.config import Settings
from mutt_app.ledger import BATCHES, Batch
from mutt_app.tasks.classify import QUEUE
from mutt_app.web import create_ingest_app
from tests import broker_messages
from tests.factories import posted_event

NOW = "2026-12-01T10:00:00+00:00"
DEEP = b"[" * 300 + b"]" * 300  # orjson reads up to 1024 levels but writes only 254


@pytest.fixture
def ingest_app(settings: Settings) -> Iterator[Flask]:
    # A long linger: the concurrent requests below certainly share their rounds.
    app = create_ingest_app(settings.model_copy(update={"ingest_linger_ms": 300.0}))
    try:
        yield app
    finally:
        app.extensions["mutt_ingest"].redis.close()


def _hostile_body(n: int) -> bytes:
    ok = orjson.dumps(posted_event(f"hostile ok {n}", timestamp=NOW))
    deep = (
        b'{"timestamp":"' + NOW.encode() + b'","hostname":"h","message":"deep","d":' + DEEP + b"}"
    )
    nul = orjson.dumps(posted_event("nul\x00inside", timestamp=NOW))
    return b"[" + ok + b"," + deep + b"," + nul + b"]"


def _queued(client: redis.Redis) -> list[dict]:
    """The events of every classify task waiting in the queue."""
    return [e for raw in client.lrange(QUEUE, 0, -1) for e in broker_messages.task_args(raw)[0]]


def test_an_unwritable_item_is_its_requests_rejection_not_a_failed_round(
    ingest_app: Flask, redis_client: redis.Redis
) -> None:
    answers: dict[str, list] = {"clean": [], "hostile": []}
    lock = threading.Lock()

    def post(kind: str, body: bytes) -> None:
        response = ingest_app.test_client().post(
            "/api/v2/ingest", data=body, content_type="application/json"
        )
        with lock:
            answers[kind].append((response.status_code, response.json))

    threads = [
        threading.Thread(target=post, args=("hostile", _hostile_body(n))) for n in range(3)
    ] + [
        threading.Thread(
            target=post, args=("clean", orjson.dumps(posted_event(f"clean {n}", timestamp=NOW)))
        )
        for n in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert [status for status, _ in answers["clean"]] == [200] * 12, answers["clean"]
    for status, answer in answers["hostile"]:
        assert status == 200, answer
        assert answer["accepted"] == 1
        assert answer["rejected"] == [
            {"index": 1, "error": "item is nested too deeply to store"},
            {"index": 2, "error": "item holds a NUL character (U+0000), which cannot be stored"},
        ]
    # Everything accepted, and nothing else, is on the broker and in the ledger.
    queued = sorted(e["message"] for e in _queued(redis_client))
    expected = sorted([f"clean {n}" for n in range(12)] + [f"hostile ok {n}" for n in range(3)])
    assert queued == expected
    ledgered = [Batch.from_json(p) for p in redis_client.hvals(f"{BATCHES}:batches")]
    assert sorted(e["message"] for b in ledgered for e in b.events) == expected


def test_the_ledger_and_the_task_carry_the_events_wire_form(
    ingest_app: Flask, redis_client: redis.Redis
) -> None:
    cid = str(uuid.uuid4())
    item = posted_event(
        "link down", correlation_id=cid, vendor={"nested": [1, 2.5, "é", None]}, timestamp=NOW
    )
    response = ingest_app.test_client().post("/api/v2/ingest", json=[item])
    assert response.status_code == 200, response.json
    (queued,) = _queued(redis_client)
    (payload,) = redis_client.hvals(f"{BATCHES}:batches")
    (ledgered,) = Batch.from_json(payload).events
    assert queued == ledgered
    assert queued["correlation_id"] == cid and queued["raw"] == item
    assert queued["received_at"].endswith("+00:00") and queued["syslog_severity"] is None


def test_a_duplicate_correlation_id_in_a_body_is_rejected_with_its_index(
    ingest_app: Flask, redis_client: redis.Redis
) -> None:
    cid = str(uuid.uuid4())
    body = [
        posted_event("first", correlation_id=cid, timestamp=NOW),
        posted_event("second", correlation_id=cid, timestamp=NOW),
    ]
    response = ingest_app.test_client().post("/api/v2/ingest", json=body)
    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 1 and response.json["correlation_ids"] == [cid]
    assert response.json["rejected"] == [
        {"index": 1, "error": f"duplicate correlation_id {cid} (also item 0)"}
    ]
    assert [e["message"] for e in _queued(redis_client)] == ["first"]


def test_a_body_one_byte_over_the_cap_is_413_and_nothing_is_accepted(
    settings: Settings, redis_client: redis.Redis
) -> None:
    line = orjson.dumps(posted_event("x", timestamp=NOW)) + b"\n"
    limit = len(line) * 10
    app = create_ingest_app(settings.model_copy(update={"max_ingest_body_bytes": limit}))
    try:
        client = app.test_client()
        body = (line * 11)[: limit + 1]
        assert client.post("/api/v2/ingest", data=body).status_code == 413
        assert client.post("/api/v2/ingest", data=line * 10).status_code == 200
    finally:
        app.extensions["mutt_ingest"].redis.close()
    assert len(_queued(redis_client)) == 10
