"""The admin UI's operations pages through Flask's test client, on real PostgreSQL and Redis.

Dead letters and poison (inspect, replay, purge), dynamic configuration with the beat schedule, the
rule tester and the Flower link, each as the roles that may and may not use them.
"""

from __future__ import annotations

import html

import redis
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, DeadLetter, PoisonLetter
from mutt_app.dynamic_config import PREFIX
from mutt_app.events.fingerprint import fingerprint
from mutt_app.forwarding import history as delivery_history
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.records import config_audit
from tests.web import form_token, login

ALERT = {"external_id": "6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a", "signature": "router-01::x"}


def _dead_letter(sessions: sessionmaker[Session], payload: object = None) -> int:
    with sessions.begin() as session:
        letter = add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": ALERT} if payload is None else payload,
            error="Moog answered 400: bad severity",
            backoff_base=60,
            attempts=4,
        )
        session.flush()
        return letter.id


def _poison(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        item = PoisonLetter(
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": ALERT},
            error_type="HTTPError",
            error_message="Moog answered 400",
            attempts=3,
            replays=3,
            reason="gave up after 3 replays",
        )
        session.add(item)
        session.flush()
        return item.id


def _exists(sessions: sessionmaker[Session], model: type, item_id: int) -> bool:
    with sessions() as session:
        return session.get(model, item_id) is not None


# --- dead letters and poison ---------------------------------------------------------------------


def test_anyone_logged_in_inspects_payload_error_and_attempts(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
) -> None:
    letter = _dead_letter(sessions)
    assert admin_client.get("/admin/dlq/").status_code == 302  # not logged in
    login(admin_client, "victor")
    listing = admin_client.get("/admin/dlq/").get_data(as_text=True)
    assert f'data-item-id="{letter}"' in listing and "Moog answered 400" in listing
    page = html.unescape(admin_client.get(f"/admin/dlq/{letter}/").get_data(as_text=True))
    assert '"external_id": "6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a"' in page
    assert 'id="attempts">4<' in page
    assert "replay-form" not in page and "purge-form" not in page  # a viewer changes nothing
    assert admin_client.get("/admin/dlq/999999/").status_code == 404


def test_a_forward_dead_letter_shows_the_alerts_delivery_history(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    with sessions.begin() as session:
        letter = add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": ALERT},
            error="Moog answered 400: bad severity",
            error_type="HTTP400",
            backoff_base=60,
            correlation_id=ALERT["external_id"],
        )
        session.flush()
        letter_id = letter.id
    pipe = redis.Redis.from_url(settings.redis_url).pipeline()
    retried = delivery_history.entry("retry", status=503, task_id="t-0", retry_in=1.5)
    delivery_history.queue_entries(pipe, [ALERT["external_id"]], retried, 60)
    for outcome, size in (("rejected", 20), ("rejected", 1), ("dead_lettered", 1)):
        attempt = delivery_history.entry(
            outcome, status=400, error="Moog answered 400: bad severity", task_id="t-1",
            batch_size=size,
        )  # fmt: skip
        delivery_history.queue_entries(pipe, [ALERT["external_id"]], attempt, 60)
    pipe.execute()
    login(admin_client, "victor")
    page = html.unescape(admin_client.get(f"/admin/dlq/{letter_id}/").get_data(as_text=True))
    assert 'id="delivery-history"' in page and "Not sent to Moog." in page
    assert page.count("<td>rejected</td>") == 2 and "<td>dead_lettered</td>" in page
    assert "<td>20</td>" in page and "<code>t-1</code>" in page
    assert "<td>retry (again in 1.5 s)</td>" in page


def test_an_operator_replays_with_a_reason_and_the_replay_is_audited(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    letter = _dead_letter(sessions)
    login(admin_client, "olga")
    token = form_token(admin_client, f"/admin/dlq/{letter}/")
    refused = admin_client.post(
        f"/admin/dlq/{letter}/replay", data={"csrf_token": token, "reason": ""}
    )
    assert refused.status_code == 302 and _exists(sessions, DeadLetter, letter)
    assert redis_client.llen("mutt.forward") == 0

    done = admin_client.post(
        f"/admin/dlq/{letter}/replay", data={"csrf_token": token, "reason": "Moog fixed"}
    )
    assert done.status_code == 302
    assert redis_client.llen("mutt.forward") == 1  # published again
    assert not _exists(sessions, DeadLetter, letter)
    [row] = config_audit(sessions, "dead_letters")
    assert (row.changed_by, row.operation, row.record_id, row.reason) == (
        "olga",
        "DELETE",
        letter,
        "Moog fixed",
    )
    assert row.old_values["payload"] == {"alert": ALERT}
    assert row.new_values == {
        "replayed": True,
        "task": "mutt.forward_to_moog",
        "queue": "mutt.forward",
    }


def test_an_item_that_cannot_be_replayed_stays_and_nothing_is_audited(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    letter = _dead_letter(sessions, payload={"nothing": "usable"})
    login(admin_client, "olga")
    token = form_token(admin_client, f"/admin/dlq/{letter}/")
    admin_client.post(f"/admin/dlq/{letter}/replay", data={"csrf_token": token, "reason": "try"})
    assert _exists(sessions, DeadLetter, letter) and config_audit(sessions, "dead_letters") == []
    assert redis_client.llen("mutt.forward") == 0


def test_a_viewer_cannot_replay_and_an_operator_cannot_purge(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
) -> None:
    letter = _dead_letter(sessions)
    login(admin_client, "victor")
    token = form_token(admin_client, "/admin/dlq/")
    data = {"csrf_token": token, "reason": "because"}
    assert admin_client.post(f"/admin/dlq/{letter}/replay", data=data).status_code == 403
    admin_client.post("/logout", data={"csrf_token": token})
    login(admin_client, "olga")
    token = form_token(admin_client, "/admin/dlq/")
    data = {"csrf_token": token, "reason": "because"}
    assert admin_client.post(f"/admin/dlq/{letter}/purge", data=data).status_code == 403
    assert _exists(sessions, DeadLetter, letter) and config_audit(sessions, "dead_letters") == []


def test_an_admin_purges_a_poison_item_and_the_audit_keeps_it(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
) -> None:
    item = _poison(sessions)
    login(admin_client, "alice")
    listing = admin_client.get("/admin/dlq/?poison=1").get_data(as_text=True)
    assert f'data-item-id="{item}"' in listing and "gave up after 3 replays" in listing
    token = form_token(admin_client, f"/admin/dlq/{item}/?poison=1")
    no_csrf = admin_client.post(f"/admin/dlq/{item}/purge?poison=1", data={"reason": "x"})
    assert no_csrf.status_code == 400 and _exists(sessions, PoisonLetter, item)
    done = admin_client.post(
        f"/admin/dlq/{item}/purge?poison=1", data={"csrf_token": token, "reason": "known bad"}
    )
    assert done.status_code == 302 and not _exists(sessions, PoisonLetter, item)
    [row] = config_audit(sessions, "poison_letters")
    assert (row.changed_by, row.operation, row.reason, row.new_values) == (
        "alice",
        "DELETE",
        "known bad",
        None,
    )
    assert row.old_values["reason"] == "gave up after 3 replays"


# --- dynamic configuration and beat --------------------------------------------------------------


def test_an_operator_changes_dynamic_config_with_a_reason_and_one_audit_row(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    login(admin_client, "olga")
    page = admin_client.get("/admin/dynamic-config/").get_data(as_text=True)
    assert 'name="moog_rate_limit"' in page
    assert "mutt.remediate_dlq" in page and "every 60 s" in page  # the beat schedule
    assert "cron 17 0 * * *" in page
    token = form_token(admin_client, "/admin/dynamic-config/")
    form = {"csrf_token": token, "moog_rate_limit": "7", "alerter_shed_mode": "defer"}

    no_reason = admin_client.post("/admin/dynamic-config/", data=form)
    assert no_reason.status_code == 422 and redis_client.get(f"{PREFIX}:moog_rate_limit") is None

    done = admin_client.post("/admin/dynamic-config/", data={**form, "reason": "Moog asked"})
    assert done.status_code == 302
    assert redis_client.get(f"{PREFIX}:moog_rate_limit") == b"7"
    assert redis_client.get(f"{PREFIX}:alerter_shed_mode") == b"defer"
    [row] = config_audit(sessions, "dynamic_config")
    assert row.changed_by == "olga" and row.reason == "Moog asked"
    assert row.new_values == {"moog_rate_limit": 7, "alerter_shed_mode": "defer"}
    assert row.old_values == {"moog_rate_limit": 50, "alerter_shed_mode": "dlq"}


def test_bad_dynamic_config_values_change_nothing_and_name_the_problem(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
) -> None:
    login(admin_client, "alice")
    token = form_token(admin_client, "/admin/dynamic-config/")
    response = admin_client.post(
        "/admin/dynamic-config/",
        data={
            "csrf_token": token,
            "moog_rate_limit": "9",
            "moog_rate_period": "-1",
            "alerter_shed_mode": "drop",
            "reason": "r",
        },
    )
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 422
    assert "moog_rate_period must be >= 0.01" in page and "alerter_shed_mode must be one of" in page
    assert redis_client.get(f"{PREFIX}:moog_rate_limit") is None  # all or none
    assert config_audit(sessions, "dynamic_config") == []


def test_a_viewer_reads_dynamic_config_but_cannot_change_it(
    admin_client: FlaskClient,
    redis_client: redis.Redis,
) -> None:
    login(admin_client, "victor")
    page = admin_client.get("/admin/dynamic-config/").get_data(as_text=True)
    assert "moog_rate_limit" in page and 'name="moog_rate_limit"' not in page
    token = form_token(admin_client, "/admin/dynamic-config/")
    data = {"csrf_token": token, "moog_rate_limit": "7", "reason": "r"}
    assert admin_client.post("/admin/dynamic-config/", data=data).status_code == 403
    assert redis_client.get(f"{PREFIX}:moog_rate_limit") is None


# --- rule tester ---------------------------------------------------------------------------------


def _add_rules(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions.begin() as session:
        high = AlertRule(
            match_type="contains",
            match_string="LINK-3-UPDOWN",
            priority=900,
            prod_handling="Page_and_ticket",
            dev_handling="Email_only",
            team_assignment="WAN",
        )
        low = AlertRule(
            match_type="regex",
            match_string="changed state to (up|down)",
            priority=100,
            prod_handling="Ticket_only",
            dev_handling="Suppress",
            team_assignment="NETO",
        )
        session.add_all([high, low])
        session.flush()
        return high.id, low.id


def test_the_rule_tester_shows_the_winner_its_handling_team_and_what_it_shadows(
    admin_client: FlaskClient,
    sessions: sessionmaker[Session],
) -> None:
    high, low = _add_rules(sessions)
    login(admin_client, "victor")
    token = form_token(admin_client, "/admin/rule-tester/")
    event = '{"hostname": "r1", "message": "%LINK-3-UPDOWN: Gi0/1 changed state to down"}'
    page = admin_client.post("/admin/rule-tester/", data={"csrf_token": token, "event": event})
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f"Rule <strong>#{high}</strong> wins" in text
    assert 'id="handling">Page_and_ticket<' in text and 'id="team">WAN<' in text
    shadowed = text.split('id="shadowed"', 1)[1]
    assert f"#{low}" in shadowed
    template = "%LINK-3-UPDOWN: Gi0/1 changed state to down"  # identifiers only: nothing masked
    assert f'id="template">{template}<' in html.unescape(text)
    assert f'id="fingerprint">{fingerprint("r1", high, template, None)}<' in text
    assert 'id="dedup-key">host, severity, template<' in text
    assert 'id="dedup-window">60 s' in text

    tried = admin_client.post(
        "/admin/rule-tester/",
        data={"csrf_token": token, "event": event, "dedup_key": "host, message"},
    ).get_data(as_text=True)
    assert 'id="dedup-key">host, message<' in tried
    parts = html.unescape(tried.split('id="dedup-key-parts"', 1)[1].split("</table>", 1)[0])
    assert "<code>message</code></td><td><code>%LINK-3-UPDOWN: Gi0/1" in parts
    refused = admin_client.post(
        "/admin/rule-tester/",
        data={"csrf_token": token, "event": event, "dedup_key": "group:peer"},
    )
    assert refused.status_code == 422
    assert "group:peer needs a regex rule" in refused.get_data(as_text=True)

    unhandled = admin_client.post(
        "/admin/rule-tester/", data={"csrf_token": token, "event": '{"hostname": "r1"}'}
    ).get_data(as_text=True)
    assert "No rule matches" in unhandled


def test_the_rule_tester_explains_bad_input(admin_client: FlaskClient) -> None:
    login(admin_client, "victor")
    token = form_token(admin_client, "/admin/rule-tester/")
    for bad, message in (("{not json", "not valid JSON"), ("[1]", "must be a JSON object"),
                         ('{"message": "x"}', "not a valid event")):  # fmt: skip
        response = admin_client.post(
            "/admin/rule-tester/", data={"csrf_token": token, "event": bad}
        )
        assert response.status_code == 422
        assert message in html.unescape(response.get_data(as_text=True))


def test_the_rule_tester_page_stops_at_its_time_budget(
    settings: Settings,
    users: None,
    sessions: sessionmaker[Session],
) -> None:
    _add_rules(sessions)  # a regex among them: a search the budget is checked before
    web = create_app(
        settings.model_copy(
            update={"webui_cookie_secure": False, "classify_time_budget_seconds": 1e-6}
        )
    )
    try:
        client = web.test_client()
        login(client, "victor")
        token = form_token(client, "/admin/rule-tester/")
        event = '{"hostname": "r1", "message": "Gi0/1 changed state to down"}'
        response = client.post("/admin/rule-tester/", data={"csrf_token": token, "event": event})
    finally:
        close_web_app(web)
    assert response.status_code == 422
    text = html.unescape(response.get_data(as_text=True))
    assert "ran out of its 1e-06s time budget (CLASSIFY_TIME_BUDGET_SECONDS)" in text


# --- Flower --------------------------------------------------------------------------------------


def test_the_menu_links_to_flower_on_the_host_the_browser_used(
    admin_client: FlaskClient,
) -> None:
    login(admin_client, "victor")
    page = admin_client.get("/").get_data(as_text=True)
    assert 'href="http://localhost:5555/"' in page and 'target="_blank"' in page


def test_flower_url_overrides_the_menu_link(settings: Settings, users: None) -> None:
    web = create_app(
        settings.model_copy(
            update={"webui_cookie_secure": False, "flower_url": "https://flower.example.net/"}
        )
    )
    try:
        client = web.test_client()
        login(client, "victor")
        assert 'href="https://flower.example.net/"' in client.get("/").get_data(as_text=True)
    finally:
        close_web_app(web)


# --- Redis (the broker) down ---------------------------------------------------------------------


def test_with_redis_down_a_replay_or_config_change_changes_nothing_and_says_why(
    settings: Settings,
    users: None,
    sessions: sessionmaker[Session],
) -> None:
    letter = _dead_letter(sessions)
    web = create_app(
        settings.model_copy(
            update={"webui_cookie_secure": False, "redis_url": "redis://127.0.0.1:1/0"}
        )
    )
    try:
        client = web.test_client()
        login(client, "olga")
        token = form_token(client, f"/admin/dlq/{letter}/")
        replay = client.post(
            f"/admin/dlq/{letter}/replay",
            data={"csrf_token": token, "reason": "retry"},
            follow_redirects=True,
        )
        assert "broker is unreachable" in replay.get_data(as_text=True)
        assert (
            _exists(sessions, DeadLetter, letter) and config_audit(sessions, "dead_letters") == []
        )

        page = client.get("/admin/dynamic-config/").get_data(as_text=True)
        assert "Redis is unreachable" in page
        change = client.post(
            "/admin/dynamic-config/",
            data={"csrf_token": token, "moog_rate_limit": "7", "reason": "r"},
            follow_redirects=True,
        )
        assert "Nothing was changed: Redis is unreachable" in change.get_data(as_text=True)
        assert config_audit(sessions, "dynamic_config") == []
    finally:
        close_web_app(web)
