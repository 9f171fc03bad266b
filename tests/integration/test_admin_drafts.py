"""The admin UI's rule drafts through Flask's test client, on real PostgreSQL and Redis: an admin
creates a draft, saves it (a bad one is refused with the reason), backtests it on a known history,
sees the changed decisions, and publishes it, audited rule by rule; a viewer only reads.
"""

from __future__ import annotations

import html
import re

import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, ConfigAuditLog, RuleDraft
from mutt_app.rules.cache import VERSION_KEY
from tests.factories import RULES, audit_event
from tests.web import form_token, login


def _rules(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions.begin() as session:
        rows = {name: AlertRule(**fields) for name, fields in RULES.items()}
        session.add_all(rows.values())
        session.flush()
        ids = {name: row.id for name, row in rows.items()}
        audit_event(session, "edge-1", "Interface Gi0/1 down", ids["interface"], "Page_and_ticket")
        audit_event(session, "core-2", "BGP peer 10.0.0.2 down", ids["bgp"], "Ticket_only")
        audit_event(session, "core-3", "CRITICAL PSU failure", ids["critical"], "Page_and_ticket")
        return ids


def _new_draft(client: FlaskClient, name: str = "quieter links") -> int:
    token = form_token(client, "/admin/rule-drafts/")
    response = client.post(
        "/admin/rule-drafts/new", data={"csrf_token": token, "name": name, "reason": "try"}
    )
    assert response.status_code == 302
    found = re.search(r"/admin/rule-drafts/(\d+)/", response.headers["Location"])
    assert found
    return int(found.group(1))


def _post(client: FlaskClient, draft_id: int, action: str, **data: str):  # type: ignore[no-untyped-def]
    token = form_token(client, f"/admin/rule-drafts/{draft_id}/")
    return client.post(
        f"/admin/rule-drafts/{draft_id}/{action}", data={"csrf_token": token, **data}
    )


def test_an_admin_drafts_backtests_and_publishes(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    ids = _rules(sessions)
    login(admin_client, "alice")
    draft_id = _new_draft(admin_client)

    bad = _post(admin_client, draft_id, "save", document='{"deactivate": [99999]}', reason="r")
    assert bad.status_code == 422
    assert "do not exist" in html.unescape(bad.get_data(as_text=True))

    document = (
        f'{{"update": [{{"id": {ids["interface"]}, "prod_handling": "Ticket_only"}}],'
        f' "deactivate": [{ids["bgp"]}]}}'
    )
    saved = _post(admin_client, draft_id, "save", document=document, reason="links page too much")
    assert saved.status_code == 302
    with sessions() as session:
        row = session.get(RuleDraft, draft_id)
        assert row is not None and row.document["deactivate"] == [ids["bgp"]]

    page = html.unescape(
        _post(admin_client, draft_id, "backtest", hours="24").get_data(as_text=True)
    )
    assert "<strong>2</strong> of 3 audited events" in page
    changes = page[page.index('id="backtest-changes"') :]
    assert "Page_and_ticket" in changes and f"#{ids['bgp']}" in changes
    assert f"#{ids['critical']}" not in changes.split('id="live-rules"')[0]

    before = int(redis.Redis.from_url(settings.redis_url).get(VERSION_KEY) or 0)
    published = _post(admin_client, draft_id, "publish", reason="links page too much")
    assert published.status_code == 302
    with sessions() as session:
        rows = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.table_name != "users").order_by("id")
        ).all()
        publish_rows = [
            r for r in rows if r.reason == "links page too much" and r.operation != "CREATE"
        ]
        by_table = sorted((r.table_name, r.operation, r.record_id) for r in publish_rows)
        assert ("alert_rules", "UPDATE", ids["interface"]) in by_table
        assert ("alert_rules", "DELETE", ids["bgp"]) in by_table
        assert ("rule_drafts", "UPDATE", draft_id) in by_table
        publish_id = {r.correlation_id for r in publish_rows if r.table_name == "alert_rules"}
        assert len(publish_id) == 1
        assert session.get(AlertRule, ids["bgp"]).is_active is False
        assert session.get(RuleDraft, draft_id).published_by == "alice"
    assert int(redis.Redis.from_url(settings.redis_url).get(VERSION_KEY)) == before + 1
    # A published draft is read-only.
    assert _post(admin_client, draft_id, "publish", reason="again").status_code == 409


def test_a_viewer_reads_drafts_but_changes_and_backtests_nothing(
    admin_app: Flask,
    admin_client: FlaskClient,
) -> None:
    login(admin_client, "alice")
    draft_id = _new_draft(admin_client)
    admin_client = admin_app.test_client()
    login(admin_client, "victor")
    page = admin_client.get(f"/admin/rule-drafts/{draft_id}/").get_data(as_text=True)
    assert "quieter links" in page
    assert "backtest-form" not in page and "publish-form" not in page
    for action in ("save", "backtest", "publish"):
        assert _post(admin_client, draft_id, action, reason="r", hours="1").status_code == 403
