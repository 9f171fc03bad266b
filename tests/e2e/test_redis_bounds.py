"""Redis memory stays bounded when a sender invents host names (real ingest, worker, beat, Redis).

Every event of a new host adds a member to the heartbeats' last-seen set and, when no rule matches
it, an unhandled counter. With short windows (UNHANDLED_EXPIRY_SECONDS, and the last-seen margin
past the longest heartbeat interval, none here) the memory goes back to where it started once they
have passed: the check prunes the set, the counters expire. The bound does not depend on how many
hosts were sent (a TTL per counter, a cutoff by time for the set); the issue's 100,000 take about
a minute here (MUTT_TEST_DISTINCT_HOSTS sets fewer for a quick run).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import orjson
import redis

from mutt_app.watch.heartbeats import LAST_SEEN_KEY
from tests.e2e.conftest import StackFactory
from tests.services import wait_for

HOSTS = int(os.environ.get("MUTT_TEST_DISTINCT_HOSTS", "100000"))
PER_BODY = 2000
WINDOW_SECONDS = 20  # longer than the sending takes, so "during" holds the counters
MB = 1024 * 1024


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def test_distinct_host_names_leave_no_redis_memory_once_the_windows_have_passed(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        UNHANDLED_EXPIRY_SECONDS=str(WINDOW_SECONDS),
        UNHANDLED_MAX_HOSTS=str(HOSTS),
        HEARTBEAT_CHECK_INTERVAL_SECONDS="1",
        HEARTBEAT_LAST_SEEN_MARGIN_SECONDS=str(WINDOW_SECONDS),
        CLASSIFY_TASK_EVENTS="false",
    )
    stack.start_ingest()
    stack.start_worker()
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    before = _used(client)
    print(f"\nRedis used_memory before: {before / MB:.1f} MB")

    now = datetime.now(UTC).isoformat()
    for start in range(0, HOSTS, PER_BODY):
        stack.post_events(
            [
                {"timestamp": now, "hostname": f"invented-{n:06d}.example", "message": "hello"}
                for n in range(start, min(start + PER_BODY, HOSTS))
            ]
        )
    stack.wait_audited(HOSTS, timeout=600)
    during = _used(client)
    seen = client.zcard(LAST_SEEN_KEY)
    counters = sum(1 for _ in client.scan_iter("mutt:unhandled:*", count=10_000))
    print(
        f"Redis used_memory during: {during / MB:.1f} MB ({seen} last-seen hosts, {counters} unhandled keys)"
    )
    assert seen == HOSTS and counters > 0

    stack.start_beat()  # the heartbeat check, once a second, prunes the last-seen set
    wait_for(
        lambda: client.zcard(LAST_SEEN_KEY) == 0 and not any(client.scan_iter("mutt:unhandled:*")),
        120,
        "last-seen hosts pruned and unhandled counters expired",
        interval=1,
    )
    after = _used(client)
    print(f"Redis used_memory after: {after / MB:.1f} MB")
    left = sorted(k.decode() for k in client.scan_iter(count=10_000))
    print(f"keys left ({len(left)}): {orjson.dumps(left[:40]).decode()}")
    assert during - before > 3 * MB  # the growth the windows must undo
    assert after - before < 2 * MB, left
    assert len(left) < 100, left[:100]  # nothing per host survives
