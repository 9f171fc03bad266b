"""Heartbeats on real processes: ingest, classify, beat, the forward worker and the Moog sink.

A host talks once; a one-minute heartbeat is created for it through the web API. When its minute is
up, beat's check raises one alert, and no more while it stays quiet. The host talks again: one
clear. The sink sees exactly one
alert and one clear.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
import pytest
import requests

from mutt_app.watch.heartbeats import HEARTBEAT_TYPE
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, WEB_API_KEY, Stack
from tests.services import wait_for

HOST = "edge-router-7"
CHECK_SECONDS = 3


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


def _wait_alerts(stack: Stack, count: int, timeout: float) -> list[dict]:
    try:
        wait_for(lambda: len(_heartbeat_alerts(stack)) >= count, timeout, f"{count} alerts")
    except TimeoutError as exc:
        raise AssertionError(f"{_heartbeat_alerts(stack)}\n{stack.logs()}") from exc
    return _heartbeat_alerts(stack)


@pytest.mark.slow
def test_a_quiet_host_raises_once_and_clears_once(make_stack: StackFactory) -> None:
    stack = make_stack(HEARTBEAT_CHECK_INTERVAL_SECONDS=str(CHECK_SECONDS))
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
    started = time.monotonic()

    (alert,) = _wait_alerts(stack, 1, timeout=60 + 45)
    assert time.monotonic() - started >= 50  # not before its minute was (nearly) up
    assert (alert["source"], alert["severity"]) == (HOST.lower(), 4)
    assert alert["custom_info"]["heartbeat"] == "quiet"

    # While the host stays quiet, later checks raise nothing more. (A beat killed and restarted
    # meanwhile is tests/integration/test_heartbeats.py's: here it would wait out RedBeat's lock.)
    stack.settle(4 * CHECK_SECONDS)
    assert len(_heartbeat_alerts(stack)) == 1, _heartbeat_alerts(stack)

    _talk(stack)
    _, clear = _wait_alerts(stack, 2, timeout=60)
    assert clear["custom_info"]["heartbeat"] == "cleared"
    assert (clear["signature"], clear["severity"]) == (alert["signature"], 0)
    stack.settle(4 * CHECK_SECONDS)
    kinds = [a["custom_info"]["heartbeat"] for a in _heartbeat_alerts(stack)]
    assert kinds == ["quiet", "cleared"], _heartbeat_alerts(stack)
