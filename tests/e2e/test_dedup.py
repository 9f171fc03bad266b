"""A storm on real processes: one flapping device must not delay another device's page.

3,000 copies of one message (a counter varies in it, so the masking matters) from one device,
then a page from another, with Moog limited to 50 requests a second.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
from sqlalchemy import insert

from mutt_app.db.models import AlertRule
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES
from tests.factories import posted_event
from tests.services import wait_for

FLOOD = 3000
WINDOW = 8


@pytest.mark.slow
def test_a_flood_costs_moog_a_handful_of_requests_and_the_page_is_not_delayed(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        MOOG_RATE_LIMIT="50",
        MOOG_RATE_PERIOD="1",
        DEDUP_WINDOW_SECONDS=str(WINDOW),
        DEDUP_FLUSH_INTERVAL_SECONDS="1",
    )
    with stack.engine.begin() as conn:
        conn.execute(
            insert(AlertRule),
            [
                dict(match_string="CRITICAL", match_type="contains", priority=900,
                     prod_handling="Page_and_ticket", dev_handling="Ticket_only",
                     team_assignment="NETO"),
                dict(match_string="changed state to down", match_type="contains", priority=500,
                     prod_handling="Ticket_only", dev_handling="Log_only",
                     team_assignment="NETO"),
            ],
        )  # fmt: skip
    stack.start_sink()
    stack.start_ingest()
    stack.start_worker("classify", queues="mutt.classify,mutt.maintenance", concurrency=2)
    stack.start_worker("forward", queues=FORWARD_QUEUES, concurrency=4, pool="threads")
    stack.start_beat()

    message = "%LINK-3-UPDOWN: Interface Gi0/1 changed state to down (flap {})"
    flood = [posted_event(message.format(i), "core-sw-01") for i in range(FLOOD)]
    for start in range(0, FLOOD, 500):
        response = stack.post(
            orjson.dumps(flood[start : start + 500]), **{"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
    page = posted_event("CRITICAL power supply 2 failed", "edge-rtr-02")
    posted = time.monotonic()
    response = stack.post(orjson.dumps([page]), **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text

    def paged() -> bool:
        return any(a["source"] == "edge-rtr-02" for a in stack.sink_events())

    wait_for(paged, 30, "the page at the sink", interval=0.05)
    assert time.monotonic() - posted < 5, stack.logs()

    # Every event audited exactly once, each held one with its reason and the alert it repeats.
    stack.wait_audited(FLOOD + 1, timeout=60)
    rows = stack.audit_rows()
    assert len(rows) == FLOOD + 1
    assert len({r.correlation_id for r in rows}) == FLOOD + 1
    (page_row,) = [r for r in rows if r.hostname == "edge-rtr-02"]
    assert page_row.forwarded_to_moog and page_row.held_reason is None
    flood_rows = [r for r in rows if r.hostname == "core-sw-01"]
    firsts = {r.correlation_id for r in flood_rows if r.forwarded_to_moog}
    held = [r for r in flood_rows if not r.forwarded_to_moog]
    assert 1 <= len(firsts) <= 3  # one per window the flood spanned
    assert all(r.held_reason is None for r in flood_rows if r.forwarded_to_moog)
    assert {r.held_reason for r in held} == {"duplicate"}
    assert {r.duplicate_of for r in held} <= firsts
    assert len(held) + len(firsts) == FLOOD

    # Each window with repeats closes and Moog gets one update carrying its count: no count lost.
    repeats = Counter(r.duplicate_of for r in held)

    def updates() -> list[dict]:
        return [a for a in stack.sink_events() if "duplicate_count" in a.get("custom_info", {})]

    wait_for(lambda: len(updates()) >= len(repeats), WINDOW + 20, "the repeat-count updates")
    stack.settle(2.5)  # nothing more arrives: one update per window
    sent = updates()
    assert {
        (u["custom_info"]["duplicate_of"], u["custom_info"]["duplicate_count"]) for u in sent
    } == {(str(first), n) for first, n in repeats.items()}
    assert len(sent) == len(repeats)
    flood_alerts = [a for a in stack.sink_events() if a["source"] == "core-sw-01"]
    assert len(flood_alerts) == len(firsts) + len(sent) <= 6
    assert len({a["signature"] for a in flood_alerts}) == 1  # Moog folds them into one alert
    metrics = stack.worker_metrics()
    assert metrics.get('mutt_alerts_held_total{reason="duplicate"}') == len(held)
