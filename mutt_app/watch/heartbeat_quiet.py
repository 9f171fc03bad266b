"""The open quiet alerts of the heartbeats, as :mod:`mutt_app.watch.heartbeats` stores them, and
their listings (admin page, dashboard, API, CLI).

An open alert is a field ``<heartbeat id>:<host>`` of the hash :data:`QUIET_KEY` (its JSON value
the episode); :data:`OVER_CAP_KEY` holds, per heartbeat id, the quiet hosts the last check did not
alert because the heartbeat had HEARTBEAT_MAX_QUIET_HOSTS open. A heartbeat's states are bounded by
that cap, and :func:`quiet_hosts` answers a page: no listing grows with the number of hosts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import redis

QUIET_KEY = "mutt:heartbeats:quiet"
OVER_CAP_KEY = "mutt:heartbeats:overcap"


def iso(epoch_ms: int) -> str:
    """An epoch-milliseconds moment as ISO 8601 (UTC)."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat()


def quiet_keys(client: redis.Redis) -> list[str]:
    """The fields of the open quiet alerts (``<heartbeat id>:<host>``), unparsed."""
    return [key.decode() for key in client.hkeys(QUIET_KEY)]


def quiet_counts(client: redis.Redis) -> dict[int, int]:
    """Open quiet alerts per heartbeat id (the hash's field names only: no state is parsed)."""
    counts: dict[int, int] = {}
    for key in quiet_keys(client):
        watch_id = int(key.split(":", 1)[0])
        counts[watch_id] = counts.get(watch_id, 0) + 1
    return counts


def over_cap(client: redis.Redis) -> dict[int, int]:
    """Quiet hosts not alerted at the last check, per heartbeat id past its cap."""
    return {int(k): int(v) for k, v in client.hgetall(OVER_CAP_KEY).items()}


def quiet_hosts(
    client: redis.Redis,
    *,
    heartbeat_id: int | None = None,
    offset: int = 0,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """The open quiet alerts, longest quiet first: heartbeat id and name, host, last event (ISO,
    None if never heard from), quiet since (ISO: the last event, or when watching began) and
    when the alert was raised. Only heartbeat ``heartbeat_id``'s if given; a page of ``limit``
    from ``offset`` if ``limit`` is given (what is read is bounded by the cap, module docstring)."""
    if heartbeat_id is None:
        raws = client.hvals(QUIET_KEY)
    else:
        prefix = f"{heartbeat_id}:"
        fields = [k for k in quiet_keys(client) if k.startswith(prefix)]
        raws = client.hmget(QUIET_KEY, fields) if fields else []
    found = []
    for raw in raws:
        if raw is None:  # cleared between the two reads
            continue
        state = orjson.loads(raw)
        found.append(
            {
                "heartbeat_id": state["heartbeat_id"],
                "heartbeat": state["name"],
                "host": state["host"],
                "interval_minutes": state["interval_minutes"],
                "last_event": iso(state["since"]) if state["seen"] else None,
                "quiet_since": iso(state["since"]),
                "alerted_at": iso(state["raised_at"]),
            }
        )
    found.sort(key=lambda q: (q["quiet_since"], q["heartbeat_id"], q["host"]))
    return found[offset:] if limit is None else found[offset : offset + limit]
