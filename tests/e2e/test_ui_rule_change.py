"""A rule saved in the admin UI changes how the next event is classified within 5 seconds, on a
running worker, without a restart.

Real processes: ingest and the web app under gunicorn, one Celery worker (one pool process, so the
process that classified the first event with the old rules is the one that must pick up the new
rule), the Moog sink. The rule is created through the UI's own form (log-in, CSRF tokens, a reason).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from mutt_app.commands import users as accounts
from mutt_app.db.models import AlertRule, ConfigAuditLog, EventAuditLog
from tests.e2e.conftest import StackFactory
from tests.services import wait_for

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SLO_SECONDS = 5.0


def _token(page: requests.Response) -> str:
    assert page.status_code == 200, page.status_code
    found = CSRF.search(page.text)
    assert found, "no CSRF token in the page"
    return found.group(1)


def _audited(session: Session, message: str) -> EventAuditLog | None:
    return session.scalars(select(EventAuditLog).where(EventAuditLog.message == message)).first()


def test_a_rule_saved_in_the_ui_classifies_the_next_event_within_5_seconds(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(CACHE_RELOAD_INTERVAL="3600")  # only the version bump can reload in time
    with Session(stack.engine) as session, session.begin():
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
    with stack.together():
        stack.start_sink().start_ingest().start_web()
        worker = stack.start_worker("worker", concurrency=1)
    worker_pid = worker.popen.pid  # type: ignore[union-attr]

    def post(message: str) -> None:
        event = {
            "timestamp": datetime.now(UTC).isoformat(),
            "hostname": "edge-7",
            "message": message,
        }
        response = stack.post(json.dumps(event), **{"Content-Type": "application/json"})
        assert response.status_code == 200, response.text

    # The worker classifies with the rules it has (none): this event is unhandled.
    post("UIRULE-4-FLAP before the rule")
    stack.wait_audited(1)
    with Session(stack.engine) as session:
        before = _audited(session, "UIRULE-4-FLAP before the rule")
        assert before is not None and before.matched_rule_id is None

    # A person logs in and creates the rule with the real form.
    web = requests.Session()
    login = f"{stack.web_url}/login"
    response = web.post(
        login,
        data={"username": "alice", "password": PASSWORD, "csrf_token": _token(web.get(login))},
        timeout=10,
    )
    assert response.status_code == 200 and "/login" not in response.url, response.text[:500]
    new = f"{stack.web_url}/admin/rules/new/"
    form = {
        "csrf_token": _token(web.get(new, timeout=10)),
        "match_type": "contains",
        "match_string": "UIRULE-4-FLAP",
        "trap_oid": "",
        "syslog_severity": "",
        "priority": "600",
        "prod_handling": "Ticket_only",
        "dev_handling": "Suppress",
        "team_assignment": "EDGE",
        "is_active": "y",
        "reason": "edge flaps get a ticket",
    }
    saved = web.post(new, data=form, timeout=10, allow_redirects=False)
    saved_at = time.monotonic()
    assert saved.status_code == 302, saved.text[:2000]
    with Session(stack.engine) as session:
        rule = session.scalars(
            select(AlertRule).where(AlertRule.match_string == "UIRULE-4-FLAP")
        ).one()
        audit = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.table_name == "alert_rules")
        ).one()
    assert (audit.record_id, audit.changed_by, audit.reason) == (
        rule.id,
        "alice",
        "edge flaps get a ticket",
    )

    # The next event, on the same running worker, is classified by the new rule.
    post("UIRULE-4-FLAP after the rule")

    def classified() -> EventAuditLog | None:
        with Session(stack.engine) as session:
            return _audited(session, "UIRULE-4-FLAP after the rule")

    try:
        wait_for(classified, SLO_SECONDS, "the next event's audit row", interval=0.05)
    except TimeoutError as exc:
        raise AssertionError(f"not audited within {SLO_SECONDS} s\n{stack.logs()}") from exc
    elapsed = time.monotonic() - saved_at
    row = classified()
    assert row is not None
    assert (row.matched_rule_id, row.handling_decision, row.team_assignment) == (
        rule.id,
        "Ticket_only",
        "EDGE",
    )
    assert elapsed < SLO_SECONDS, f"{elapsed:.2f} s from the save to the audit row"
    assert worker.alive and worker.popen.pid == worker_pid  # type: ignore[union-attr]
