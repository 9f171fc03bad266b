"""Heartbeats on real processes: ingest, classify, beat, the forward worker and the Moog sink.

A host talks once; a one-minute heartbeat is created for it through the web API. When its minute is
up, beat's check raises one alert, and no more while it stays quiet. The host talks again: one
clear. The sink sees exactly one
alert and one clear.

Most of the minute is let pass at once rather than waited out: once classify has recorded the
host's event, its last-seen time (mutt_app.watch.last_seen) is moved QUIET_ALREADY_MS back, as if
it had talked that long ago. The alert must still wait for the rest of the minute.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import orjson
import pytest
import redis
import requests

from mutt_app.names import CHECK_HEARTBEATS_TASK
from mutt_app.watch.heartbeat_quiet import iso
from mutt_app.watch.heartbeats import HEARTBEAT_TYPE
from mutt_app.watch.last_seen import LAST_SEEN_KEY
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, WEB_API_KEY, Stack
from tests.services import wait_for

HOST = "edge-router-7"
CHECK_SECONDS = 1
# How much of the one-minute interval is let pass at once: the rest (10 s, some ten checks) is
# waited out, so an alert raised before the minute is up still fails the test.
QUIET_ALREADY_MS = 50_000


def _heartbeat_alerts(stack: Stack) -> list[dict]:
    return [e for e in stack.sink_events() if e.get("type") == HEARTBEAT_TYPE]


def _talk(stack: Stack) -> None:
    event = {
        "hostname": HOST,
        "message": "keepalive",
        "syslog_severity": 6,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    response = stack.post(orjson.dumps([event]), **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def _checks_run(stack: Stack) -> int:
    """How many heartbeat checks the classify worker (which consumes mutt.maintenance) completed."""
    log = stack.processes["classify"].log_path.read_text(errors="replace")
    return len(re.findall(rf"{re.escape(CHECK_HEARTBEATS_TASK)}\[[^\]]+\] succeeded", log))


def _wait_more_checks(stack: Stack, count: int) -> None:
    """Wait until ``count`` more checks have run (rather than a sleep that hopes they did)."""
    done = _checks_run(stack)
    try:
        wait_for(lambda: _checks_run(stack) >= done + count, 30, f"{count} more checks")
    except TimeoutError as exc:
        raise AssertionError(stack.logs()) from exc


def _wait_alerts(stack: Stack, count: int, timeout: float) -> list[dict]:
    try:
        wait_for(lambda: len(_heartbeat_alerts(stack)) >= count, timeout, f"{count} alerts")
    except TimeoutError as exc:
        raise AssertionError(f"{_heartbeat_alerts(stack)}\n{stack.logs()}") from exc
    return _heartbeat_alerts(stack)


@pytest.mark.slow
def test_a_quiet_host_raises_once_and_clears_once(make_stack: StackFactory) -> None:
    stack = make_stack(HEARTBEAT_CHECK_INTERVAL_SECONDS=str(CHECK_SECONDS))
    with stack.together():
        stack.start_sink()
        stack.start_ingest()
        stack.start_web()
        stack.start_worker("classify", queues="mutt.classify,mutt.maintenance", concurrency=2)
        stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=2, pool="threads")
        stack.start_beat("beat1")

    _talk(stack)
    stack.wait_audited(1)
    created = requests.post(
        f"{stack.web_url}/api/v2/heartbeats",
        json={
            "name": "edge 7",
            "host": HOST.upper(),  # host names are matched case-insensitively
            "interval_minutes": 1,
            "handling": "Page_and_ticket",
            "reason": "e2e",
        },
        headers={"X-API-Key": WEB_API_KEY},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    # The host talked QUIET_ALREADY_MS earlier than it did. A plain ZADD: classify's own ZADD GT
    # never moves a host back, and it has already recorded this host's only event.
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    host = HOST.lower()
    wait_for(lambda: client.zscore(LAST_SEEN_KEY, host) is not None, 10, "the host last seen")
    seen_ms = int(client.zscore(LAST_SEEN_KEY, host) or 0) - QUIET_ALREADY_MS
    client.zadd(LAST_SEEN_KEY, {host: seen_ms}, xx=True)

    (alert,) = _wait_alerts(stack, 1, timeout=10 + 45)
    assert time.time() * 1000 >= seen_ms + 60_000  # not before its minute was up
    assert (alert["source"], alert["severity"]) == (host, 4)
    assert alert["custom_info"]["heartbeat"] == "quiet"
    assert alert["custom_info"]["last_event"] == iso(seen_ms)

    # While the host stays quiet, later checks raise nothing more. (A beat killed and restarted
    # meanwhile is tests/integration/test_heartbeats.py's: here it would wait out RedBeat's lock.)
    _wait_more_checks(stack, 4)
    assert len(_heartbeat_alerts(stack)) == 1, _heartbeat_alerts(stack)

    _talk(stack)
    _, clear = _wait_alerts(stack, 2, timeout=60)
    assert clear["custom_info"]["heartbeat"] == "cleared"
    assert (clear["signature"], clear["severity"]) == (alert["signature"], 0)
    _wait_more_checks(stack, 4)
    kinds = [a["custom_info"]["heartbeat"] for a in _heartbeat_alerts(stack)]
    assert kinds == ["quiet", "cleared"], _heartbeat_alerts(stack)
