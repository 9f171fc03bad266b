"""Deduplication on real processes: a storm from one flapping device must not delay another device's
page, and only true repeats of one incident are merged.

The storm: 3,000 copies of one message (a counter varies in it, so the masking matters) from one
device, then a page from another, with Moog limited to 50 requests a second. The incidents: alerts
that differ in an address, a numbered identity or their severity are each forwarded as themselves,
while true repeats (a value, a counter) are held and counted; a rule's own dedup key merges and
splits as it says.
"""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest
import requests
from sqlalchemy import insert

from mutt_app.db.models import AlertRule
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, WEB_API_KEY
from tests.factories import posted_event
from tests.services import wait_for

FLOOD = 3000
WINDOW = 8
# Long enough that the repeats, posted once the first alerts are audited, fall in their windows
# (that takes a second or two; the repeat counts wait for the windows to close).
LONG_WINDOW = 12


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
    with stack.together():
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


INCIDENTS = [  # (message, severity): each its own incident under the default key
    ("CRITICAL BGP peer 10.0.0.1 down", 3),
    ("CRITICAL BGP peer 10.0.0.2 down", 3),  # another address
    ("CRITICAL BGP peer 2001:db8::1 down", 3),
    ("CRITICAL BGP peer 2001:db8::2 down", 3),
    ("CRITICAL mac 00:1a:2b:3c:4d:5e flapping", 3),
    ("CRITICAL mac 00:1a:2b:3c:4d:5f flapping", 3),
    ("CRITICAL power supply 1 failed", 3),
    ("CRITICAL power supply 2 failed", 3),  # another numbered identity
    ("CRITICAL power supply 2 failed", 2),  # escalated
    ("CRITICAL CPU at 93%", 3),
    ("CRITICAL Interface Gi0/1 down (flap 1041)", 3),
]
REPEATS = [  # true repeats of the first incidents: held, counted
    ("CRITICAL power supply 1 failed", 3),
    ("CRITICAL CPU at 95%", 3),
    ("CRITICAL CPU at 97%", 3),
    ("CRITICAL Interface Gi0/1 down (flap 1042)", 3),
]
# Rules with their own dedup key: per peer, whatever the state and severity; any port, one incident.
KEYED_RULES = {
    "session": dict(match_type="regex", match_string=r"BGP session (?P<peer>\S+) (down|flapping)",
                    dedup_key="host, group:peer", priority=500),
    "port": dict(match_type="contains", match_string="PORT-SECURITY", dedup_key="host, masked",
                 priority=400),
}  # fmt: skip
KEYED_FIRSTS = [("BGP session 10.1.0.1 down", 3), ("BGP session 10.1.0.2 down", 3),
                ("PORT-SECURITY violation from 00:aa:bb:cc:dd:01", 4)]  # fmt: skip
KEYED_REPEATS = [("BGP session 10.1.0.1 flapping", 4),
                 ("PORT-SECURITY violation from 00:aa:bb:cc:dd:02", 4)]  # fmt: skip


@pytest.mark.slow
def test_distinct_incidents_are_each_forwarded_and_only_true_repeats_are_held_and_counted(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(DEDUP_WINDOW_SECONDS=str(LONG_WINDOW), DEDUP_FLUSH_INTERVAL_SECONDS="1")
    with stack.together():
        stack.start_sink().start_ingest().start_web()
        stack.start_worker("worker", concurrency=2)
        stack.start_beat()
    api = requests.Session()
    api.headers.update({"X-API-Key": WEB_API_KEY})
    page = dict(match_type="contains", match_string="CRITICAL", priority=900)
    for fields in (page, *KEYED_RULES.values()):
        rule = {**fields, "prod_handling": "Page_and_ticket", "dev_handling": "Log_only",
                "team_assignment": "NETO", "reason": "e2e"}  # fmt: skip
        created = api.post(f"{stack.web_url}/api/v2/rules", json=rule)
        assert created.status_code == 201, created.text

    def post(messages: list[tuple[str, int]]) -> list[str]:
        events = [posted_event(m, "rtr-1", syslog_severity=s) for m, s in messages]
        response = stack.post(orjson.dumps(events), **{"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        return list(response.json()["correlation_ids"])

    firsts = post(INCIDENTS + KEYED_FIRSTS)
    stack.wait_audited(len(firsts))
    repeats = post(REPEATS + KEYED_REPEATS)
    stack.wait_audited(len(firsts) + len(repeats))

    # Each incident was forwarded as itself, not folded into another one's count.
    rows = {str(r.correlation_id): r for r in stack.audit_rows()}
    assert all(rows[c].forwarded_to_moog and rows[c].held_reason is None for c in firsts)
    wait_for(lambda: len(_alerts(stack)) >= len(firsts), 30, "every incident at the sink")
    assert sorted(a["description"] for a in _alerts(stack)) == sorted(
        m for m, _ in INCIDENTS + KEYED_FIRSTS
    )
    severities = {a["custom_info"]["syslog_severity"] for a in _alerts(stack)
                  if a["description"] == "CRITICAL power supply 2 failed"}  # fmt: skip
    assert severities == {2, 3}

    # True repeats are held, each pointing at the alert it repeats; the rules' keys say which.
    first_of = dict(zip([m for m, _ in INCIDENTS + KEYED_FIRSTS], firsts, strict=True))
    expected = {
        repeats[0]: first_of["CRITICAL power supply 1 failed"],
        repeats[1]: first_of["CRITICAL CPU at 93%"],
        repeats[2]: first_of["CRITICAL CPU at 93%"],
        repeats[3]: first_of["CRITICAL Interface Gi0/1 down (flap 1041)"],
        repeats[4]: first_of["BGP session 10.1.0.1 down"],  # same peer: one incident
        repeats[5]: first_of["PORT-SECURITY violation from 00:aa:bb:cc:dd:01"],  # "masked"
    }
    assert {c: (rows[c].held_reason, str(rows[c].duplicate_of)) for c in repeats} == {
        c: ("duplicate", first) for c, first in expected.items()
    }

    # When the windows close, Moog gets one count per incident that repeated.
    counts = Counter(expected.values())
    wait_for(lambda: len(_updates(stack)) >= len(counts), LONG_WINDOW + 30, "the repeat counts")
    stack.settle(2.5)
    assert {
        (u["custom_info"]["duplicate_of"], u["custom_info"]["duplicate_count"])
        for u in _updates(stack)
    } == set(counts.items())
    assert len(_updates(stack)) == len(counts)
    metrics = stack.worker_metrics()
    assert metrics.get('mutt_alerts_held_total{reason="duplicate"}') == len(repeats)


def _alerts(stack) -> list[dict]:  # type: ignore[no-untyped-def]
    """The alerts the sink got as themselves (not repeat-count updates)."""
    return [a for a in stack.sink_events() if "duplicate_count" not in a.get("custom_info", {})]


def _updates(stack) -> list[dict]:  # type: ignore[no-untyped-def]
    return [a for a in stack.sink_events() if "duplicate_count" in a.get("custom_info", {})]
