"""Unhandled templates and "why, for every event" on real processes (gunicorn ingest and web, a
Celery worker, the Moog sink, PostgreSQL, Redis).

Unmatched messages that differ only in numbers and addresses (IPv4, IPv6, MAC, ports, durations)
come back from ``GET /api/v2/unhandled/templates`` as one template each, with their counts and
hosts; a rule made from a template's suggested fields, through the API, matches the template's
next events. Every audited event carries the rules version it was classified under, and every
event not forwarded its reason.
"""

from __future__ import annotations

from collections import Counter

import pytest
import redis
import requests
from sqlalchemy import insert

from mutt_app.db.models import AlertRule, DevelopmentHost
from mutt_app.rules.cache import bump_rules_version
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import FORWARD_QUEUES, WEB_API_KEY, Stack
from tests.factories import posted_event

KEY = {"X-API-Key": WEB_API_KEY}


def _bgp(n: int) -> dict:
    address = f"10.{n}.{n * 7 % 256}.1" if n % 2 else f"2001:db8::{n:x}"
    return posted_event(
        f"BGP neighbor {address} Down: hold time expired after {n}ms", f"edge-{n % 3}"
    )


def _port_move(n: int) -> dict:
    mac = ":".join(f"{(n * k) % 256:02x}" for k in (3, 5, 7, 11, 13, 17))
    return posted_event(f"Port {mac} moved from Gi0/1 to Gi0/2 (vlan {100 + n})", "access-1")


def _login(n: int) -> dict:
    return posted_event(f"Login failed for user admin from 192.0.2.{n} port {40000 + n}", f"fw-{n}")


def _templates(stack: Stack) -> dict:
    response = requests.get(
        f"{stack.web_url}/api/v2/unhandled/templates?hours=1", headers=KEY, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_templates_group_messages_that_differ_in_numbers_and_addresses(
    make_stack: StackFactory, redis_url: str
) -> None:
    stack = make_stack()
    with stack.engine.begin() as conn:
        conn.execute(
            insert(AlertRule),
            [
                dict(match_string="CRITICAL", match_type="contains", priority=900,
                     prod_handling="Page_and_ticket", dev_handling="Log_only",
                     team_assignment="NETO"),
                dict(match_string="FAN", match_type="contains", priority=500,
                     prod_handling="Email_only", dev_handling="Email_only",
                     team_assignment="FAC"),
            ],
        )  # fmt: skip
        conn.execute(insert(DevelopmentHost), [{"hostname": "lab-1"}])
    client = redis.Redis.from_url(redis_url)
    for _ in range(5):
        bump_rules_version(client)  # the workers classify under rules version 5
    with stack.together():
        stack.start_sink()
        stack.start_ingest()
        stack.start_web()
        stack.start_worker("worker", queues=f"mutt.classify,{FORWARD_QUEUES}", concurrency=2)

    unmatched = (
        [_bgp(n) for n in range(1, 31)]
        + [_port_move(n) for n in range(1, 11)]
        + [_login(n) for n in range(1, 6)]
    )
    handled = [
        (posted_event("CRITICAL power supply 2 failed", "core-1"), None),
        (posted_event("CRITICAL power supply 2 failed", "core-1"), "duplicate"),
        (posted_event("FAN tray 1 failed", "core-2"), "email_only"),
        (posted_event("CRITICAL lab power test", "lab-1"), "dev_handling"),
    ]
    stack.post_events(unmatched + [event for event, _ in handled])
    total = len(unmatched) + len(handled)
    stack.wait_audited(total, timeout=60)

    answer = _templates(stack)
    assert (answer["scanned"], answer["truncated"]) == (len(unmatched), False)
    groups = {t["template"]: t for t in answer["templates"]}
    assert {k: (t["events"], t["hosts"]) for k, t in groups.items()} == {
        "BGP neighbor <ip> Down: hold time expired after <n>": (30, 3),
        "Port <mac> moved from Gi0/1 to Gi0/2 (vlan <n>)": (10, 1),
        "Login failed for user admin from <ip> port <n>": (5, 5),
    }
    bgp = groups["BGP neighbor <ip> Down: hold time expired after <n>"]
    assert [h["events"] for h in bgp["top_hosts"]] == [10, 10, 10]

    # Why, for every event: the rules version, and a reason exactly when not forwarded.
    rows = stack.audit_rows()
    assert len(rows) == total
    assert {r.rules_version for r in rows} == {5}
    assert all((r.held_reason is None) == r.forwarded_to_moog for r in rows)
    assert Counter(r.held_reason for r in rows) == Counter(
        ["unmatched"] * len(unmatched) + [reason for _, reason in handled]
    )
    assert stack.wait_sink(1)[0]["source"] == "core-1"

    # "Create a rule from this template": its suggested fields, through the API as the admin
    # form would save them. The template's next events match the new rule, under version 6.
    fields = bgp["suggested_rule"]
    rule = {
        **fields,
        "priority": 100,
        "prod_handling": "Ticket_only",
        "dev_handling": "Log_only",
        "reason": "from the unhandled BGP template",
    }
    created = requests.post(f"{stack.web_url}/api/v2/rules", json=rule, headers=KEY, timeout=10)
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    later = [_bgp(n) for n in (41, 42)]
    stack.post_events(later)
    stack.wait_audited(total + len(later), timeout=60)
    messages = {e["message"] for e in later}  # ingest assigns the correlation ids
    new_rows = [r for r in stack.audit_rows() if r.message in messages]
    assert [(r.matched_rule_id, r.rules_version) for r in new_rows] == [(rule_id, 6)] * 2
    # Only unmatched events make templates: the BGP count did not grow.
    after = {t["template"]: t["events"] for t in _templates(stack)["templates"]}
    assert after["BGP neighbor <ip> Down: hold time expired after <n>"] == 30
