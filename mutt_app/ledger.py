"""The ledger of accepted batches: MUTT's own guarantee that an accepted event is never lost.

The Redis transport takes a message (BRPOP) and records it as unacked in two steps; a worker killed
between them loses the message (kombu issue 305). So the ingest endpoint records every batch here
before answering 2xx, classify_event settles the batch once its audit rows are committed, and a beat
job publishes again any batch left unsettled for longer than a redelivery could take. Audit inserts are
idempotent on correlation_id, so publishing a batch twice never audits an event twice.

The same ledger counts attempts per batch, so a batch that kills its worker every time
(``task_reject_on_worker_lost`` would requeue it forever) is dead-lettered after a few.

The forward step has the same hole, so classify_event records each alert it publishes in a second
ledger, the outbox (namespace ``mutt:outbox``, one "batch" per alert keyed by its external_id):
forward_to_moog settles the entry once the alert is delivered or dead-lettered and touches it on every
retry or deferral, so only an alert whose message was lost grows overdue. The entries stay one per
alert though a forward task carries a batch: an alert settles on its own outcome, and
reconcile_ledger batches the overdue ones again per lane.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.client import Pipeline

BATCHES = "mutt:ledger"
OUTBOX = "mutt:outbox"


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch of accepted events, as published to classify_event."""

    batch_id: str
    events: list[
        Any
    ]  # wire dicts, or their JSON as orjson.Fragment (see mutt_app.web.ingest.publisher)

    def to_json(self) -> bytes:
        return orjson.dumps({"batch_id": self.batch_id, "events": self.events})

    @classmethod
    def from_json(cls, data: bytes) -> Batch:
        decoded = orjson.loads(data)
        return cls(decoded["batch_id"], decoded["events"])


class Ledger:
    """Published-but-not-yet-finished batches, kept in Redis under ``namespace``."""

    def __init__(self, client: redis.Redis, namespace: str = BATCHES) -> None:
        self.client = client
        self.payloads = f"{namespace}:batches"
        self.index = f"{namespace}:index"
        self.attempts = f"{namespace}:attempts"

    def record(self, batches: Sequence[Batch], now: float | None = None) -> None:
        """Record ``batches`` atomically (all or none)."""
        now = time.time() if now is None else now
        pipe = self.client.pipeline(transaction=True)
        # As memoryviews, which redis-py sends as they are: its hiredis packer copies a bytes value
        # into a buffer twice its size, and for a batch of hundreds of events that allocation
        # (past glibc's mmap threshold) costs fresh pages on every write, more than the JSON.
        payloads = {b.batch_id: memoryview(b.to_json()) for b in batches}
        pipe.hset(self.payloads, mapping=payloads)
        pipe.zadd(self.index, {b.batch_id: now for b in batches})
        pipe.execute()

    def forget(self, batch_ids: Sequence[str]) -> None:
        """Drop batches that were never published (the publish failed and the client was told)."""
        self.settle(batch_ids)

    def start_attempt(self, batch_id: str) -> int:
        """Count one more attempt at ``batch_id``; returns the attempt number (1 for the first)."""
        return int(self.client.hincrby(self.attempts, batch_id, 1))

    def reset_attempts(self, batch_id: str, along: Pipeline | None = None) -> None:
        """The attempt ended normally (e.g. a retry was scheduled): it was not a worker loss.

        ``along``: a pipeline of writes queued to go first in the same round trip."""
        if along is None:
            self.client.hdel(self.attempts, batch_id)
            return
        along.hdel(self.attempts, batch_id)
        along.execute()

    def settle(self, batch_ids: Sequence[str], along: Pipeline | None = None) -> None:
        """The batches' audit rows are committed (or they were dead-lettered): forget them.

        ``along``: a transaction pipeline of writes queued to go first, in the same MULTI and round
        trip (classify's last-seen write); it is executed even when there is nothing to settle."""
        pipe = self.client.pipeline(transaction=True) if along is None else along
        if batch_ids:
            pipe.hdel(self.payloads, *batch_ids)
            pipe.zrem(self.index, *batch_ids)
            pipe.hdel(self.attempts, *batch_ids)
        pipe.execute()  # an empty pipeline makes no round trip

    def overdue(self, older_than: float, limit: int = 100, now: float | None = None) -> list[Batch]:
        """Unsettled batches recorded (or last republished) more than ``older_than`` seconds ago."""
        now = time.time() if now is None else now
        ids = self.client.zrangebyscore(self.index, "-inf", now - older_than, start=0, num=limit)
        if not ids:
            return []
        payloads = self.client.hmget(self.payloads, ids)
        found = []
        for batch_id, payload in zip(ids, payloads, strict=True):
            if payload is None:
                # Settled between the two reads, or recorded without payload: nothing to republish.
                self.client.zrem(self.index, batch_id)
                continue
            found.append(Batch.from_json(payload))
        return found

    def touch(self, batch_ids: Sequence[str], now: float | None = None) -> None:
        """Restart the overdue clock of republished batches."""
        now = time.time() if now is None else now
        if batch_ids:
            self.client.zadd(self.index, {batch_id: now for batch_id in batch_ids}, xx=True)

    def depth(self) -> int:
        """How many accepted batches are not yet settled."""
        return int(self.client.zcard(self.index))
