"""The cluster-wide rate limiter and circuit breaker, on a real Redis."""

from __future__ import annotations

import itertools
import time
import uuid

import redis

from mutt_app.forwarding.breaker import CircuitBreaker
from mutt_app.forwarding.lanes import reserved_slots
from mutt_app.forwarding.limiter import RateLimiter


def test_rate_limiter_admits_limit_then_says_how_long_to_wait(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, "mutt:rate_limit:test")
    waits = [limiter.acquire(5, 1.0, uuid.uuid4().hex) for _ in range(7)]
    assert waits[:5] == [0.0] * 5
    assert 0 < waits[5] <= 1.0  # when the oldest slot frees
    assert abs(waits[6] - waits[5] - 0.2) < 0.05  # the next turn, one slot-interval later
    time.sleep(waits[5] + 0.01)
    assert limiter.acquire(5, 1.0, uuid.uuid4().hex) == 0.0


def test_a_backlog_is_spread_over_turns_and_waits_are_capped(redis_client: redis.Redis) -> None:
    # 10 per second: 40 refused requests come back one per 0.1 s, not all together; none is told to
    # wait longer than longest_wait (a longer deferral is decided again, not held as one countdown).
    limiter = RateLimiter(redis_client, "mutt:rate_limit:line")
    for _ in range(10):
        assert limiter.acquire(10, 1.0, uuid.uuid4().hex) == 0.0
    waits = [limiter.acquire(10, 1.0, uuid.uuid4().hex, longest_wait=3.0) for _ in range(40)]
    turns = waits[:15]
    assert all(0.08 < b - a < 0.12 for a, b in itertools.pairwise(turns))
    assert max(waits) == 3.0 and waits[-1] == 3.0


def test_rate_limiter_holds_a_slot_until_the_request_finishes(redis_client: redis.Redis) -> None:
    # A request still in flight when its period ends may reach Moog late: its slot stays taken.
    limiter = RateLimiter(redis_client, "mutt:rate_limit:flight")
    slow, quick = uuid.uuid4().hex, uuid.uuid4().hex
    assert limiter.acquire(2, 0.2, slow, flight=5) == 0.0
    assert limiter.acquire(2, 0.2, quick, flight=5) == 0.0
    limiter.finish(quick)
    time.sleep(0.25)
    assert limiter.acquire(2, 0.2, uuid.uuid4().hex, flight=5) == 0.0  # quick's slot aged out
    assert limiter.acquire(2, 0.2, uuid.uuid4().hex, flight=5) > 0  # slow is still in flight
    limiter.finish(slow)
    time.sleep(0.25)
    assert limiter.acquire(2, 0.2, uuid.uuid4().hex, flight=5) == 0.0


def test_rate_limiter_window_is_shared_between_clients(redis_url: str) -> None:
    limiters = [
        RateLimiter(redis.Redis.from_url(redis_url), "mutt:rate_limit:shared") for _ in "ab"
    ]
    admitted = sum(limiters[i % 2].acquire(10, 5.0, uuid.uuid4().hex) == 0.0 for i in range(30))
    assert admitted == 10


def test_tickets_alone_never_take_the_pages_reserved_share(redis_client: redis.Redis) -> None:
    # 50 a window, 10 kept for pages: a ticket flood fills 40, the pages still get all 10 at once.
    limiter = RateLimiter(redis_client, "mutt:rate_limit:lanes")
    reserved = reserved_slots(50, 0.2)
    tickets = [limiter.acquire(50, 5.0, uuid.uuid4().hex, reserved=reserved) for _ in range(100)]
    assert reserved == 10 and tickets.count(0.0) == 40 and tickets[:40] == [0.0] * 40
    pages = [
        limiter.acquire(50, 5.0, uuid.uuid4().hex, reserved=reserved, page=True) for _ in "x" * 12
    ]
    assert pages[:10] == [0.0] * 10  # no wait behind the 60 tickets in line
    assert pages[10] > 0 and pages[11] > pages[10]  # the whole limit is used: pages wait too
    assert limiter.acquire(50, 5.0, uuid.uuid4().hex, reserved=reserved) > 0


def test_pages_wait_in_their_own_line(redis_client: redis.Redis) -> None:
    # A full window: 40 tickets in line get turns a quarter-second apart (4 s for the last); the
    # first page in line gets the first slot that frees, not a turn after the tickets'.
    limiter = RateLimiter(redis_client, "mutt:rate_limit:lines")
    for _ in range(5):
        assert limiter.acquire(5, 1.0, uuid.uuid4().hex, page=True) == 0.0
    tickets = [limiter.acquire(5, 1.0, uuid.uuid4().hex, reserved=1) for _ in range(40)]
    assert tickets[-1] > 9
    assert limiter.acquire(5, 1.0, uuid.uuid4().hex, reserved=1, page=True) <= 1.0


def test_reserved_slots_leave_tickets_at_least_one() -> None:
    assert reserved_slots(50, 0.2) == 10
    assert reserved_slots(50, 0.0) == 0
    assert reserved_slots(1, 0.5) == 0
    assert reserved_slots(5, 0.9) == 4


def test_circuit_opens_after_threshold_and_lets_one_probe_through(
    redis_client: redis.Redis,
) -> None:
    breaker = CircuitBreaker(redis_client, "mutt:circuit:test")
    assert breaker.allow(3, 0.5) == (True, 0.0)
    assert [breaker.record_failure(3, 0.5) for _ in range(3)] == ["CLOSED", "CLOSED", "OPEN"]
    allowed, wait = breaker.allow(3, 0.5)
    assert not allowed and 0 < wait <= 0.5

    time.sleep(0.55)
    assert breaker.allow(3, 0.5) == (True, 0.0)  # the probe
    assert breaker.state() == "HALF_OPEN"
    assert breaker.allow(3, 0.5)[0] is False  # everyone else waits for the probe
    assert breaker.record_success() == "CLOSED"
    assert breaker.allow(3, 0.5) == (True, 0.0)


def test_failed_probe_reopens_the_circuit(redis_client: redis.Redis) -> None:
    breaker = CircuitBreaker(redis_client, "mutt:circuit:test2")
    for _ in range(2):
        breaker.record_failure(2, 0.3)
    time.sleep(0.35)
    assert breaker.allow(2, 0.3)[0] is True
    assert breaker.record_failure(2, 0.3) == "OPEN"
    assert breaker.allow(2, 0.3)[0] is False


def test_success_resets_consecutive_failures(redis_client: redis.Redis) -> None:
    breaker = CircuitBreaker(redis_client, "mutt:circuit:test3")
    breaker.record_failure(3, 1)
    breaker.record_failure(3, 1)
    breaker.record_success()
    assert breaker.record_failure(3, 1) == "CLOSED"
