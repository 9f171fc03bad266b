"""Each alert's delivery history: every attempt at posting it to Moog, and how it ended.

"Was this alert sent, when, and what did Moog say" is answered from here: one Redis list per alert
(``mutt:moog:history:<external_id>``), one JSON entry per attempt (time, HTTP status or error, the
forward task, the size of the batch it went in and, for a retry, the seconds until the next), the newest MAX_ENTRIES kept, the whole list
expiring MOOG_DELIVERY_HISTORY_SECONDS after its last attempt.

Redis rather than a table: the entries are written on the forward hot path, in the same pipeline that
records the alert as sent, so they cost no extra round trip and no database write per alert; and they
are needed for as long as a delivery can still be in question (retries, the DLQ's replays), not
forever: what MUTT decided about an event stays in the audit table, and an alert that could not pass
stays in the dead-letter table with its error. The default TTL is the sent key's (seven days).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from redis.client import Pipeline

PREFIX = "mutt:moog:history"
# The forward task's idempotency key per alert, set when Moog took it (kept SENT_TTL_SECONDS).
SENT_PREFIX = "mutt:moog:sent"
MAX_ENTRIES = 50

__all__ = [
    "MAX_ENTRIES",
    "PREFIX",
    "SENT_PREFIX",
    "entry",
    "queue_entries",
    "read",
    "report",
]


def entry(
    outcome: str,
    *,
    status: int | None = None,
    error: str = "",
    task_id: str = "",
    batch_size: int = 1,
    retry_in: float | None = None,
) -> dict[str, Any]:
    """One attempt: ``outcome`` is delivered, retry, rejected or dead_lettered. A retry that was
    scheduled has ``retry_in``, the seconds until the next attempt (backoff or Retry-After); a
    retry past MOOG_MAX_RETRIES has none (the dead letter follows)."""
    item = {
        "at": datetime.now(UTC).isoformat(),
        "outcome": outcome,
        "status": status,
        "error": error,
        "task_id": task_id,
        "batch_size": batch_size,
    }
    if retry_in is not None:
        item["retry_in"] = round(retry_in, 3)
    return item


def queue_entries(pipe: Pipeline, keys: Iterable[str], item: dict[str, Any], ttl: int) -> None:
    """Append ``item`` to the history of each alert in ``keys``, on ``pipe`` (not executed)."""
    data = orjson.dumps(item)
    for key in keys:
        name = f"{PREFIX}:{key}"
        pipe.rpush(name, data)
        pipe.ltrim(name, -MAX_ENTRIES, -1)
        pipe.expire(name, ttl)


def read(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    """The alert's attempts, oldest first (empty if none, or expired)."""
    return [orjson.loads(raw) for raw in client.lrange(f"{PREFIX}:{key}", 0, -1)]


def report(client: redis.Redis, key: str) -> dict[str, Any]:
    """Was the alert sent, when, and what did Moog say: its sent key and its attempts.

    ``sent_at`` is the time of the last delivered attempt still in the history.
    """
    pipe = client.pipeline(transaction=False)
    pipe.exists(f"{SENT_PREFIX}:{key}")
    pipe.lrange(f"{PREFIX}:{key}", 0, -1)
    sent, raw = pipe.execute()
    attempts = [orjson.loads(item) for item in raw]
    delivered = [a["at"] for a in attempts if a.get("outcome") == "delivered"]
    return {
        "correlation_id": key,
        "sent": bool(sent),
        "sent_at": delivered[-1] if delivered else None,
        "attempts": attempts,
    }
