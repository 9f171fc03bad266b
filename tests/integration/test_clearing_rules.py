"""Clearing rules that make sense, on real PostgreSQL: a loop of ``clears_rule_id`` links (A clears B
while B clears A, or a chain closed into a loop) is refused with a 422 naming it, through the API,
the admin form and a draft (stored, and published over a live change that would close one).
"""

from __future__ import annotations

import html

from flask.testing import FlaskClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.models import AlertRule
from tests.factories import CRITICAL, RULE_FORM
from tests.records import audit_rows
from tests.web import call, form_token, login


def _chain(client: FlaskClient, length: int) -> list[int]:
    """``length`` rules, each clearing the one before (a chain: ids[1] clears ids[0], ...)."""
    ids: list[int] = []
    for index in range(length):
        body = {**CRITICAL, "match_string": f"STATE-{index}"}
        if ids:
            body["clears_rule_id"] = ids[-1]
        ids.append(call(client, "POST", "/api/v2/rules", body, status=201)["id"])
    return ids


def test_the_api_refuses_a_pair_clearing_each_other_and_a_chain_closed_into_a_loop(
    api_client: FlaskClient, engine: Engine
) -> None:
    a, b, c = _chain(api_client, 3)  # b clears a, c clears b
    before = len(audit_rows(engine))
    error = call(api_client, "PUT", f"/api/v2/rules/{a}", {"clears_rule_id": b}, status=422)
    assert error["details"]["cycle"] == [a, b, a]
    assert f"rule {a} clears rule {b}, rule {b} clears rule {a}" in error["error"]
    error = call(api_client, "PUT", f"/api/v2/rules/{a}", {"clears_rule_id": c}, status=422)
    assert error["details"]["cycle"] == [a, c, b, a]
    assert (
        f"rule {a} clears rule {c}, rule {c} clears rule {b}, rule {b} clears rule {a}"
        in (error["error"])
    )
    assert len(audit_rows(engine)) == before  # nothing changed
    # An inactive rule still counts: re-activating it must not close a loop unseen.
    call(api_client, "DELETE", f"/api/v2/rules/{c}", {}, status=200)
    call(api_client, "PUT", f"/api/v2/rules/{a}", {"clears_rule_id": c}, status=422)
    # A chain that stays a chain is fine; so is a second rule clearing the same one.
    d = call(api_client, "POST", "/api/v2/rules", {**CRITICAL, "clears_rule_id": a}, status=201)
    assert d["rule"]["clears_rule_id"] == a


def test_the_admin_form_refuses_a_loop_naming_it(
    admin_client: FlaskClient, api_client: FlaskClient, sessions: sessionmaker[Session]
) -> None:
    a, b = _chain(api_client, 2)
    assert login(admin_client, "alice") == 302
    edit = f"/admin/rules/edit/?id={a}"
    form = {**RULE_FORM, "reason": "loop", "csrf_token": form_token(admin_client, edit)}
    response = admin_client.post(edit, data={**form, "clears_rule_id": str(b)})
    assert response.status_code == 200  # the form again, with the reason
    page = html.unescape(response.get_data(as_text=True))
    assert (
        f"clearing rules form a cycle: rule {a} clears rule {b}, rule {b} clears rule {a}" in page
    )
    with sessions() as session:
        assert session.get(AlertRule, a).clears_rule_id is None  # type: ignore[union-attr]


def test_a_draft_closing_a_loop_is_refused_when_stored_and_when_published(
    api_client: FlaskClient, engine: Engine
) -> None:
    a, b, c = _chain(api_client, 3)
    looped = {"update": [{"id": a, "clears_rule_id": c}]}
    error = call(
        api_client, "POST", "/api/v2/rules/drafts", {"name": "loop", "draft": looped}, status=422
    )
    assert error["details"]["cycle"] == [a, c, b, a]
    # A draft that was fine when stored, but would close a loop with a live change made since.
    first = {"update": [{"id": a, "clears_rule_id": c}], "deactivate": []}
    call(api_client, "PUT", f"/api/v2/rules/{b}", {"clears_rule_id": None}, status=200)
    stored = call(
        api_client, "POST", "/api/v2/rules/drafts", {"name": "a", "draft": first}, status=201
    )
    call(api_client, "PUT", f"/api/v2/rules/{b}", {"clears_rule_id": a}, status=200)  # live change
    path = f"/api/v2/rules/drafts/{stored['id']}/rebase"
    refused = call(api_client, "POST", path, {}, status=422)  # no re-basing into a loop either
    assert refused["details"]["cycle"] == [a, c, b, a]
    publish = f"/api/v2/rules/drafts/{stored['id']}/publish"
    error = call(api_client, "POST", publish, {"force": True}, status=422)
    assert error["details"]["cycle"] == [a, c, b, a]
    with Session(engine) as session:
        assert session.scalar(select(AlertRule.clears_rule_id).where(AlertRule.id == a)) is None
