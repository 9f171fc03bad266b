"""Unmatched-event counters: one meta-alert per host per window, even with workers racing."""

from __future__ import annotations

import multiprocessing

import redis

from mutt_app.watch.unhandled_hosts import UnhandledCounter


def _count(url: str, host: str, times: int, threshold: int, results) -> None:  # type: ignore[no-untyped-def]
    counter = UnhandledCounter(redis.Redis.from_url(url), "mutt:unhandled", threshold, 60)
    crossed = 0
    for _ in range(times):
        crossed += len(counter.add({host: 1}))
    results.put(crossed)


def test_threshold_raises_exactly_once_per_window(redis_client: redis.Redis) -> None:
    counter = UnhandledCounter(redis_client, "mutt:unhandled", threshold=5, window_seconds=60)
    assert counter.add({"h1": 4}) == {}
    assert counter.add({"h1": 1, "h2": 1}) == {"h1": 5}
    assert counter.add({"h1": 10}) == {}  # same window: nothing more
    assert redis_client.ttl("mutt:unhandled:triggered:h1") > 0
    assert counter.add({"h2": 3}) == {}


def test_a_new_window_counts_again(redis_client: redis.Redis) -> None:
    counter = UnhandledCounter(redis_client, "mutt:unhandled", threshold=2, window_seconds=60)
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
