"""Each way a post to Moog may fail and pass later, one attempt at a time (``deliver``), against a
real local stand-in answering that way: the wait scheduled before the next attempt, what the
alert's delivery history records, and whether the failure counts toward the circuit breaker.

The forward task's whole course (the countdown honoured, delivered after recovery, dead-lettered
once the attempts are used up) runs on real workers in tests/e2e/test_moog_retries.py.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import redis

from mutt_app.config import load_settings
from mutt_app.forwarding import history
from mutt_app.forwarding.breaker import CircuitBreaker
from mutt_app.runtime import Runtime
from mutt_app.tasks.forward import deliver
from tests.moog_stand_in import Answer, StandIn
from tests.services import free_port

BASE, LONGEST, TIMEOUT = 0.5, 4.0, 1.0
ATTEMPTS = 2  # two failed posts so far: the backoff is BASE * 2**2, give or take 20 %
BACKOFF = (BASE * 4 * 0.8, BASE * 4 * 1.2)


def _in_an_hour() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)


def _late(_events: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
    time.sleep(TIMEOUT + 0.5)  # accepted, and no answer within MOOG_WEBHOOK_TIMEOUT
    return 200, {}, b""


# path -> (how the stand-in answers, or None: nothing listens; error type; the wait's bounds;
# whether it counts toward the breaker)
PATHS: dict[str, tuple[Answer | None, str, tuple[float, float], bool]] = {
    "408": (lambda _e: (408, {}, b"Request Timeout"), "408", BACKOFF, True),
    "429 without Retry-After": (lambda _e: (429, {}, b"slow down"), "429", BACKOFF, False),
    "429 Retry-After seconds": (
        lambda _e: (429, {"Retry-After": "3"}, b"slow down"), "429", (3.0, 3.0), False
    ),
    "429 Retry-After date, capped": (
        lambda _e: (429, {"Retry-After": _in_an_hour()}, b""), "429", (LONGEST, LONGEST), False
    ),
    "503 Retry-After": (
        lambda _e: (503, {"Retry-After": "1"}, b"maintenance"), "503", (1.0, 1.0), True
    ),
    "500": (lambda _e: (500, {}, b"boom"), "500", BACKOFF, True),
    "connection refused": (None, "connection", BACKOFF, True),
    "read timeout": (_late, "timeout", BACKOFF, True),
}  # fmt: skip


@pytest.fixture
def stand_ins() -> Iterator[list[StandIn]]:
    started: list[StandIn] = []
    yield started
    for stand_in in started:
        stand_in.stop()


def _runtime(pg_url: str, redis_url: str, tmp_path: Any, url: str) -> Runtime:
    return Runtime(
        load_settings(
            {
                "DATABASE_URL": pg_url,
                "REDIS_URL": redis_url,
                "MUTT_DATA_DIR": str(tmp_path),
                "MOOG_WEBHOOK_URL": url,
                "MOOG_WEBHOOK_TIMEOUT": str(TIMEOUT),
                "MOOG_RETRY_BASE_DELAY": str(BASE),
                "MOOG_RETRY_MAX_DELAY": str(LONGEST),
                "MOOG_MAX_RETRIES": "3",
                "MOOG_CIRCUIT_BREAKER_THRESHOLD": "100",
                "MOOG_RATE_LIMIT": "100000",
            }
        )
    )


def _alert() -> dict[str, Any]:
    return {"external_id": str(uuid.uuid4()), "signature": "retries::1", "severity": 3}


def _failures(client: redis.Redis) -> int:
    return int(client.get(CircuitBreaker(client).keys[1]) or 0)


@pytest.mark.parametrize("path", list(PATHS))
def test_a_failure_that_may_pass_schedules_its_retry(
    path: str, pg_url: str, redis_url: str, tmp_path: Any, stand_ins: list[StandIn]
) -> None:
    answer, error_type, (shortest, longest), counted = PATHS[path]
    if answer is None:
        url = f"http://127.0.0.1:{free_port()}/webhook"  # closed: the connection is refused
    else:
        stand_ins.append(StandIn(answer).start())
        url = stand_ins[0].url
    runtime = _runtime(pg_url, redis_url, tmp_path, url)
    client = runtime.redis

    alert = _alert()
    failure = deliver(runtime, [alert], ATTEMPTS).failure
    assert failure is not None
    assert (failure.status, failure.error_type) == ("retry", error_type)
    assert shortest <= failure.wait <= longest, failure.wait
    [entry] = history.read(client, alert["external_id"])
    assert entry["outcome"] == "retry" and entry["retry_in"] == round(failure.wait, 3)
    assert _failures(client) == (1 if counted else 0)
    if answer is not None:
        assert len(stand_ins[0].requests) == 1  # one request: no retry inside the attempt


def test_the_last_attempt_schedules_no_retry(
    pg_url: str, redis_url: str, tmp_path: Any, stand_ins: list[StandIn]
) -> None:
    moog = StandIn(lambda _e: (408, {}, b"")).start()
    stand_ins.append(moog)
    runtime = _runtime(pg_url, redis_url, tmp_path, moog.url)
    alert = _alert()
    failure = deliver(runtime, [alert], 3).failure  # MOOG_MAX_RETRIES=3 already used
    assert failure is not None and failure.status == "retry"
    [entry] = history.read(runtime.redis, alert["external_id"])
    assert "retry_in" not in entry
