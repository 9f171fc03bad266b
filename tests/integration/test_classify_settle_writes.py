"""classify_event's last-seen write goes with the batch's settle in the ledger: one MULTI, one round
trip, on a real PostgreSQL and Redis, whichever way the task ends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import redis.connection
from celery import Celery

from mutt_app.config import Settings
from mutt_app.ledger import Batch, Ledger
from mutt_app.runtime import Runtime
from mutt_app.tasks.classify import TASK_NAME
from mutt_app.watch.last_seen import LAST_SEEN_KEY
from tests.factories import wire_event


@pytest.fixture
def app(settings: Settings) -> Celery:
    app = Runtime(settings).celery
    app.loader.import_default_modules()  # the task modules, as a worker imports them
    return app


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[list[bytes]]]:
    """The command names of each packed send to Redis (one round trip each), in order."""
    sent: list[list[bytes]] = []
    original = redis.connection.AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        packed = b"".join(bytes(part) for part in command) if isinstance(command, list) else command
        # RESP: each command is *<n>\r\n$<len>\r\n<NAME>\r\n...; a name is the third line.
        sent.append([chunk.split(b"\r\n")[2] for chunk in packed.split(b"\r\n*")])
        original(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    yield sent


def _batch(ledger: Ledger, batch_id: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    wire = [
        wire_event("Core-SW-01", "still alive", severity=6, received_at=now),
        wire_event("edge-02", "still alive", severity=6, received_at=now),
    ]
    ledger.record([Batch(batch_id, wire)])
    return wire


def test_the_hosts_last_seen_go_with_the_settle_in_one_round_trip(
    app: Celery, redis_client: redis.Redis, sends: list[list[bytes]]
) -> None:
    ledger = Ledger(redis_client)
    wire = _batch(ledger, "seen-batch")
    sends.clear()
    assert app.tasks[TASK_NAME].apply(args=[wire, "seen-batch"]).get()["audited"] == 2
    assert [b"MULTI", b"ZADD", b"HDEL", b"ZREM", b"HDEL", b"EXEC"] in sends
    assert not [names for names in sends if names == [b"ZADD"]]  # no ZADD of its own
    assert redis_client.zscore(LAST_SEEN_KEY, "core-sw-01") is not None
    assert redis_client.zscore(LAST_SEEN_KEY, "edge-02") is not None
    assert ledger.depth() == 0


def test_a_batch_dead_lettered_by_a_failure_still_records_its_hosts(
    app: Celery, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> set[str]:
        raise RuntimeError("a bug after the decisions")

    monkeypatch.setattr("mutt_app.classify.batch.insert_audit_values", broken)
    ledger = Ledger(redis_client)
    wire = _batch(ledger, "broken-batch")
    outcome = app.tasks[TASK_NAME].apply(args=[wire, "broken-batch"]).get()
    assert outcome["dead_lettered"] == 2
    # Its hosts talked all the same; the settle that ends the batch carries their times.
    assert redis_client.zscore(LAST_SEEN_KEY, "core-sw-01") is not None
    assert redis_client.zscore(LAST_SEEN_KEY, "edge-02") is not None
    assert ledger.depth() == 0
