"""Storm budgets and flap detection on real processes, with Moog limited to 50 requests a second.

Every event is audited once, with its reason; Moog gets what the budgets let through plus one
summary per window, and a flapping pair costs it one "flapping" and one "flapping ended" alert.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import insert, select

from mutt_app.db.models import AlertRule
from tests.e2e.conftest import StackFactory
from tests.factories import posted_event
from tests.services import wait_for

STORM_WINDOW = 15


def _ticket_rule(match: str, **extra: object) -> dict:
    return dict(match_string=match, match_type="contains", prod_handling="Ticket_only",
                dev_handling="Log_only", team_assignment="NETO", **extra)  # fmt: skip


@pytest.mark.slow
def test_budgets_per_device_and_per_rule_hold_the_excess_and_send_one_summary_each(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(
        MOOG_RATE_LIMIT="50",
        MOOG_RATE_PERIOD="1",
        DEDUP_WINDOW_SECONDS="0",  # every message distinct or not, only the budgets hold
        STORM_BUDGET_PER_DEVICE="20",
        STORM_BUDGET_PER_RULE="50",
        STORM_WINDOW_SECONDS=str(STORM_WINDOW),
        DEDUP_FLUSH_INTERVAL_SECONDS="1",
    )
    with stack.engine.begin() as conn:
        conn.execute(insert(AlertRule), [_ticket_rule("changed state"), _ticket_rule("fan")])
        fan_rule = conn.execute(select(AlertRule.id).where(AlertRule.match_string == "fan")).one()[
            0
        ]
    with stack.together():
        stack.start_sink()
        stack.start_ingest()
        stack.start_classify_worker()
        stack.start_worker(
            "forward", queues="mutt.forward.page,mutt.forward", concurrency=4, pool="threads"
        )
        stack.start_beat()

    # One device over its budget (100 > 20); ten devices each within theirs (8 < 20) whose rule
    # goes over its budget (80 > 50).
    device = [
        posted_event(f"Interface Gi0/{i} changed state to down", "core-sw-01") for i in range(100)
    ]
    rule = [posted_event(f"fan {i} failed", f"rack-{d}") for i in range(8) for d in range(10)]
    stack.post_events(device)
    stack.post_events(rule)

    stack.wait_audited(180, timeout=30)
    rows = stack.audit_rows()
    assert len(rows) == len({r.correlation_id for r in rows}) == 180
    device_rows = [r for r in rows if r.hostname == "core-sw-01"]
    rule_rows = [r for r in rows if r.hostname != "core-sw-01"]
    assert sum(r.forwarded_to_moog for r in device_rows) == 20
    assert {r.held_reason for r in device_rows if not r.forwarded_to_moog} == {"storm_budget"}
    assert sum(r.forwarded_to_moog for r in rule_rows) == 50
    assert {r.held_reason for r in rule_rows if not r.forwarded_to_moog} == {"storm_budget"}
    assert all(r.held_reason is None for r in rows if r.forwarded_to_moog)

    def summaries() -> list[dict]:
        return [a for a in stack.sink_events() if a.get("type") == "mutt.storm"]

    wait_for(lambda: len(summaries()) >= 2, STORM_WINDOW + 20, "the storm summaries")
    stack.settle(2.5)  # nothing more arrives: one summary per window and scope
    by_scope = {s["custom_info"]["storm_scope"]: s for s in summaries()}
    assert len(summaries()) == 2 and set(by_scope) == {"device", "rule"}
    assert by_scope["device"]["description"].startswith(
        f"core-sw-01: 80 alerts held in {STORM_WINDOW} s; top messages: Interface Gi0/"
    )
    assert by_scope["rule"]["description"].startswith(
        f"rule {fan_rule}: 30 alerts held in {STORM_WINDOW} s; top messages: fan <n> failed (x30)"
    )
    assert len(stack.sink_events()) == 20 + 50 + 2
    metrics = stack.worker_metrics()
    assert metrics.get('mutt_alerts_held_total{reason="storm_budget"}') == 110
    assert metrics.get('mutt_storm_summaries_total{scope="device"}') == 1
    assert metrics.get('mutt_storm_summaries_total{scope="rule"}') == 1


@pytest.mark.slow
def test_a_flapping_pair_is_raised_once_held_and_ended_once(make_stack: StackFactory) -> None:
    quiet = 4
    stack = make_stack(
        MOOG_RATE_LIMIT="50",
        MOOG_RATE_PERIOD="1",
        DEDUP_WINDOW_SECONDS="0",
        FLAP_TRANSITIONS="3",
        FLAP_WINDOW_SECONDS="60",
        FLAP_QUIET_SECONDS=str(quiet),
        DEDUP_FLUSH_INTERVAL_SECONDS="1",
    )
    with stack.engine.begin() as conn:
        conn.execute(insert(AlertRule), [_ticket_rule("changed state to down")])
        down = conn.execute(select(AlertRule.id)).one()[0]
        conn.execute(insert(AlertRule), [_ticket_rule("changed state to up", clears_rule_id=down)])
    with stack.together():
        stack.start_sink()
        stack.start_ingest()
        stack.start_classify_worker()
        stack.start_worker(
            "forward", queues="mutt.forward.page,mutt.forward", concurrency=4, pool="threads"
        )
        stack.start_beat()

    def flap(n: int) -> list[dict]:
        return [
            posted_event(f"Interface Gi0/1 changed state to {side}", "core-sw-01")
            for _ in range(n)
            for side in ("down", "up")
        ]

    first = flap(4)  # d u d: forwarded; the third transition (u) raises; the rest are held
    stack.post_events(first)
    stack.wait_audited(8, timeout=30)
    time.sleep(1)
    stack.post_events(flap(2))  # still flapping: held, no second alert
    stack.wait_audited(12, timeout=30)

    def flapping(state: str) -> list[dict]:
        return [a for a in stack.sink_events() if a.get("custom_info", {}).get("flapping") == state]

    wait_for(lambda: flapping("ended"), quiet + 20, "the flapping-ended alert")
    stack.settle(2.5)
    (raised,) = flapping("raised")
    (ended,) = flapping("ended")
    assert raised["signature"] == ended["signature"] == f"core-sw-01::flapping::{down}"
    assert ended["severity"] == 0
    assert ended["custom_info"]["flap_held"] == 9
    assert ended["custom_info"]["flap_transitions"] == 11
    rows = stack.audit_rows()
    assert len(rows) == 12
    held = sorted((r.forwarded_to_moog, r.held_reason) for r in rows)
    assert held.count((True, None)) == 3
    assert held.count((False, "flapping")) == 9
    pair = [a for a in stack.sink_events() if a.get("type") == "syslog"]
    assert len(pair) == 3

    # Quiet long enough: the pair starts afresh, its next event is forwarded.
    stack.post_events(flap(1)[:1])
    wait_for(lambda: len([a for a in stack.sink_events() if a.get("type") == "syslog"]) == 4, 20,
             "the next event after the end")  # fmt: skip
    metrics = stack.worker_metrics()
    assert metrics.get('mutt_alerts_held_total{reason="flapping"}') == 9
    assert metrics.get('mutt_flapping_alerts_total{event="raised"}') == 1
    assert metrics.get('mutt_flapping_alerts_total{event="ended"}') == 1
