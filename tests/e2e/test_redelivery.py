"""Held messages: a live worker keeps them however long they wait, a dead worker's come back in seconds.

Real Redis, real forward workers (threads, as mutt-worker-forward.service runs them), the Moog sink.
The lease (BROKER_VISIBILITY_TIMEOUT) is shortened to 5 s so that a countdown of 12 s outlives it
twice over: without the renewal (mutt_app.redelivery) the broker would hand the waiting message out
again and the worker would receive it a second time.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import requests
from sqlalchemy import text

from mutt_app.config import load_settings
from mutt_app.forwarding import lanes
from mutt_app.runtime import Runtime, runtime_of
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, Stack
from tests.services import wait_for

LEASE = {"BROKER_VISIBILITY_TIMEOUT": "5", "BROKER_RESTORE_INTERVAL": "1"}
RECEIVED = re.compile(r"Task mutt\.forward_to_moog\[[0-9a-f-]+\] received")


def _alert(description: str) -> dict[str, Any]:
    return {
        "signature": "lease-host::1::test",
        "source_id": "lease-host",
        "source": "lease-host",
        "external_id": str(uuid.uuid4()),
        "manager": "MUTT",
        "class": "NETO",
        "agent": "MUTT",
        "agent_location": "lease-host",
        "type": "syslog",
        "severity": 2,
        "description": description,
        "agent_time": int(datetime.now(UTC).timestamp()),
    }


def _send_later(stack: Stack, alert: dict[str, Any], seconds: float) -> None:
    app = Runtime(load_settings(stack.env)).celery
    lanes.send(runtime_of(app), app, [alert], later=seconds)


def _received(stack: Stack, name: str) -> int:
    return len(RECEIVED.findall(stack.processes[name].tail(None)))


def test_a_live_worker_holds_a_countdown_longer_than_the_lease_and_receives_it_once(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(**LEASE)
    with stack.together():
        stack.start_sink()
        stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=2, pool="threads")
    alert = _alert("held across two leases")

    _send_later(stack, alert, seconds=12)
    wait_for(lambda: _received(stack, "forward") >= 1, 20, "the worker to take the message")
    stack.wait_sink(1, timeout=30)
    stack.settle(3)  # a second delivery would have come at about 6 s and 12 s

    assert [e["external_id"] for e in stack.sink_events()] == [alert["external_id"]]
    assert _received(stack, "forward") == 1, stack.processes["forward"].tail(None)


def test_a_killed_workers_held_message_runs_on_another_worker_once_its_lease_lapses(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(**LEASE)
    with stack.together():
        stack.start_sink()
        doomed = stack.start_worker("doomed", queues=FORWARD_QUEUES, concurrency=2, pool="threads")
    alert = _alert("held by a worker that dies")

    _send_later(stack, alert, seconds=4)
    wait_for(lambda: _received(stack, "doomed") >= 1, 20, "the doomed worker to take the message")
    doomed.kill()  # as a host gone: the message stays unacked, its holder renews it no more
    killed_at = time.time()
    stack.start_worker("heir", queues=FORWARD_QUEUES, concurrency=2, pool="threads")

    events = stack.wait_sink(1, timeout=30)
    recovered = events[0]["_received_at"] - killed_at
    print(f"\nheld message delivered {recovered:.1f} s after its worker was killed")
    # The lease (5 s) plus one restore scan (1 s) plus the heir's start: well within this.
    assert recovered < 15
    stack.settle(2)
    assert [e["external_id"] for e in stack.sink_events()] == [alert["external_id"]]


def test_a_killed_workers_alert_cut_off_mid_post_reaches_moog_once_its_lease_lapses(
    make_stack: StackFactory,
) -> None:
    # The worker dies while its post is on the wire and Moog never takes it (here the sink holds
    # the request, then refuses it). The alert's in-flight claim outlives its worker; the copy the
    # broker hands out again must take the claim over, not wait out the claim's expiry.
    stack = make_stack(**LEASE)
    stack.start_sink()
    sink = f"http://127.0.0.1:{stack.sink_port}"
    requests.post(f"{sink}/_control", json={"status": 500, "delay": 8, "for_seconds": 3}, timeout=5)
    doomed = stack.start_worker("doomed", queues=FORWARD_QUEUES, concurrency=2, pool="threads")
    alert = _alert("posted by a worker that dies mid-post")

    _send_later(stack, alert, seconds=0)
    wait_for(lambda: requests.get(f"{sink}/_arrivals", timeout=5).json()["arrivals"], 20,
             "the doomed worker's post to reach the sink")  # fmt: skip
    doomed.kill()
    killed_at = time.time()
    stack.start_worker("heir", queues=FORWARD_QUEUES, concurrency=2, pool="threads")

    events = stack.wait_sink(1, timeout=30)
    recovered = events[0]["_received_at"] - killed_at
    print(f"\nalert cut off mid-post delivered {recovered:.1f} s after its worker was killed")
    assert recovered < 15  # the claim itself lasts MOOG_WEBHOOK_TIMEOUT + 30 s
    stack.settle(2)
    assert [e["external_id"] for e in stack.sink_events()] == [alert["external_id"]]


CLASSIFY_RECEIVED = re.compile(r"Task mutt\.classify_event\[([0-9a-f-]+)\] received")


def test_a_solo_worker_keeps_the_lease_of_a_task_longer_than_the_lease(
    make_stack: StackFactory,
) -> None:
    # A solo-pool worker (the classify worker as shipped) runs its task in its event loop, whose
    # timer cannot renew meanwhile: a thread does (mutt_app.redelivery). Here the task waits 12 s
    # on a lock on the audit table, two leases; without the renewal the other worker's restore scan
    # would hand its message out again and that worker would receive it too.
    stack = make_stack(**LEASE)
    stack.start_ingest()
    for name in ("classify-1", "classify-2"):
        stack.start_classify_worker(name)

    def received() -> list[str]:
        logs = (stack.processes[n].tail(None) for n in ("classify-1", "classify-2"))
        return [task for log in logs for task in CLASSIFY_RECEIVED.findall(log)]

    event = {"timestamp": datetime.now(UTC).isoformat(), "hostname": "lease-1", "message": "held"}
    with stack.engine.begin() as conn:
        conn.execute(text("LOCK TABLE event_audit_log IN EXCLUSIVE MODE"))  # inserts wait
        response = stack.post(json.dumps(event), **{"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        wait_for(lambda: len(received()) >= 1, 20, "a worker to take the batch")
        time.sleep(12)
        assert len(received()) == 1, received()
    with stack.engine.connect() as conn:
        wait_for(
            lambda: conn.execute(text("SELECT count(*) FROM event_audit_log")).scalar() == 1,
            20,
            "the batch audited",
        )
    stack.settle(2)
    assert len(received()) == 1, received()
