"""Unmatched-event counters: one meta-alert per host per window, even with workers racing."""

from __future__ import annotations

import logging
import multiprocessing

import pytest
import redis

from mutt_app import metrics
from mutt_app.watch.unhandled_hosts import UnhandledCounter


def _count(url: str, host: str, times: int, threshold: int, results) -> None:  # type: ignore[no-untyped-def]
    counter = UnhandledCounter(redis.Redis.from_url(url), "mutt:unhandled", threshold, 60, 100)
    crossed = 0
    for _ in range(times):
        crossed += len(counter.add({host: 1}))
    results.put(crossed)


def test_threshold_raises_exactly_once_per_window(redis_client: redis.Redis) -> None:
    counter = UnhandledCounter(
        redis_client, "mutt:unhandled", threshold=5, window_seconds=60, max_hosts=100
    )
    assert counter.add({"h1": 4}) == {}
    assert counter.add({"h1": 1, "h2": 1}) == {"h1": 5}
    assert counter.add({"h1": 10}) == {}  # same window: nothing more
    assert redis_client.ttl("mutt:unhandled:triggered:h1") > 0
    assert counter.add({"h2": 3}) == {}


def test_a_new_window_counts_again(redis_client: redis.Redis) -> None:
    counter = UnhandledCounter(
        redis_client, "mutt:unhandled", threshold=2, window_seconds=60, max_hosts=100
    )
    assert counter.add({"h1": 2}) == {"h1": 2}
    redis_client.delete("mutt:unhandled:triggered:h1")  # the window expired
    assert counter.add({"h1": 1}) == {}
    assert counter.add({"h1": 1}) == {"h1": 2}


def test_two_workers_racing_raise_one_meta_alert(redis_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_count, args=(redis_url, "busy-host", 400, 500, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sorted(results.get(timeout=5) for _ in workers) == [0, 1]


def test_hosts_past_the_cap_are_not_counted_until_the_window_ends(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    counter = UnhandledCounter(
        redis_client, "mutt:unhandled", threshold=2, window_seconds=60, max_hosts=3
    )
    overflow = metrics.UNHANDLED_HOSTS_OVERFLOW._value.get()
    with caplog.at_level(logging.WARNING, "mutt_app.watch.unhandled_hosts"):
        assert counter.add({f"h{n}": 1 for n in range(5)}) == {}
        assert counter.add({"h0": 1, "h4": 5, "h5": 1}) == {"h0": 2}  # counted hosts count on
    assert sorted(k.decode() for k in redis_client.keys("mutt:unhandled:h*")) == [
        "mutt:unhandled:h1", "mutt:unhandled:h2",
    ]  # fmt: skip
    assert metrics.UNHANDLED_HOSTS_OVERFLOW._value.get() - overflow == 2 + 5 + 1
    assert [r.getMessage() for r in caplog.records if "UNHANDLED_MAX_HOSTS" in r.getMessage()] == [
        "unhandled events: over UNHANDLED_MAX_HOSTS (3) hosts in this 60 s window; events of"
        " further hosts (first: h3) are not counted until it ends"
    ]
    assert 0 < redis_client.ttl("mutt:unhandled::new-hosts") <= 60
    redis_client.delete("mutt:unhandled::new-hosts")  # the window ended
    assert counter.add({"h4": 2}) == {"h4": 2}
