"""The heartbeats' last-seen set stays bounded: the check drops hosts silent past the longest
interval plus HEARTBEAT_LAST_SEEN_MARGIN_SECONDS (after its run could raise them), and the longest
silent past HEARTBEAT_LAST_SEEN_MAX_HOSTS; open alerts of dropped hosts stay open until they talk."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis

from mutt_app.config import Settings
from mutt_app.db.models import Heartbeat
from mutt_app.metrics import LAST_SEEN_HOSTS, LAST_SEEN_PRUNED
from mutt_app.runtime import Runtime
from mutt_app.watch import heartbeats, last_seen


def _seen(client: redis.Redis, host: str, minutes_ago: float) -> None:
    moment = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).timestamp() * 1000
    client.zadd(heartbeats.LAST_SEEN_KEY, {host: moment})


def _members(client: redis.Redis) -> set[str]:
    return {m.decode() for m in client.zrange(heartbeats.LAST_SEEN_KEY, 0, -1)}


def _pruned(reason: str) -> float:
    return LAST_SEEN_PRUNED.labels(reason)._value.get()


def test_hosts_silent_past_the_longest_interval_and_margin_or_over_the_cap_are_dropped(
    settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client.set(heartbeats.SINCE_KEY, int((time.time() - 3600) * 1000))
    runtime = Runtime(
        settings.model_copy(
            update={"heartbeat_last_seen_margin_seconds": 600, "heartbeat_last_seen_max_hosts": 6}
        )
    )
    with runtime.sessions.begin() as session:
        session.add(Heartbeat(name="edge", host="edge-*", interval_minutes=30))
        session.add(Heartbeat(name="short", host="core-1", interval_minutes=5))
    _seen(redis_client, "edge-old", 50)  # past 30 + 10 minutes: dropped after this run
    _seen(redis_client, "edge-quiet", 35)  # quiet, but kept
    for n in range(4):
        _seen(redis_client, f"edge-{n}", 1)
    sent: list[dict] = []
    aged, overflow = _pruned("aged"), _pruned("overflow")

    outcome = heartbeats.check(runtime, sent.extend)
    # Both quiet hosts were raised by the run that then dropped the older one.
    assert outcome.as_dict() == {"raised": 2, "cleared": 0, "quiet": 2}
    assert _members(redis_client) == {"edge-quiet", "edge-0", "edge-1", "edge-2", "edge-3"}
    assert (_pruned("aged") - aged, _pruned("overflow") - overflow) == (1, 0)
    assert LAST_SEEN_HOSTS._value.get() == 5

    # Its alert stays open, and is not raised again; when it talks, it is cleared.
    assert heartbeats.check(runtime, sent.extend).as_dict() == {
        "raised": 0, "cleared": 0, "quiet": 2,
    }  # fmt: skip
    _seen(redis_client, "edge-old", 0)
    assert heartbeats.check(runtime, sent.extend).as_dict() == {
        "raised": 0, "cleared": 1, "quiet": 1,
    }  # fmt: skip

    # Past the cap (6: edge-old is back), the longest silent go first, with a warning.
    for n in range(4, 6):
        _seen(redis_client, f"edge-{n}", 0.5)
    with caplog.at_level(logging.WARNING, "mutt_app.watch.heartbeats"):
        heartbeats.check(runtime, sent.extend)
    assert len(_members(redis_client)) == 6 and "edge-quiet" not in _members(redis_client)
    assert _pruned("overflow") - overflow == 2
    assert "over HEARTBEAT_LAST_SEEN_MAX_HOSTS (6): dropped the 2 longest silent" in caplog.text
    runtime.close()


def test_pruning_a_large_set_goes_in_slices_and_stops_at_the_cutoff(
    redis_client: redis.Redis,
) -> None:
    now = int(time.time() * 1000)
    old = {f"old-{n}": now - 3_600_000 - n for n in range(25_000)}
    fresh = {f"fresh-{n}": now - n for n in range(100)}
    redis_client.zadd(heartbeats.LAST_SEEN_KEY, {**old, **fresh})
    assert last_seen.prune_last_seen(redis_client, now - 60_000, 1_000_000) == (25_000, 0)
    assert redis_client.zcard(heartbeats.LAST_SEEN_KEY) == 100
    assert last_seen.prune_last_seen(redis_client, now - 60_000, 40) == (0, 60)
    assert _members(redis_client) == {f"fresh-{n}" for n in range(40)}
