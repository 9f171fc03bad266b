"""A draft cannot silently overwrite what changed since it was drafted, on real PostgreSQL.

Two drafts of one rule, published one after the other, used to both succeed: the second undid the
first's change although it was drafted (and backtested) against the rule as it was before. A draft
records the rules it changes as they were; publishing over one changed since is a 409 naming the
rule and field (a clear message in the admin UI) until the draft is re-based or the publish forced,
each audited with a reason.
"""

from __future__ import annotations

import html

from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.models import AlertRule, RuleDraft
from tests.factories import CRITICAL
from tests.records import audit_rows
from tests.web import call, form_token, login


def _rule(client: FlaskClient) -> int:
    return call(client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"]


def _draft(client: FlaskClient, rule_id: int, priority: int) -> int:
    document = {"update": [{"id": rule_id, "priority": priority}]}
    body = {"name": f"priority {priority}", "draft": document}
    return call(client, "POST", "/api/v2/rules/drafts", body, status=201)["id"]


def _priority(engine: Engine, rule_id: int) -> int:
    with Session(engine) as session:
        return session.get(AlertRule, rule_id).priority  # type: ignore[union-attr]


def test_a_stale_draft_is_refused_with_409_and_publishes_once_rebased_or_forced(
    api_client: FlaskClient, engine: Engine
) -> None:
    rule = _rule(api_client)
    first, second, third = (_draft(api_client, rule, p) for p in (500, 600, 700))
    stored = call(api_client, "GET", f"/api/v2/rules/drafts/{second}")["draft"]
    assert stored["base"][str(rule)]["priority"] == 900  # what it was drafted against

    call(api_client, "POST", f"/api/v2/rules/drafts/{first}/publish", {}, status=200)
    assert _priority(engine, rule) == 500
    rows = len(audit_rows(engine))
    error = call(api_client, "POST", f"/api/v2/rules/drafts/{second}/publish", {}, status=409)
    assert error["details"]["stale"] == {str(rule): {"priority": {"drafted": 900, "now": 500}}}
    assert f"rule {rule} (priority: drafted 900, now 500)" in error["error"]
    assert "re-base" in error["error"]
    assert _priority(engine, rule) == 500 and len(audit_rows(engine)) == rows  # nothing changed

    # Re-based (after review) with a reason: audited, and then it publishes.
    path = f"/api/v2/rules/drafts/{second}/rebase"
    call(api_client, "POST", path, {}, reason=None, status=422)  # a reason is required
    rebased = call(api_client, "POST", path, {}, reason="checked against 500", status=200)
    assert rebased["draft"]["base"][str(rule)]["priority"] == 500
    row = audit_rows(engine)[-1]
    assert (row.table_name, row.reason) == ("rule_drafts", "checked against 500")
    call(api_client, "POST", f"/api/v2/rules/drafts/{second}/publish", {}, status=200)
    assert _priority(engine, rule) == 600

    # Forced: publishes over the change, and its audit row keeps what it overrode.
    call(api_client, "POST", f"/api/v2/rules/drafts/{third}/publish", {}, status=409)
    body = {"force": True}
    call(api_client, "POST", f"/api/v2/rules/drafts/{third}/publish", body, status=200)
    assert _priority(engine, rule) == 700
    marked = [r for r in audit_rows(engine) if r.table_name == "rule_drafts"][-1]
    assert marked.new_values["base"][str(rule)]["priority"] == 600
    assert marked.old_values["base"][str(rule)]["priority"] == 900


def test_a_draft_keeps_its_base_when_saved_and_bases_a_new_rule_on_now(
    api_client: FlaskClient, engine: Engine
) -> None:
    rule, other = _rule(api_client), _rule(api_client)
    draft = _draft(api_client, rule, 500)
    call(api_client, "PUT", f"/api/v2/rules/{rule}", {"priority": 100}, status=200)
    call(api_client, "PUT", f"/api/v2/rules/{other}", {"priority": 200}, status=200)
    document = {"update": [{"id": rule, "priority": 500}, {"id": other, "priority": 300}]}
    call(api_client, "PUT", f"/api/v2/rules/drafts/{draft}", {"draft": document}, status=200)
    with Session(engine) as session:
        base = session.get(RuleDraft, draft).base  # type: ignore[union-attr]
    assert base[str(rule)]["priority"] == 900  # still what it was drafted against
    assert base[str(other)]["priority"] == 200  # new to the draft: as it is now
    error = call(api_client, "POST", f"/api/v2/rules/drafts/{draft}/publish", {}, status=409)
    assert list(error["details"]["stale"]) == [str(rule)]


def _post(client: FlaskClient, draft_id: int, action: str, **data: str):  # type: ignore[no-untyped-def]
    token = form_token(client, f"/admin/rule-drafts/{draft_id}/")
    return client.post(
        f"/admin/rule-drafts/{draft_id}/{action}",
        data={"csrf_token": token, **data},
        follow_redirects=True,
    )


def test_the_admin_ui_shows_a_stale_draft_refuses_it_and_publishes_it_once_rebased(
    admin_client: FlaskClient, api_client: FlaskClient, engine: Engine, sessions: sessionmaker
) -> None:
    rule = _rule(api_client)
    first, second = _draft(api_client, rule, 500), _draft(api_client, rule, 600)
    call(api_client, "POST", f"/api/v2/rules/drafts/{first}/publish", {}, status=200)
    assert login(admin_client, "alice") == 302

    page = html.unescape(admin_client.get(f"/admin/rule-drafts/{second}/").get_data(as_text=True))
    assert "Rules changed since this draft was based on them" in page
    assert f"rule {rule}: priority drafted 900, now 500" in page
    refused = _post(admin_client, second, "publish", reason="go")
    text = html.unescape(refused.get_data(as_text=True))
    assert f"Not published: rules changed since the draft was based on them: rule {rule}" in text
    assert _priority(engine, rule) == 500

    rebased = _post(admin_client, second, "rebase", reason="reviewed against 500")
    assert "Draft re-based" in rebased.get_data(as_text=True)
    page = admin_client.get(f"/admin/rule-drafts/{second}/").get_data(as_text=True)
    assert "Rules changed since this draft" not in page
    published = _post(admin_client, second, "publish", reason="go")
    assert "Published:" in published.get_data(as_text=True)
    assert _priority(engine, rule) == 600
