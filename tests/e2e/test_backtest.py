"""The backtest on real processes: events go through ingest and a Celery worker, a draft is
backtested through the web app's API under gunicorn, then the same changes are made live and the
same events sent again; the decisions the worker then audits are exactly those the backtest
predicted, changed and unchanged alike.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.db.models import EventAuditLog
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import WEB_API_KEY

AUTH = {"X-API-Key": WEB_API_KEY}
RULES = {
    "interface": {
        "match_string": "Interface.*down",
        "match_type": "regex",
        "priority": 800,
        "prod_handling": "Page_and_ticket",
        "dev_handling": "Email_only",
        "team_assignment": "NETO",
    },
    "bgp": {
        "match_string": "BGP",
        "match_type": "contains",
        "priority": 500,
        "prod_handling": "Ticket_only",
        "dev_handling": "Log_only",
        "team_assignment": "ROUTING",
    },
    "critical": {
        "match_string": "CRITICAL",
        "match_type": "contains",
        "priority": 900,
        "prod_handling": "Page_and_ticket",
        "dev_handling": "Ticket_only",
        "team_assignment": "NETO",
    },
}
MESSAGES = (
    "Interface Gi0/{n} changed state to down",
    "BGP neighbor 10.0.{n}.1 Down: hold time expired",
    "CRITICAL temperature {n}C on slot 2",
    "disk /var {n}% full",
    "user admin logged in from 10.1.1.{n}",
)
NEW_RULE = {
    "match_string": "disk",
    "match_type": "contains",
    "priority": 300,
    "prod_handling": "Email_only",
    "dev_handling": "Log_only",
    "team_assignment": "UNIX",
    "reason": "e2e",
}


def _events(round_: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [
        {
            "timestamp": now,
            "hostname": f"host-{n}",
            "message": template.format(n=n),
            "syslog_severity": 3,
            "program": f"round-{round_}",
        }
        for template in MESSAGES
        for n in range(4)
    ]


def _decisions(session: Session, round_: int) -> dict[tuple[str, str], tuple[Any, str, str]]:
    rows = session.execute(
        select(
            EventAuditLog.hostname,
            EventAuditLog.message,
            EventAuditLog.matched_rule_id,
            EventAuditLog.handling_decision,
            EventAuditLog.correlation_id,
            EventAuditLog.raw,
        )
    ).all()
    return {
        (host, message): (rule, handling, str(cid))
        for host, message, rule, handling, cid, raw in rows
        if raw.get("program") == f"round-{round_}"
    }


def test_a_backtest_predicts_exactly_what_the_workers_decide_once_published(
    make_stack: StackFactory,
) -> None:
    stack = make_stack()
    with stack.together():
        stack.start_sink().start_ingest().start_web()
        stack.start_worker("worker", concurrency=1)
    api = requests.Session()
    api.headers.update(AUTH)
    ids = {}
    for name, fields in RULES.items():
        created = api.post(f"{stack.web_url}/api/v2/rules", json={**fields, "reason": "e2e"})
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]

    first = _events(1)
    assert stack.post(json.dumps(first), **{"Content-Type": "application/json"}).ok
    stack.wait_audited(len(first))

    draft = {
        "update": [{"id": ids["interface"], "prod_handling": "Ticket_only"}],
        "deactivate": [ids["bgp"]],
        "create": [{k: v for k, v in NEW_RULE.items() if k != "reason"}],
    }
    answer = api.post(f"{stack.web_url}/api/v2/rules/backtest", json={"hours": 1, "draft": draft})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["rows_examined"] == len(first) and result["truncated"] is False

    # The same changes, made live through the API; then the same events once more.
    steps = [
        api.put(
            f"{stack.web_url}/api/v2/rules/{ids['interface']}",
            json={"prod_handling": "Ticket_only", "reason": "e2e"},
        ),
        api.delete(f"{stack.web_url}/api/v2/rules/{ids['bgp']}", json={"reason": "e2e"}),
        api.post(f"{stack.web_url}/api/v2/rules", json=NEW_RULE),
    ]
    assert all(step.ok for step in steps), [step.text for step in steps]
    new_rule_id = steps[2].json()["id"]
    stack.settle(1.0)  # the version bump reaches the worker's next task
    second = _events(2)
    assert stack.post(json.dumps(second), **{"Content-Type": "application/json"}).ok
    stack.wait_audited(len(first) + len(second))

    with Session(stack.engine) as session:
        before, after = _decisions(session, 1), _decisions(session, 2)
    assert before.keys() == after.keys() and len(before) == len(first)
    observed: Counter[tuple[Any, Any, str, str]] = Counter()
    samples: dict[tuple[Any, Any, str, str], set[str]] = {}
    for key, (old_rule, old_handling, cid) in before.items():
        new_rule, new_handling, _ = after[key]
        if (old_rule, old_handling) != (new_rule, new_handling):
            group = (old_rule, new_rule, old_handling, new_handling)
            observed[group] += 1
            samples.setdefault(group, set()).add(cid)
    predicted = Counter(
        {
            (
                c["old_rule_id"],
                new_rule_id if c["new_rule_draft_index"] == 0 else c["new_rule_id"],
                c["old_handling"],
                c["new_handling"],
            ): c["count"]
            for c in result["changes"]
        }
    )
    assert predicted == observed
    assert sum(observed.values()) == result["rows_changed"] == 12  # 4 each: interface, BGP, disk
    for change in result["changes"]:
        group = (
            change["old_rule_id"],
            new_rule_id if change["new_rule_draft_index"] == 0 else change["new_rule_id"],
            change["old_handling"],
            change["new_handling"],
        )
        assert set(change["sample_correlation_ids"]) <= samples[group]
