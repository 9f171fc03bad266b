"""One page per event: ``GET /api/v2/events/<id>`` and the admin's event page tell a sent, a held
and a dead-lettered event's story, each made by the real pipeline (tests.event_stories), and the
answers fit the OpenAPI document."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, MaintenanceWindow
from mutt_app.rules.cache import bump_rules_version
from mutt_app.runtime import Runtime, runtime_of
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.event_stories import REFUSED, Stories, make_stories, moog_sink
from tests.factories import wire_event
from tests.integration.api_routes import check_answer
from tests.services import free_port
from tests.web import KEY, call, login

ROUTE = "/api/v2/events/<correlation_id>"


@pytest.fixture
def stories(settings: Settings, sessions: sessionmaker[Session]) -> Iterator[Stories]:
    with moog_sink() as url:
        yield make_stories(settings, sessions, url)


def _story(client: FlaskClient, correlation_id: str) -> dict:
    found = call(client, "GET", f"/api/v2/events/{correlation_id}", status=200)
    check_answer(client.get("/api/v2/openapi.json").json, "GET", ROUTE, 200, found)
    return found


def test_a_sent_event_has_its_decision_and_moogs_answer(
    api_client: FlaskClient, stories: Stories
) -> None:
    story = _story(api_client, stories.sent)
    assert story["correlation_id"] == stories.sent
    assert story["event"]["hostname"] == "core-sw-01"
    assert story["event"]["message"] == "LINK-DOWN Gi0/1 (flap 1041)"
    decision = story["decision"]
    assert decision["rule_id"] == stories.rule_id and decision["rule"]["id"] == stories.rule_id
    assert decision["rules_version"] == 1 and decision["handling"] == "Page_and_ticket"
    assert decision["rule"]["changed_since"] is False
    assert story["outcome"]["forwarded"] is True and story["outcome"]["held_reason"] is None
    deliveries = story["deliveries"]
    assert deliveries["sent"] is True and deliveries["unavailable"] is False
    assert [(a["outcome"], a["status"]) for a in deliveries["attempts"]] == [("delivered", 200)]
    assert story["dead_letters"] == []
    assert story["trace_id"] is None  # tracing is off here (tests/e2e/test_tracing.py: on)


def test_a_held_event_names_the_alert_it_repeats_and_the_window(
    api_client: FlaskClient, stories: Stories
) -> None:
    story = _story(api_client, stories.held)
    outcome = story["outcome"]
    assert outcome["forwarded"] is False and outcome["held_reason"] == "duplicate"
    assert outcome["duplicate_of"] == stories.sent
    assert outcome["dedup_window_seconds"] == 60  # DEDUP_WINDOW_SECONDS, the rule sets none
    assert "duplicate" in outcome["explanation"]
    assert story["deliveries"]["sent"] is False and story["deliveries"]["attempts"] == []
    assert story["dead_letters"] == []


def test_a_dead_lettered_event_has_moogs_refusal_and_its_dead_letter(
    api_client: FlaskClient, stories: Stories
) -> None:
    story = _story(api_client, stories.dead_lettered)
    assert story["outcome"]["forwarded"] is True  # classify sent it on; Moog refused it
    deliveries = story["deliveries"]
    assert deliveries["sent"] is False
    # Moog's refusal, then the dead letter it led to: each with Moog's status.
    attempts = [(a["outcome"], a["status"]) for a in deliveries["attempts"]]
    assert attempts == [("rejected", 400), ("dead_lettered", 400)]
    [letter] = story["dead_letters"]
    assert letter["store"] == "dead_letters" and letter["task_name"] == "mutt.forward_to_moog"
    assert REFUSED in letter["error_message"]


def test_a_held_event_names_the_window_or_the_budgets_that_held_it(
    api_client: FlaskClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        rule = AlertRule(match_string="BGP", match_type="contains", prod_handling="Ticket_only",
                         dev_handling="Log_only", team_assignment="NETO")  # fmt: skip
        session.add(rule)
        for name, hosts in (("edge upgrade", ["edge-*"]), ("db patching", ["db-*"])):
            session.add(
                MaintenanceWindow(name=name, starts_at=now - timedelta(minutes=5),
                                  ends_at=now + timedelta(hours=1), hosts=hosts, teams=[],
                                  rule_ids=[], oid_prefixes=[], action="suppress")
            )  # fmt: skip
        session.flush()
        rule_id = rule.id
    celery = Runtime(settings).celery
    runtime = runtime_of(celery)
    runtime.dynamic_config.set("storm_budget_per_device", 1)
    bump_rules_version(runtime.redis)
    wires = [
        wire_event("edge-1", "BGP peer 10.0.0.1 down"),  # in the edge window
        wire_event("core-9", "BGP peer 10.0.0.2 down"),  # the device's budget of one
        wire_event("core-9", "BGP peer 10.0.0.3 down"),  # another incident, past the budget
    ]
    classify_batch(runtime, celery, wires)
    suppressed, passed, over = (_story(api_client, w["correlation_id"]) for w in wires)

    assert suppressed["outcome"]["held_reason"] == "maintenance"
    [window] = suppressed["outcome"]["windows"]
    assert window["name"] == "edge upgrade"
    assert window["occurrence_start"] <= now.isoformat() <= window["occurrence_end"]
    assert passed["outcome"]["forwarded"] is True and passed["outcome"]["budgets"] is None
    assert over["outcome"]["held_reason"] == "storm_budget"
    assert over["outcome"]["budgets"] == [
        {"scope": "device", "name": "core-9", "lane": "ticket", "limit": 1, "window_seconds": 60},
        {"scope": "rule", "name": str(rule_id), "lane": "ticket", "limit": 500,
         "window_seconds": 60},
    ]  # fmt: skip


def test_an_unknown_id_is_404_and_a_malformed_one_400(api_client: FlaskClient) -> None:
    doc = api_client.get("/api/v2/openapi.json").json
    missing = call(api_client, "GET", f"/api/v2/events/{uuid.uuid4()}", status=404)
    check_answer(doc, "GET", ROUTE, 404, missing)
    for bad in ("not-a-uuid", "1234", "6c442ed1-19ae-4c1b-9ecf"):
        malformed = call(api_client, "GET", f"/api/v2/events/{bad}", status=400)
        check_answer(doc, "GET", ROUTE, 400, malformed)


def test_the_story_says_so_when_redis_cannot_be_read(settings: Settings, stories: Stories) -> None:
    # A web app whose Redis is gone (nothing listens on its port): the database's part of the
    # story still answers, and the delivery history says it cannot be read.
    gone = f"redis://127.0.0.1:{free_port()}/0"
    app = create_app(
        settings.model_copy(update={"redis_url": gone, "webui_api_key": SecretStr(KEY)})
    )
    try:
        story = call(app.test_client(), "GET", f"/api/v2/events/{stories.sent}", status=200)
    finally:
        close_web_app(app)
    assert story["deliveries"]["unavailable"] is True
    assert story["event"]["hostname"] == "core-sw-01" and story["outcome"]["forwarded"] is True


def test_the_admin_event_page_tells_the_story_and_the_audit_links_to_it(
    admin_client: FlaskClient, stories: Stories
) -> None:
    client = admin_client
    assert login(client, "victor") in (200, 302)
    listing = client.get("/admin/event-audit/").get_data(as_text=True)
    assert f"/admin/event-audit/event/{stories.held}/" in listing
    page = client.get(f"/admin/event-audit/event/{stories.held}/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "held: duplicate" in text and stories.sent in text
    assert client.get(f"/admin/event-audit/event/{uuid.uuid4()}/").status_code == 404
    assert client.get("/admin/event-audit/event/nope/").status_code == 400
