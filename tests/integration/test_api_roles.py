"""Scoped API keys (WEBUI_API_KEYS) on a real PostgreSQL and Redis: 401 by key, 403 by role.

The role table below is the contract: viewer reads (and asks the rule tester), operator also
replays dead letters and changes the dynamic configuration, admin changes rules, development hosts
and device teams. A test checks the table names every route of the API, so a new route cannot be
left out of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import Engine

from mutt_app.config import Settings, SettingsError, load_settings
from mutt_app.forwarding import history as delivery_history
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.web import create_app
from mutt_app.web.api.resources import redis_connection
from mutt_app.web.api.responses import API_VERSION
from tests.conftest import close_web_app
from tests.factories import CRITICAL
from tests.integration.api_routes import ROUTES, check_answer
from tests.records import audit_rows
from tests.web import CSRF

KEYS = {
    "viewer": "viewer-key-0123456789",
    "operator": "operator-key-0123456789",
    "admin": "admin-key-0123456789",
}
SCOPED = (
    f"watch:viewer:{KEYS['viewer']},oncall:operator:{KEYS['operator']},boss:admin:{KEYS['admin']}"
)
NAMES = {"viewer": "watch", "operator": "oncall", "admin": "boss"}
RANK = ("viewer", "operator", "admin")

WINDOW = {
    "name": "core upgrade",
    "starts_at": "2026-01-01T00:00:00+00:00",
    "rrule": "FREQ=HOURLY",
    "duration_minutes": 60,
    "hosts": ["core-*"],
    "action": "suppress",
}
PUBLIC = {("GET", "/api/v2/openapi.json")}

# A request for each route that succeeds for a key with the role (after _seed).
CALLS: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", "/api/v2/rules"): ("/api/v2/rules", None),
    ("POST", "/api/v2/rules"): ("/api/v2/rules", CRITICAL | {"reason": "r"}),
    ("GET", "/api/v2/rules/<int:rule_id>"): ("/api/v2/rules/{rule}", None),
    ("PUT", "/api/v2/rules/<int:rule_id>"): (
        "/api/v2/rules/{rule}",
        {"priority": 7, "reason": "r"},
    ),
    ("DELETE", "/api/v2/rules/<int:rule_id>"): ("/api/v2/rules/{rule}", {"reason": "r"}),
    ("POST", "/api/v2/rules/test"): ("/api/v2/rules/test", {"hostname": "h", "message": "m"}),
    ("POST", "/api/v2/rules/backtest"): ("/api/v2/rules/backtest", {"hours": 1, "draft": {}}),
    ("GET", "/api/v2/rules/drafts"): ("/api/v2/rules/drafts", None),
    ("POST", "/api/v2/rules/drafts"): (
        "/api/v2/rules/drafts",
        {"name": "d", "draft": {"deactivate": []}, "reason": "r"},
    ),
    ("GET", "/api/v2/rules/drafts/<int:draft_id>"): ("/api/v2/rules/drafts/{draft}", None),
    ("PUT", "/api/v2/rules/drafts/<int:draft_id>"): (
        "/api/v2/rules/drafts/{draft}",
        {"name": "renamed", "reason": "r"},
    ),
    ("POST", "/api/v2/rules/drafts/<int:draft_id>/publish"): (
        "/api/v2/rules/drafts/{draft}/publish",
        {"reason": "r"},
    ),
    ("POST", "/api/v2/rules/drafts/<int:draft_id>/rebase"): (
        "/api/v2/rules/drafts/{draft}/rebase",
        {"reason": "r"},
    ),
    ("GET", "/api/v2/dev-hosts"): ("/api/v2/dev-hosts", None),
    ("POST", "/api/v2/dev-hosts"): ("/api/v2/dev-hosts", {"hostname": "new", "reason": "r"}),
    ("DELETE", "/api/v2/dev-hosts/<hostname>"): ("/api/v2/dev-hosts/lab", {"reason": "r"}),
    ("GET", "/api/v2/teams"): ("/api/v2/teams", None),
    ("POST", "/api/v2/teams"): (
        "/api/v2/teams",
        {"hostname": "new", "team_assignment": "WAN", "reason": "r"},
    ),
    ("PUT", "/api/v2/teams/<hostname>"): (
        "/api/v2/teams/core",
        {"team_assignment": "LAN", "reason": "r"},
    ),
    ("DELETE", "/api/v2/teams/<hostname>"): ("/api/v2/teams/core", {"reason": "r"}),
    ("GET", "/api/v2/audit-logs"): ("/api/v2/audit-logs", None),
    ("GET", "/api/v2/config-audit"): ("/api/v2/config-audit", None),
    ("GET", "/api/v2/dlq"): ("/api/v2/dlq", None),
    ("POST", "/api/v2/dlq/<int:item_id>/replay"): ("/api/v2/dlq/{letter}/replay", {"reason": "r"}),
    ("GET", "/api/v2/alerts/<correlation_id>/deliveries"): (
        "/api/v2/alerts/6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a/deliveries",
        None,
    ),
    # The seeded dead letter's event: never audited, its story is the letter and its history.
    ("GET", "/api/v2/events/<correlation_id>"): (
        "/api/v2/events/6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a",
        None,
    ),
    ("GET", "/api/v2/config"): ("/api/v2/config", None),
    ("PUT", "/api/v2/config"): ("/api/v2/config", {"moog_rate_limit": 9, "reason": "r"}),
    ("GET", "/api/v2/slo"): ("/api/v2/slo", None),
    ("GET", "/api/v2/metrics"): ("/api/v2/metrics", None),
    ("GET", "/api/v2/heartbeats"): ("/api/v2/heartbeats", None),
    ("POST", "/api/v2/heartbeats"): (
        "/api/v2/heartbeats",
        {"name": "new", "host": "db-*", "interval_minutes": 5, "reason": "r"},
    ),
    ("PUT", "/api/v2/heartbeats/<int:heartbeat_id>"): (
        "/api/v2/heartbeats/{heartbeat}",
        {"interval_minutes": 9, "reason": "r"},
    ),
    ("DELETE", "/api/v2/heartbeats/<int:heartbeat_id>"): (
        "/api/v2/heartbeats/{heartbeat}",
        {"reason": "r"},
    ),
    ("GET", "/api/v2/heartbeats/<int:heartbeat_id>/quiet-hosts"): (
        "/api/v2/heartbeats/{heartbeat}/quiet-hosts",
        None,
    ),
    ("GET", "/api/v2/unhandled/templates"): ("/api/v2/unhandled/templates", None),
    ("GET", "/api/v2/maintenance-windows"): ("/api/v2/maintenance-windows?active=true", None),
    ("POST", "/api/v2/maintenance-windows"): (
        "/api/v2/maintenance-windows",
        WINDOW | {"name": "another", "reason": "r"},
    ),
    ("GET", "/api/v2/maintenance-windows/<int:window_id>"): (
        "/api/v2/maintenance-windows/{window}",
        None,
    ),
    ("PUT", "/api/v2/maintenance-windows/<int:window_id>"): (
        "/api/v2/maintenance-windows/{window}",
        {"teams": ["WAN"], "reason": "r"},
    ),
    ("POST", "/api/v2/maintenance-windows/<int:window_id>/end"): (
        "/api/v2/maintenance-windows/{window}/end",
        {"reason": "r"},
    ),
    ("DELETE", "/api/v2/maintenance-windows/<int:window_id>"): (
        "/api/v2/maintenance-windows/{window}",
        {"reason": "r"},
    ),
}


@pytest.fixture
def scoped_app(settings: Settings) -> Iterator[Flask]:
    # Nothing answers on port 1: the SLO report uses MUTT's own counters.
    scoped = settings.model_copy(
        update={
            "webui_api_keys": SecretStr(SCOPED),
            "webui_api_key": SecretStr("the-unscoped-key-is-ignored"),
            "prometheus_url": "http://127.0.0.1:1",
        }
    )
    app = create_app(scoped)
    app.testing = True
    try:
        yield app
    finally:
        close_web_app(app)


@pytest.fixture
def scoped_client(scoped_app: Flask) -> FlaskClient:
    return scoped_app.test_client()


def _seed(client: FlaskClient, engine: Engine) -> dict[str, int]:
    """A rule, a development host, a team mapping, a maintenance window open now and a dead
    letter, made with the admin key."""
    admin = {"X-API-Key": KEYS["admin"]}
    rule = client.post("/api/v2/rules", json=CRITICAL | {"reason": "seed"}, headers=admin)
    assert rule.status_code == 201, rule.json
    host = client.post("/api/v2/dev-hosts", json={"hostname": "lab", "reason": "s"}, headers=admin)
    assert host.status_code == 201
    team = {"hostname": "core", "team_assignment": "WAN", "reason": "s"}
    assert client.post("/api/v2/teams", json=team, headers=admin).status_code == 201
    # Hourly, an hour long: open whenever the test runs.
    window = client.post(
        "/api/v2/maintenance-windows", json=WINDOW | {"reason": "s"}, headers=admin
    )
    assert window.status_code == 201, window.json
    beat = {"name": "core", "team": "WAN", "interval_minutes": 5, "reason": "s"}
    heartbeat = client.post("/api/v2/heartbeats", json=beat, headers=admin)
    assert heartbeat.status_code == 201, heartbeat.json
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        letter = add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": {"external_id": "6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a"}},
            error="Moog answered 400",
            backoff_base=60,
        )
        session.flush()
        letter_id = letter.id
    with client.application.app_context():
        # The dead-lettered alert's delivery history: Moog refused it once.
        pipe = redis_connection().pipeline()
        attempt = delivery_history.entry("rejected", status=400, error="Moog answered 400")
        delivery_history.queue_entries(pipe, ["6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a"], attempt, 60)
        pipe.execute()
    draft = {"update": [{"id": rule.json["id"], "priority": 8}]}
    stored = client.post(
        "/api/v2/rules/drafts", json={"name": "seed", "draft": draft, "reason": "s"}, headers=admin
    )
    assert stored.status_code == 201, stored.json
    return {
        "rule": rule.json["id"],
        "letter": letter_id,
        "window": window.json["id"],
        "heartbeat": heartbeat.json["id"],
        "draft": stored.json["id"],
    }


def test_the_role_table_names_every_api_route(scoped_app: Flask) -> None:
    registered = {
        (method, rule.rule)
        for rule in scoped_app.url_map.iter_rules()
        if rule.rule.startswith("/api/v2/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert registered == {(m, p) for m, p, _ in ROUTES} | PUBLIC
    assert set(CALLS) == {(m, p) for m, p, _ in ROUTES}


@pytest.mark.parametrize(("method", "path", "needed"), ROUTES)
@pytest.mark.parametrize("role", RANK)
def test_each_role_gets_what_it_needs_and_403_otherwise(
    scoped_client: FlaskClient, engine: Engine, method: str, path: str, needed: str, role: str
) -> None:
    ids = _seed(scoped_client, engine)
    url, body = CALLS[(method, path)]
    url = url.format(**ids)
    rows_before = len(audit_rows(engine))
    response = scoped_client.open(url, method=method, json=body, headers={"X-API-Key": KEYS[role]})
    assert response.headers["X-API-Version"] == API_VERSION
    assert response.is_json
    doc = scoped_client.get("/api/v2/openapi.json").json
    check_answer(doc, method, path, response.status_code, response.json)  # as documented
    if RANK.index(role) >= RANK.index(needed):
        assert response.status_code in (200, 201), response.json
    else:
        assert response.status_code == 403, response.json
        assert set(response.json) == {"error", "details"}
        assert response.json["details"] == {
            "key": NAMES[role],
            "role": role,
            "required_role": needed,
        }
        assert len(audit_rows(engine)) == rows_before  # refused: nothing changed


def test_unknown_and_unscoped_keys_are_401_when_scoped_keys_are_configured(
    scoped_client: FlaskClient,
) -> None:
    for headers in (
        {},
        {"X-API-Key": "the-unscoped-key-is-ignored"},
        {"X-API-Key": KEYS["admin"][:-1]},
    ):
        response = scoped_client.get("/api/v2/rules", headers=headers)
        assert response.status_code == 401, headers
        assert set(response.json) == {"error", "details"}
        assert response.headers["WWW-Authenticate"].startswith("ApiKey")


def test_changes_are_audited_under_the_keys_name(
    scoped_client: FlaskClient, engine: Engine
) -> None:
    created = scoped_client.post(
        "/api/v2/rules", json=CRITICAL | {"reason": "r"}, headers={"X-API-Key": KEYS["admin"]}
    )
    assert created.status_code == 201
    changed = scoped_client.put(
        "/api/v2/config",
        json={"moog_rate_limit": 3, "reason": "calm Moog"},
        headers={"X-API-Key": KEYS["operator"]},
    )
    assert changed.status_code == 200
    assert [row.changed_by for row in audit_rows(engine)] == ["api:boss", "api:oncall"]


def test_the_unscoped_key_is_admin_audited_as_api_key(settings: Settings, engine: Engine) -> None:
    app = create_app(settings.model_copy(update={"webui_api_key": SecretStr("k" * 20)}))
    try:
        client = app.test_client()
        response = client.post(
            "/api/v2/rules", json=CRITICAL | {"reason": "r"}, headers={"X-API-Key": "k" * 20}
        )
        assert response.status_code == 201
    finally:
        close_web_app(app)
    assert [row.changed_by for row in audit_rows(engine)] == ["api-key"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("a:viewer", "entry 1 is not name:role:key"),
        ("a:boss:0123456789abcdef", "role must be one of viewer, operator, admin"),
        ("a:viewer:short", "at least 16 characters"),
        ("a b:viewer:0123456789abcdef", "name 'a b'"),
        ("a:viewer:0123456789abcdef,a:admin:fedcba9876543210", "listed twice"),
        ("a:viewer:0123456789abcdef,b:admin:0123456789abcdef", "same key"),
        (" , ", "lists no key"),
    ],
)
def test_a_bad_webui_api_keys_stops_the_start(value: str, needle: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"WEBUI_API_KEYS": value})
    message = str(caught.value)
    assert message.startswith("invalid setting WEBUI_API_KEYS:") and needle in message
    assert "0123456789abcdef" not in message  # never echoes a key


def test_a_logged_in_person_may_read_but_not_change_without_a_key(
    settings: Settings, engine: Engine
) -> None:
    from sqlalchemy.orm import Session

    from mutt_app.commands import users as accounts

    with Session(engine) as session, session.begin():
        accounts.create_user(session, "alice", "correct horse battery", "admin", changed_by="t")
    # No API key configured at all: the session alone is enough to read.
    app = create_app(settings.model_copy(update={"webui_cookie_secure": False}))
    try:
        client = app.test_client()
        assert client.get("/api/v2/rules").status_code == 401  # not logged in yet
        token = CSRF.search(client.get("/login").get_data(as_text=True)).group(1)  # type: ignore[union-attr]
        form = {"username": "alice", "password": "correct horse battery", "csrf_token": token}
        assert client.post("/login", data=form).status_code == 302

        assert client.get("/api/v2/rules").status_code == 200
        event = {"hostname": "h", "message": "m"}
        assert client.post("/api/v2/rules/test", json=event).status_code == 200
        refused = client.post("/api/v2/rules", json=CRITICAL | {"reason": "r"})
        assert refused.status_code == 401 and "only read" in refused.json["error"]
        assert client.put("/api/v2/config", json={"moog_rate_limit": 3}).status_code == 401
        assert audit_rows(engine, table_name="alert_rules") == []
    finally:
        close_web_app(app)


def test_requests_are_counted_per_route_and_status_on_metrics(scoped_client: FlaskClient) -> None:
    from prometheus_client import REGISTRY

    def count(endpoint: str, status: str) -> float:
        labels = {"endpoint": endpoint, "status": status}
        return REGISTRY.get_sample_value("mutt_webui_api_requests_total", labels) or 0.0

    rule = "/api/v2/rules/<int:rule_id>"
    before = (count(rule, "404"), count(rule, "403"), count("/api/v2/config", "401"))
    viewer = {"X-API-Key": KEYS["viewer"]}
    assert scoped_client.get("/api/v2/rules/5", headers=viewer).status_code == 404
    assert (
        scoped_client.get("/api/v1/rules/5", headers=viewer).status_code == 404
    )  # the alias, same series
    assert (
        scoped_client.put("/api/v2/rules/5", json={"reason": "r"}, headers=viewer).status_code
        == 403
    )
    assert scoped_client.put("/api/v2/config", json={}).status_code == 401
    after = (count(rule, "404"), count(rule, "403"), count("/api/v2/config", "401"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 1]
    page = scoped_client.get("/metrics").get_data(as_text=True)
    assert "mutt_webui_api_latency_seconds_bucket" in page
