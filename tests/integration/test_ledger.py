"""The ledger of accepted batches on a real Redis: record, settle, overdue, attempts."""

from __future__ import annotations

import orjson
import redis

from mutt_app.ledger import Batch, Ledger


def _batch(n: int) -> Batch:
    return Batch(f"b{n}", [{"message": f"event {n}"}])


def test_recorded_batches_become_overdue_until_settled(redis_client: redis.Redis) -> None:
    ledger = Ledger(redis_client)
    ledger.record([_batch(1), _batch(2)], now=1000.0)
    assert ledger.depth() == 2
    assert ledger.overdue(60, now=1030.0) == []
    assert [b.batch_id for b in ledger.overdue(60, now=1100.0)] == ["b1", "b2"]

    ledger.settle(["b1"])
    overdue = ledger.overdue(60, now=1100.0)
    assert [(b.batch_id, b.events) for b in overdue] == [("b2", [{"message": "event 2"}])]


def test_touch_restarts_the_overdue_clock(redis_client: redis.Redis) -> None:
    ledger = Ledger(redis_client)
    ledger.record([_batch(1)], now=1000.0)
    ledger.touch(["b1"], now=1090.0)
    assert ledger.overdue(60, now=1100.0) == []
    assert len(ledger.overdue(60, now=1200.0)) == 1


def test_touch_does_not_resurrect_a_settled_batch(redis_client: redis.Redis) -> None:
    ledger = Ledger(redis_client)
    ledger.record([_batch(1)], now=1000.0)
    ledger.settle(["b1"])
    ledger.touch(["b1"], now=1090.0)
    assert ledger.depth() == 0


def test_attempts_count_until_settled_or_reset(redis_client: redis.Redis) -> None:
    ledger = Ledger(redis_client)
    assert [ledger.start_attempt("b1") for _ in range(3)] == [1, 2, 3]
    ledger.reset_attempts("b1")
    assert ledger.start_attempt("b1") == 1
    ledger.settle(["b1"])
    assert ledger.start_attempt("b1") == 1


def test_a_recorded_batch_is_stored_as_its_json_byte_for_byte(redis_client: redis.Redis) -> None:
    # Payloads go to Redis as memoryviews (sent without a copy): what lands is to_json() exactly,
    # for a batch of wire JSON fragments as ingest records it and for one of dicts.
    ledger = Ledger(redis_client)
    events = [orjson.Fragment(orjson.dumps({"message": f"event {n}", "n": n})) for n in range(2000)]
    batches = [Batch("big", events), _batch(1)]
    ledger.record(batches, now=1000.0)
    for batch in batches:
        assert redis_client.hget(ledger.payloads, batch.batch_id) == batch.to_json()
    assert {b.batch_id: b.events for b in ledger.overdue(60, now=1100.0)} == {
        "big": [orjson.loads(orjson.dumps(e)) for e in events],
        "b1": [{"message": "event 1"}],
    }
