"""Page lanes on real processes: a page overtakes a ticket flood, and tickets leave it room.

One forward worker consumes both lanes, as `mutt run`, systemd and Kubernetes start it; the sink is
the real `mutt moog-sink`; alerts are published as classify_event publishes them.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest

from mutt_app.config import load_settings
from mutt_app.runtime import Runtime
from tests.e2e.alerts import max_in_window, publish_alerts
from tests.e2e.conftest import StackFactory
from tests.services import wait_for

LIMIT = 50
FLOOD = 1500
# Alerts per request. Lanes and the pages' share of the limit work on requests; small batches keep
# the flood queued long enough (750 requests at 40 a second) for the page to overtake it.
BATCH = 2


def _alert(host: str, handling: str, severity: int, text: str) -> dict:
    external_id = str(uuid.uuid4())
    return {
        "signature": f"{host}::1::{text}",
        "source_id": host,
        "source": host,
        "external_id": external_id,
        "manager": "MUTT",
        "class": "NETO",
        "agent": "MUTT",
        "agent_location": host,
        "type": "syslog",
        "severity": severity,
        "description": text,
        "agent_time": int(datetime.now(UTC).timestamp()),
        "custom_info": {"handling": handling, "rule_id": 1, "correlation_id": external_id},
    }


@pytest.mark.slow
def test_a_page_reaches_moog_within_seconds_behind_a_ticket_flood(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        MOOG_RATE_LIMIT=str(LIMIT),
        MOOG_RATE_PERIOD="1",
        MOOG_WEBHOOK_TIMEOUT="2",
        MOOG_BATCH_SIZE=str(BATCH),
    )
    with stack.together():
        stack.start_sink()
        stack.start_worker(
            "forward", queues="mutt.forward.page,mutt.forward", concurrency=8, pool="threads"
        )
    flood = [
        _alert("core-sw-01", "Ticket_only", 3, "Interface Gi0/1 changed state to down")
        for _ in range(FLOOD)
    ]
    publish_alerts(stack, flood)
    # The flood is under way (Moog already took its first second's worth) before the page comes.
    wait_for(lambda: len(stack.sink_events()) >= LIMIT, 30, "the flood's first alerts")
    page = _alert("edge-rtr-07", "Page_and_ticket", 5, "BGP neighbour 10.0.0.1 down")
    sent = time.time()
    publish_alerts(stack, [page])

    def arrived() -> dict | None:
        return next(
            (e for e in stack.sink_events() if e["external_id"] == page["external_id"]), None
        )

    wait_for(lambda: arrived() is not None, 60, "the page at the sink", interval=0.1)
    waited = arrived()["_received_at"] - sent  # type: ignore[index]
    assert waited < 5, f"the page waited {waited:.1f} s behind the flood\n{stack.logs()}"

    # Tickets alone never take the page's share: at most 40 of every second's 50 requests.
    stack.settle(4)
    tickets = [e["_received_at"] for e in stack.sink_events() if e["source"] == "core-sw-01"]
    assert len(tickets) < FLOOD  # the flood was still queued when the page overtook it
    assert max_in_window(tickets, 1.0) <= (LIMIT - LIMIT // 5) * BATCH


@pytest.mark.slow
def test_a_deferred_page_stays_in_the_page_lane(make_stack: StackFactory) -> None:
    # 5 a second: most of 15 pages are deferred (Celery retries with a countdown). The worker that
    # consumes only the page lane still delivers every one, so the retries were published there.
    # Pages published on mutt.forward before lanes existed move to the page lane when deferred.
    # One alert per request, so that the limit defers most of them.
    stack = make_stack(MOOG_RATE_LIMIT="5", MOOG_RATE_PERIOD="1", MOOG_BATCH_SIZE="1")
    with stack.together():
        stack.start_sink()
        stack.start_worker("pages", queues="mutt.forward.page", concurrency=4, pool="threads")
    stack.start_worker("tickets", queues="mutt.forward", concurrency=4, pool="threads")
    pages = [_alert(f"rtr-{i}", "Page_and_ticket", 5, "BGP neighbour down") for i in range(15)]
    old = [_alert(f"old-{i}", "Page_and_ticket", 5, "BGP neighbour down") for i in range(10)]
    app = Runtime(load_settings(stack.env)).celery
    for alert in old:  # as classify published every alert before lanes existed
        app.send_task("mutt.forward_to_moog", args=[alert], queue="mutt.forward")
    publish_alerts(stack, pages)

    received = stack.wait_sink(25, timeout=40)
    assert {e["external_id"] for e in received} == {p["external_id"] for p in pages + old}
    lines = stack.processes["pages"].log_path.read_text().splitlines()
    log = "\n".join(line for line in lines if "delivered: " in line)
    assert all(p["external_id"] in log for p in pages)
    moved = [a for a in old if a["external_id"] in log]
    assert moved, "no deferred page moved from mutt.forward to the page lane"
