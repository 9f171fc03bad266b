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
# Fewer than one window's new hosts (also with MUTT_TEST_DISTINCT_HOSTS): the cap is hit, and holds.
MAX_UNHANDLED_HOSTS = min(10_000, HOSTS // 2)


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def test_distinct_host_names_leave_no_redis_memory_once_the_windows_have_passed(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        UNHANDLED_EXPIRY_SECONDS=str(WINDOW_SECONDS),
        UNHANDLED_MAX_HOSTS=str(MAX_UNHANDLED_HOSTS),
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
    assert seen == HOSTS and 0 < counters <= 2 * MAX_UNHANDLED_HOSTS
    # Past the cap, hosts' events are not counted, and each window's first overflow is logged.
    assert stack.worker_metrics()["mutt_unhandled_hosts_overflow_total"] > 0
    assert f"over UNHANDLED_MAX_HOSTS ({MAX_UNHANDLED_HOSTS}) hosts" in stack.logs(lines=None)

    stack.start_beat()  # the heartbeat check, once a second, prunes the last-seen set
    page = stack.worker_metrics
    wait_for(
        lambda: client.zcard(LAST_SEEN_KEY) == 0 and not any(client.scan_iter("mutt:unhandled:*")),
        120,
        "last-seen hosts pruned and unhandled counters expired",
        interval=1,
    )
    after = _used(client)
    assert page()['mutt_heartbeat_last_seen_pruned_total{reason="aged"}'] == HOSTS
    assert "last seen: dropped" in stack.logs(lines=None)
    print(f"Redis used_memory after: {after / MB:.1f} MB")
    left = sorted(k.decode() for k in client.scan_iter(count=10_000))
    print(f"keys left ({len(left)}): {orjson.dumps(left[:40]).decode()}")
    # The growth the windows must undo (scaled for a run with fewer hosts).
    assert during - before > min(3 * MB, HOSTS * 100)
    assert after - before < 2 * MB, left
    assert len(left) < 100, left[:100]  # nothing per host survives
