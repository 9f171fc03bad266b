"""Every answer of the web app carries the browser security headers: UI, log-in, API and errors."""

from __future__ import annotations

import base64
import hashlib
import html
import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.models import AlertRule, DevelopmentHost, DeviceTeam
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.web.headers import INLINE_HANDLERS
from tests.web import KEY, login

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
HANDLER = re.compile(r'\son[a-z]+="([^"]*)"', re.I)
RULE = {
    "match_type": "contains",
    "match_string": "LINK-3-UPDOWN",
    "priority": 500,
    "prod_handling": "Ticket_only",
    "dev_handling": "Suppress",
    "team_assignment": "NETO",
}


def _check(response) -> None:  # type: ignore[no-untyped-def]
    headers = response.headers
    policy = headers.get("Content-Security-Policy", "")
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
    )
    assert directives.get("default-src") == ["'self'"], policy
    assert directives.get("frame-ancestors") == ["'none'"], policy
    assert directives.get("object-src") == ["'none'"], policy
    assert "'unsafe-inline'" not in directives.get("script-src", []), policy
    assert "'unsafe-eval'" not in policy
    assert headers.get("X-Frame-Options") == "DENY"
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert headers.get("Referrer-Policy") == "same-origin"


def test_the_login_page_and_the_ui_carry_the_headers(admin_app: Flask) -> None:
    client: FlaskClient = admin_app.test_client()
    _check(client.get("/login"))
    _check(client.get("/"))  # the redirect to the log-in
    assert login(client, "alice", "wrong password") == 401
    _check(client.post("/login", data={}))
    assert login(client, "alice") == 302
    for path in ("/", "/admin/rules/", "/admin/event-audit/", "/admin/dlq/", "/no-such-page"):
        _check(client.get(path))
    _check(client.get("/static/mutt/dashboard.js"))


def test_the_api_carries_the_headers(admin_app: Flask) -> None:
    client = admin_app.test_client()
    _check(client.get("/api/v2/rules", headers={"X-API-Key": KEY}))
    _check(client.get("/api/v2/rules"))  # 401
    _check(client.get("/api/v2/openapi.json"))
    _check(client.get("/health"))


def test_every_inline_handler_of_the_pages_is_allowed_and_nothing_else_inline(
    admin_app: Flask,
    sessions: sessionmaker[Session],
) -> None:
    """The policy allows inline handlers by their hash: a page whose handler is not listed would
    lose it in the browser (a delete without its confirmation), so every page is checked here."""
    with sessions.begin() as session:
        session.add(AlertRule(**RULE))
        session.add(DevelopmentHost(hostname="lab-01"))
        session.add(DeviceTeam(hostname="core-01", team_assignment="CORE"))
        letter = add_dead_letter(
            session, task_name="t", queue="q", payload={"a": 1}, error="boom", backoff_base=60
        )
        session.flush()
        letter_id = letter.id
    client = admin_app.test_client()
    assert login(client, "alice") == 302
    pages = [
        "/",
        "/admin/rules/",
        "/admin/rules/new/",
        "/admin/hosts/",
        "/admin/teams/",
        "/admin/event-audit/",
        "/admin/config-audit/",
        "/admin/dlq/",
        f"/admin/dlq/{letter_id}/",
        "/admin/dynamic-config/",
        "/admin/rule-tester/",
        "/admin/rule-drafts/",
        "/admin/maintenance-windows/",
    ]
    seen = set()
    for path in ["/login", *pages]:
        response = (client if path != "/login" else admin_app.test_client()).get(path)
        assert response.status_code == 200, path
        page = response.get_data(as_text=True)
        assert not INLINE_SCRIPT.search(page), path
        assert "<style" not in page, path
        for handler in HANDLER.findall(page):
            seen.add(html.unescape(handler))
    assert seen, "no inline handler found: the pattern is wrong"
    assert seen <= set(INLINE_HANDLERS), seen - set(INLINE_HANDLERS)
    policy = response.headers["Content-Security-Policy"]
    for handler in seen:
        digest = base64.b64encode(hashlib.sha256(handler.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
