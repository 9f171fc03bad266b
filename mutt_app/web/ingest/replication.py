"""Accepted means replicated: a round's writes are acknowledged by enough replicas before its 2xx.

Redis replicates asynchronously: a master killed right after answering loses what its replica had
not yet received, and Sentinel promotes that replica. WAIT blocks until the replicas acknowledged
every write the *calling connection* made before it, measured by the master's global replication
offset. The ledger record and the broker send of a round go over other connections, so one small
write is made on the WAIT's own connection after them: its offset is past both, and its
acknowledgement covers them. The two go in one pipeline without MULTI: inside MULTI, WAIT does not
block (Redis 7.0 answers at once with the replicas already caught up).
"""

from __future__ import annotations

import logging
import time

import redis

from mutt_app import metrics

log = logging.getLogger(__name__)

MARK_KEY = "mutt:ingest:replicated_at"


class ReplicationShortfall(Exception):
    """Fewer replicas than INGEST_MIN_REPLICAS acknowledged a round in time; answer 503."""

    def __init__(self, acknowledged: int, required: int) -> None:
        super().__init__(f"{acknowledged} of {required} replicas acknowledged the writes")
        self.acknowledged = acknowledged
        self.required = required


def confirm_replicated(client: redis.Redis, replicas: int, timeout_ms: int) -> int:
    """Wait until ``replicas`` replicas have every write made so far; return how many did.

    Raises :class:`ReplicationShortfall` (after counting and logging it) when fewer did within
    ``timeout_ms``. ``replicas`` 0 returns at once without asking Redis.
    """
    if replicas <= 0:
        return 0
    pipe = client.pipeline(transaction=False)
    pipe.set(MARK_KEY, repr(time.time()))
    pipe.execute_command("WAIT", replicas, timeout_ms)
    acknowledged = int(pipe.execute()[-1])
    if acknowledged < replicas:
        metrics.INGEST_REPLICATION_SHORTFALL.inc()
        log.warning(
            "only %d of %d replicas acknowledged a publishing round within %d ms: its requests "
            "are answered 503 (the events stay in the ledger on the master)",
            acknowledged,
            replicas,
            timeout_ms,
        )
        raise ReplicationShortfall(acknowledged, replicas)
    return acknowledged
