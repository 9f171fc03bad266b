"""Moog failing in each way that may pass, on real forward workers (celery, threads) against a
real local stand-in: a 408, a 429 with and without Retry-After, a read timeout, a connection
refused. For each, the wait before every retry (the ``retry_in`` each attempt's delivery history
records, and the time that really passed before the next attempt) and the outcome: delivered once
Moog recovers, or dead-lettered once MOOG_MAX_RETRIES retries are used up.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import redis

from mutt_app.forwarding import history
from mutt_app.forwarding.breaker import CircuitBreaker
from mutt_app.ledger import OUTBOX, Ledger
from tests.e2e.alerts import dead_letters, made_alerts, publish_alerts
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.moog_stand_in import StandIn
from tests.services import free_port, wait_for

BASE, LONGEST, TIMEOUT, MAX_RETRIES = 0.2, 2.0, 1.0, 2
# With a refused connection, more retries (0.2 + 0.4 + 0.8 + 1.6 s): time to open the port.
REFUSED_RETRIES = 4
ENV = {
    "MOOG_RETRY_BASE_DELAY": str(BASE),
    "MOOG_RETRY_MAX_DELAY": str(LONGEST),
    "MOOG_WEBHOOK_TIMEOUT": str(TIMEOUT),
    "MOOG_MAX_RETRIES": str(MAX_RETRIES),
    # Failures of one path must not hold the others back here: the breaker has its own tests.
    "MOOG_CIRCUIT_BREAKER_THRESHOLD": "1000",
}
# How the stand-in fails each path's requests: (status, headers) for the n-th request (0-based)
# of one batch, or None for an answer later than MOOG_WEBHOOK_TIMEOUT (a read timeout).
PATHS = ("408", "429 Retry-After", "429", "read timeout")
RECOVERS_AFTER = 2  # a "recover" batch fails twice, then is taken


def _failing(path: str, n: int) -> tuple[int, dict[str, str]] | None:
    if path == "408":
        return 408, {}
    if path == "429":
        return 429, {}
    if path == "429 Retry-After":  # seconds first, then an HTTP date an hour off (capped)
        later = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
        return 429, {"Retry-After": "1" if n == 0 else later}
    return None


def _expected_waits(path: str, retries: int) -> list[tuple[float, float]]:
    """Bounds of the ``retry_in`` of each of a batch's ``retries`` retries."""
    if path == "429 Retry-After":
        return [(1.0, 1.0), (LONGEST, LONGEST)][:retries]
    return [(BASE * 2**n * 0.8, BASE * 2**n * 1.2) for n in range(retries)]


@pytest.fixture
def stand_ins() -> Iterator[list[StandIn]]:
    started: list[StandIn] = []
    yield started
    for stand_in in started:
        stand_in.stop()


def _forward_stack(make_stack: StackFactory, url: str, **env: str) -> Stack:
    stack = make_stack(**{**ENV, **env, "MOOG_WEBHOOK_URL": url})
    stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=8, pool="threads")
    return stack


def _attempts(client: redis.Redis, key: str) -> list[dict[str, Any]]:
    return history.read(client, key)


def _check_waits(attempts: list[dict[str, Any]], bounds: list[tuple[float, float]]) -> None:
    """Each scheduled retry's ``retry_in`` within its bounds, and at least that long passed before
    the next attempt was recorded."""
    retries = [a for a in attempts if "retry_in" in a]
    assert len(retries) == len(bounds), attempts
    for attempt, (shortest, longest) in zip(retries, bounds, strict=True):
        assert shortest - 0.001 <= attempt["retry_in"] <= longest + 0.001, attempts
    times = [datetime.fromisoformat(a["at"]) for a in attempts]
    for attempt, at, following in zip(attempts, times, times[1:], strict=False):
        if "retry_in" in attempt:
            waited = (following - at).total_seconds()
            assert waited >= attempt["retry_in"] - 0.01, (waited, attempts)


def _total(samples: dict[str, float], name: str, labels: str = "") -> float:
    return sum(
        v for k, v in samples.items() if (k == name or k.startswith(name + "{")) and labels in k
    )


@pytest.mark.slow
def test_each_http_failure_is_retried_on_schedule_then_delivered_or_dead_lettered(
    make_stack: StackFactory, stand_ins: list[StandIn]
) -> None:
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def answer(events: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
        tag = events[0]["description"]  # one batch per tag
        path, fate = tag.rsplit(":", 1)
        with lock:
            n = seen[tag]
            seen[tag] += 1
        if fate == "recover" and n >= RECOVERS_AFTER:
            return 200, {}, b'{"success": true}'
        failing = _failing(path, n)
        if failing is None:
            time.sleep(TIMEOUT + 0.5)  # accepted, and no answer in time
            return 200, {}, b""
        status, headers = failing
        return status, headers, b"not now"

    moog = StandIn(answer).start()
    stand_ins.append(moog)
    stack = _forward_stack(make_stack, moog.url)
    batches = {
        f"{p}:{fate}": made_alerts(2, f"{p}:{fate}")
        for p in PATHS
        for fate in ("recover", "exhaust")
    }
    for alerts in batches.values():
        publish_alerts(stack, alerts)

    doomed = {a["external_id"] for tag, b in batches.items() if tag.endswith("exhaust") for a in b}
    wait_for(lambda: doomed <= set(dead_letters(stack)), 45, "the exhausted batches dead-lettered")
    outbox = Ledger(redis.Redis.from_url(stack.env["REDIS_URL"]), OUTBOX)
    wait_for(lambda: outbox.depth() == 0, 30, "every alert delivered or dead-lettered")
    stack.settle(0.5)

    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    letters = dead_letters(stack)
    assert set(letters) == doomed
    for tag, alerts in batches.items():
        path, fate = tag.rsplit(":", 1)
        status = None if path == "read timeout" else int(path[:3])
        requests_made = RECOVERS_AFTER + 1 if fate == "recover" else MAX_RETRIES + 1
        assert seen[tag] == requests_made, (tag, seen)
        for alert in alerts:
            attempts = _attempts(client, alert["external_id"])
            outcomes = [(a["outcome"], a["status"]) for a in attempts]
            if fate == "recover":
                assert outcomes == [("retry", status)] * RECOVERS_AFTER + [("delivered", 200)]
                _check_waits(attempts, _expected_waits(path, RECOVERS_AFTER))
            else:
                assert outcomes == [("retry", status)] * (MAX_RETRIES + 1) + [
                    ("dead_lettered", status)
                ]
                _check_waits(attempts, _expected_waits(path, MAX_RETRIES))
                error_type, message = letters[alert["external_id"]]
                assert error_type == ("timeout" if status is None else str(status))
                assert f"gave up after {MAX_RETRIES + 1} attempts" in message
    samples = stack.worker_metrics()
    assert _total(samples, "mutt_dead_letters_total", 'reason="retries_exhausted"') == len(doomed)
    # Per path, the recovering batch's retries and the exhausted batch's (two 429 paths).
    per_path = RECOVERS_AFTER + MAX_RETRIES
    for reason, paths in (("408", 1), ("429", 2), ("timeout", 1)):
        assert _total(samples, "mutt_moog_retries_total", f'reason="{reason}"') == paths * per_path


@pytest.mark.slow
def test_a_refused_connection_is_retried_and_delivered_once_moog_listens(
    make_stack: StackFactory, stand_ins: list[StandIn]
) -> None:
    port = free_port()  # nothing listens: every connection is refused
    stack = _forward_stack(
        make_stack, f"http://127.0.0.1:{port}/webhook", MOOG_MAX_RETRIES=str(REFUSED_RETRIES)
    )
    client = redis.Redis.from_url(stack.env["REDIS_URL"])

    doomed = made_alerts(2, "refused:exhaust")
    publish_alerts(stack, doomed)
    wait_for(
        lambda: {a["external_id"] for a in doomed} <= set(dead_letters(stack)),
        30,
        "the batch dead-lettered",
    )
    letters = dead_letters(stack)
    for alert in doomed:
        attempts = _attempts(client, alert["external_id"])
        outcomes = [(a["outcome"], a["status"]) for a in attempts]
        assert outcomes == [("retry", None)] * (REFUSED_RETRIES + 1) + [("dead_lettered", None)]
        assert all("connection error" in a["error"] for a in attempts)
        _check_waits(attempts, _expected_waits("refused", REFUSED_RETRIES))
        error_type, message = letters[alert["external_id"]]
        assert error_type == "connection" and f"gave up after {REFUSED_RETRIES + 1}" in message
    # Each refused connection counted toward the breaker (one batch: consecutive failures).
    assert int(client.get(CircuitBreaker(client).keys[1]) or 0) == REFUSED_RETRIES + 1

    saved = made_alerts(2, "refused:recover")
    key = saved[0]["external_id"]
    publish_alerts(stack, saved)
    wait_for(lambda: len(_attempts(client, key)) >= 1, 15, "the first refused attempt")
    moog = StandIn(lambda _e: (200, {}, b'{"success": true}'), port=port).start()
    stand_ins.append(moog)
    wait_for(lambda: len(moog.events()) == 2, 15, "the batch delivered once Moog listens")
    for alert in saved:
        wait_for(lambda a=alert: history.report(client, a["external_id"])["sent"], 10, "sent")
        attempts = _attempts(client, alert["external_id"])
        outcomes = [(a["outcome"], a["status"]) for a in attempts]
        refused = len(outcomes) - 1
        assert 1 <= refused <= REFUSED_RETRIES
        assert outcomes == [("retry", None)] * refused + [("delivered", 200)]
        _check_waits(attempts, _expected_waits("refused", refused))
    assert set(dead_letters(stack)) == {a["external_id"] for a in doomed}
    assert int(client.get(CircuitBreaker(client).keys[1]) or 0) == 0  # a success closes it
    samples = stack.worker_metrics()
    assert _total(samples, "mutt_moog_retries_total", 'reason="connection"') >= REFUSED_RETRIES + 1
