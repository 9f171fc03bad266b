"""Maintenance windows on real processes: a recurring window whose occurrence is now suppresses and
downgrades what it scopes and nothing else, and its summary reaches Moog once after it ends, also
when the worker that counted was SIGKILLed and replaced before the end.

Everything goes the way an operator's change goes: rules and windows through the web app's REST
API (gunicorn), events through ingest, classify and forward workers, beat's flush_held, the sink.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
import requests

from tests.e2e.conftest import StackFactory
from tests.e2e.stack import WEB_API_KEY, Stack
from tests.services import wait_for

HEADERS = {"X-API-Key": WEB_API_KEY, "X-Change-Reason": "e2e maintenance"}


def _api(stack: Stack, method: str, path: str, body: dict) -> dict:
    response = requests.request(
        method, f"{stack.web_url}/api/v2{path}", json=body, headers=HEADERS, timeout=10
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def _post(stack: Stack, events: list[tuple[str, str]]) -> list[str]:
    now = datetime.now(UTC).isoformat()
    body = [{"timestamp": now, "hostname": host, "message": message} for host, message in events]
    response = stack.post(orjson.dumps(body), **{"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()["correlation_ids"]


def _rule(match: str, handling: str) -> dict:
    return {"match_string": match, "match_type": "contains", "prod_handling": handling,
            "dev_handling": "Log_only", "team_assignment": "NETO"}  # fmt: skip


@pytest.mark.slow
def test_a_recurring_window_open_now_holds_and_downgrades_only_its_scope_and_sums_up_once(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(DEDUP_WINDOW_SECONDS="0", DEDUP_FLUSH_INTERVAL_SECONDS="1")
    with stack.together():
        stack.start_sink()
        stack.start_web()
        stack.start_ingest()
        stack.start_classify_worker()
        stack.start_worker(
            "forward", queues="mutt.forward.page,mutt.forward", concurrency=2, pool="threads"
        )
        stack.start_beat()

    critical = _api(stack, "POST", "/rules", _rule("CRITICAL", "Page_and_ticket"))["id"]
    _api(stack, "POST", "/rules", _rule("changed state", "Ticket_only"))
    # A daily window in New York's wall-clock time whose occurrence started 30 s ago and lasts a
    # minute, so it is open now and ends within the test: 30 s is time enough to classify the
    # events and replace the worker before the end (the shortest window is a minute).
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    common = {
        "starts_at": started.isoformat(),
        "rrule": "FREQ=DAILY",
        "duration_minutes": 1,
        "timezone": "America/New_York",
    }
    suppress = _api(stack, "POST", "/maintenance-windows", {
        **common, "name": "core upgrade", "hosts": ["core-sw-*"], "action": "suppress"})  # fmt: skip
    downgrade = _api(stack, "POST", "/maintenance-windows", {
        **common, "name": "edge pager quiet", "hosts": ["edge-*"], "rule_ids": [critical],
        "action": "downgrade"})  # fmt: skip
    ends = datetime.fromisoformat(suppress["maintenance_window"]["occurrence"]["end"])
    assert suppress["maintenance_window"]["active"] and downgrade["maintenance_window"]["active"]

    ids = _post(
        stack,
        [
            ("core-sw-01", "Gi0/1 changed state to down"),  # suppressed
            ("core-sw-02", "CRITICAL fan failed"),  # suppressed: suppressing wins
            ("edge-01", "CRITICAL fan failed"),  # downgraded: a ticket, not a page
            ("edge-01", "Gi0/2 changed state to down"),  # a ticket anyway: untouched
            ("dist-01", "CRITICAL psu failed"),  # out of both scopes: still a page
        ],
    )
    stack.wait_audited(5, timeout=30)
    assert datetime.now(UTC) < ends, "the events must be classified while the window is open"
    rows = {str(r.correlation_id): r for r in stack.audit_rows()}
    verdicts = [
        (rows[i].handling_decision, rows[i].forwarded_to_moog, rows[i].held_reason) for i in ids
    ]
    assert verdicts == [
        ("Ticket_only", False, "maintenance"),
        ("Page_and_ticket", False, "maintenance"),
        ("Ticket_only", True, None),
        ("Ticket_only", True, None),
        ("Page_and_ticket", True, None),
    ]
    alerts = stack.wait_sink(3, timeout=30)
    handling = {a["external_id"]: a["custom_info"]["handling"] for a in alerts}
    assert handling == {ids[2]: "Ticket_only", ids[3]: "Ticket_only", ids[4]: "Page_and_ticket"}

    # The worker that classified them (and runs flush_held) dies before the window ends; the counts
    # are in Redis, and a new worker sends the summaries.
    stack.processes["classify"].kill()
    stack.start_classify_worker("classify-2")

    def summaries() -> list[dict]:
        return [a for a in stack.sink_events() if a.get("type") == "mutt.maintenance"]

    wait = (ends - datetime.now(UTC)).total_seconds() + 30
    wait_for(lambda: len(summaries()) >= 2, wait, "the two maintenance summaries")
    assert datetime.now(UTC) >= ends
    stack.settle(4)  # four more flushes: nothing more arrives
    descriptions = sorted(s["description"] for s in summaries())
    assert descriptions == [
        "window 'core upgrade': 2 alerts held, 2 hosts",
        "window 'edge pager quiet': 1 alert downgraded to Ticket_only, 1 host",
    ]
    assert {s["custom_info"]["handling"] for s in summaries()} == {"Ticket_only"}

    # Ended: the same host's alerts pass again.
    (after,) = _post(stack, [("core-sw-01", "Gi0/3 changed state to down")])
    wait_for(
        lambda: any(a["external_id"] == after for a in stack.sink_events()),
        30,
        "the alert after the window",
    )
    assert len(stack.sink_events()) == 3 + 2 + 1
    metrics = stack.worker_metrics()
    assert metrics.get('mutt_alerts_held_total{reason="maintenance"}') == 2
    assert metrics.get("mutt_maintenance_downgraded_total") == 1
    assert metrics.get("mutt_maintenance_summaries_total") == 2
