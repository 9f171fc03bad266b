"""The admin UI through Flask's test client, on a real PostgreSQL and Redis, logged in as real users.

Every log-in goes through the /login form with the CSRF token read from the page, as a browser does.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime

import pytest
import redis
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.db.models import NOT_FORWARDED_REASONS, AlertRule, ConfigAuditLog, EventAuditLog
from mutt_app.rules.cache import VERSION_KEY
from mutt_app.rules.validate import RuleError, validate_rule_fields
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.factories import RULE_FORM
from tests.web import PASSWORD, csrf_token, form_token, logged_in, login


def _rules(sessions: sessionmaker[Session]) -> list[AlertRule]:
    with sessions() as session:
        return list(session.scalars(select(AlertRule).order_by(AlertRule.id)))


def _audit(sessions: sessionmaker[Session]) -> list[ConfigAuditLog]:
    with sessions() as session:
        query = select(ConfigAuditLog).where(ConfigAuditLog.table_name != "users")
        return list(session.scalars(query.order_by(ConfigAuditLog.id)))


# --- log-in -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/admin/rules/", "/admin/rules/new/", "/admin/event-audit/", "/admin/hosts/"]
)
def test_unauthenticated_requests_go_to_the_login(admin_client: FlaskClient, path: str) -> None:
    response = admin_client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_login_logout_and_the_session_cookie(settings: Settings, users: None) -> None:
    app = create_app(settings)  # default: WEBUI_COOKIE_SECURE true
    try:
        client = app.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        response = client.post(
            "/login?next=/admin/rules/",
            data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        )
        assert response.status_code == 302
        assert response.headers["Location"] == "/admin/rules/"
        cookie = response.headers["Set-Cookie"]
        assert "mutt_session=" in cookie
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    finally:
        close_web_app(app)
    # The key was generated once and kept, so a restarted app accepts the same sessions.
    key = (settings.mutt_data_dir / "webui_secret_key").read_text().strip()
    assert len(key) == 64
    again = create_app(settings.model_copy(update={"webui_secret_key": None}))
    assert again.secret_key == key
    close_web_app(again)
    fixed = create_app(settings.model_copy(update={"webui_secret_key": SecretStr("s" * 40)}))
    assert fixed.secret_key == "s" * 40
    close_web_app(fixed)


def test_login_form_and_logout(admin_client: FlaskClient) -> None:
    assert login(admin_client, "alice", "wrong password") == 401
    assert not logged_in(admin_client)
    assert login(admin_client, "alice") == 302
    assert logged_in(admin_client)
    assert "alice (admin)" in admin_client.get("/").get_data(as_text=True)
    # Log-out is a POST with the CSRF token.
    token = form_token(admin_client, "/")
    assert admin_client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert not logged_in(admin_client)


def test_login_needs_the_csrf_token(admin_client: FlaskClient) -> None:
    response = admin_client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert not logged_in(admin_client)


def test_open_redirects_are_refused(admin_client: FlaskClient) -> None:
    token = csrf_token(admin_client.get("/login").get_data(as_text=True))
    response = admin_client.post(
        "/login?next=https://evil.example/",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/"


def test_failed_logins_lock_the_account_from_that_address_only(admin_client: FlaskClient) -> None:
    for _ in range(5):
        assert login(admin_client, "alice", "not the password") == 401
    # Locked from this address: even the right password is refused now.
    assert login(admin_client, "alice") == 429
    assert not logged_in(admin_client)
    # Another account from this address is not affected, nor alice from elsewhere.
    assert login(admin_client, "victor") == 302
    elsewhere = admin_client.application.test_client()
    token = csrf_token(elsewhere.get("/login").get_data(as_text=True))
    response = elsewhere.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "192.0.2.44"},
    )
    assert response.status_code == 302


# --- roles --------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["victor", "olga"])
def test_viewer_and_operator_read_but_cannot_change(
    admin_client: FlaskClient, sessions: sessionmaker, who: str
) -> None:
    assert login(admin_client, who) == 302
    for path in ("/", "/admin/rules/", "/admin/hosts/", "/admin/teams/", "/admin/config-audit/"):
        assert admin_client.get(path).status_code == 200, path
    listing = admin_client.get("/admin/rules/").get_data(as_text=True)
    assert "/admin/rules/new/" not in listing
    assert admin_client.get("/admin/rules/new/").status_code == 403
    token = form_token(admin_client, "/admin/rules/")
    response = admin_client.post(
        "/admin/rules/new/", data={**RULE_FORM, "reason": "sneaky", "csrf_token": token}
    )
    assert response.status_code == 403
    response = admin_client.post(
        "/admin/hosts/new/", data={"hostname": "h", "reason": "x", "csrf_token": token}
    )
    assert response.status_code == 403
    assert all(rule.match_string != "LINK-3-UPDOWN" for rule in _rules(sessions))
    assert _audit(sessions) == []


# --- changes ------------------------------------------------------------------------------------


def test_admin_creates_a_rule_with_a_reason_and_it_is_audited(
    admin_client: FlaskClient, sessions: sessionmaker, redis_client: redis.Redis
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    response = admin_client.post(
        "/admin/rules/new/",
        data={**RULE_FORM, "reason": "CHG-1234 new link flaps", "csrf_token": token},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    [rule] = [rule for rule in _rules(sessions) if rule.match_string == "LINK-3-UPDOWN"]
    assert (rule.priority, rule.trap_oid, rule.syslog_severity, rule.is_active) == (
        500,
        None,
        None,
        True,
    )
    [audit] = _audit(sessions)
    assert (audit.changed_by, audit.operation, audit.table_name, audit.record_id) == (
        "alice",
        "CREATE",
        "alert_rules",
        rule.id,
    )
    assert audit.reason == "CHG-1234 new link flaps"
    assert audit.old_values is None and audit.new_values["match_string"] == "LINK-3-UPDOWN"
    assert isinstance(audit.correlation_id, uuid.UUID)
    assert int(redis_client.get(VERSION_KEY) or 0) == 1


def test_a_rules_dedup_window_is_set_in_the_form_and_checked(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    form = {**RULE_FORM, "reason": "noisy", "csrf_token": token}
    refused = admin_client.post("/admin/rules/new/", data={**form, "dedup_window_seconds": "-5"})
    assert refused.status_code == 200  # the form again, with the error
    assert all(rule.match_string != "LINK-3-UPDOWN" for rule in _rules(sessions))
    response = admin_client.post("/admin/rules/new/", data={**form, "dedup_window_seconds": "300"})
    assert response.status_code == 302, response.get_data(as_text=True)
    [rule] = [rule for rule in _rules(sessions) if rule.match_string == "LINK-3-UPDOWN"]
    assert rule.dedup_window_seconds == 300


def test_a_rules_dedup_key_is_set_in_the_form_checked_and_audited(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    form = {
        **RULE_FORM,
        "match_type": "regex",
        "match_string": r"BGP peer (?P<peer>\S+) down",
        "reason": "one incident per peer",
        "csrf_token": token,
    }
    for bad, message in (
        ("host, peer", "dedup_key: unknown part 'peer'; the parts are host, severity, template"),
        (
            "group:vrf",
            "dedup_key: the rule's regex has no group named 'vrf' (its named groups: peer)",
        ),
    ):
        refused = admin_client.post("/admin/rules/new/", data={**form, "dedup_key": bad})
        assert refused.status_code == 200  # the form again, with the error
        page = html.unescape(refused.get_data(as_text=True))
        assert f"Not a valid rule: {message}" in page
    assert not _rules(sessions)
    response = admin_client.post(
        "/admin/rules/new/", data={**form, "dedup_key": "host, group:peer"}
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    [rule] = _rules(sessions)
    assert rule.dedup_key == "host, group:peer"
    [audit] = _audit(sessions)
    assert audit.new_values["dedup_key"] == "host, group:peer"

    edit = f"/admin/rules/edit/?id={rule.id}"
    token = form_token(admin_client, edit)
    cleared = {**form, "csrf_token": token, "dedup_key": "  ", "reason": "back to the default"}
    assert admin_client.post(edit, data=cleared).status_code == 302
    assert _rules(sessions)[0].dedup_key is None  # blank: the default key
    changed = [a for a in _audit(sessions) if a.operation == "UPDATE"]
    assert [(a.old_values["dedup_key"], a.new_values["dedup_key"]) for a in changed] == [
        ("host, group:peer", None)
    ]


def test_a_change_without_a_reason_is_refused(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    response = admin_client.post("/admin/rules/new/", data={**RULE_FORM, "csrf_token": token})
    assert response.status_code == 200  # the form again, with the error
    assert all(rule.match_string != "LINK-3-UPDOWN" for rule in _rules(sessions))
    assert _audit(sessions) == []


def test_a_bad_regex_is_refused_with_the_engines_message(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    bad = {**RULE_FORM, "match_type": "regex", "match_string": "(?<=lookbehind)down"}
    with pytest.raises(RuleError) as refused:
        validate_rule_fields(
            "regex", bad["match_string"], None, None, 500, "Ticket_only", "Suppress", "NETO"
        )
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    response = admin_client.post(
        "/admin/rules/new/", data={**bad, "reason": "try", "csrf_token": token}
    )
    assert response.status_code == 200
    assert f"Not a valid rule: {refused.value}" in html.unescape(response.get_data(as_text=True))
    assert all(rule.match_string != bad["match_string"] for rule in _rules(sessions))
    assert _audit(sessions) == []


@pytest.mark.parametrize(
    ("match_type", "length", "limit"),
    [
        ("regex", 100_000, "MAX_PATTERN_CHARS"),  # the probe's rule, which stalled classification
        ("contains", 5_000, "MAX_CONTAINS_CHARS"),
    ],
)
def test_a_rule_over_a_bound_is_refused_naming_it_on_create_and_edit(
    admin_client: FlaskClient, sessions: sessionmaker, match_type: str, length: int, limit: str
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    huge = {**RULE_FORM, "match_type": match_type, "match_string": "x" * length, "reason": "big"}
    response = admin_client.post("/admin/rules/new/", data={**huge, "csrf_token": token})
    assert response.status_code == 200
    page = html.unescape(response.get_data(as_text=True))
    assert f"Not a valid rule: match_string is {length:,} characters" in page and limit in page
    assert _rules(sessions) == [] and _audit(sessions) == []

    data = {**RULE_FORM, "reason": "setup", "csrf_token": token}
    assert admin_client.post("/admin/rules/new/", data=data).status_code == 302
    [created] = _rules(sessions)
    response = admin_client.post(
        f"/admin/rules/edit/?id={created.id}", data={**huge, "csrf_token": token}
    )
    assert response.status_code == 200 and limit in html.unescape(response.get_data(as_text=True))
    assert [r.match_string for r in _rules(sessions)] == ["LINK-3-UPDOWN"]


def test_admin_edits_deletes_and_bulk_deactivates_rules(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    for text in ("ALPHA", "BRAVO"):
        data = {**RULE_FORM, "match_string": text, "reason": "setup", "csrf_token": token}
        assert admin_client.post("/admin/rules/new/", data=data).status_code == 302
    alpha, bravo = [r for r in _rules(sessions) if r.match_string in ("ALPHA", "BRAVO")]

    edit = {**RULE_FORM, "match_string": "ALPHA", "priority": "600", "reason": "raise it"}
    response = admin_client.post(
        f"/admin/rules/edit/?id={alpha.id}", data={**edit, "csrf_token": token}
    )
    assert response.status_code == 302
    update = _audit(sessions)[-1]
    assert (update.operation, update.record_id, update.reason) == ("UPDATE", alpha.id, "raise it")
    assert update.old_values["priority"] == 500 and update.new_values["priority"] == 600

    # Delete deactivates (the event audit keeps referring to the rule) and needs a reason too.
    data = {"id": str(alpha.id), "csrf_token": token}
    admin_client.post("/admin/rules/delete/", data=data)
    assert next(r for r in _rules(sessions) if r.id == alpha.id).is_active
    admin_client.post("/admin/rules/delete/", data={**data, "reason": "obsolete"})
    assert not next(r for r in _rules(sessions) if r.id == alpha.id).is_active
    delete = _audit(sessions)[-1]
    assert (delete.operation, delete.record_id, delete.reason) == ("DELETE", alpha.id, "obsolete")

    response = admin_client.post(
        "/admin/rules/action/",
        data={
            "action": "deactivate",
            "rowid": [str(alpha.id), str(bravo.id)],
            "reason": "maintenance window",
            "csrf_token": token,
        },
    )
    assert response.status_code == 302
    assert not next(r for r in _rules(sessions) if r.id == bravo.id).is_active
    bulk = _audit(sessions)[-1]
    assert (bulk.operation, bulk.record_id, bulk.changed_by) == ("UPDATE", bravo.id, "alice")
    assert bulk.reason == "maintenance window"


def test_admin_manages_hosts_and_teams(admin_client: FlaskClient, sessions: sessionmaker) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/hosts/new/")
    data = {"hostname": "lab-01", "description": "lab", "reason": "lab", "csrf_token": token}
    assert admin_client.post("/admin/hosts/new/", data=data).status_code == 302
    data = {"hostname": "core-01", "team_assignment": "CORE", "reason": "own", "csrf_token": token}
    assert admin_client.post("/admin/teams/new/", data=data).status_code == 302
    audit = _audit(sessions)
    assert [(a.table_name, a.operation, a.changed_by) for a in audit] == [
        ("development_hosts", "CREATE", "alice"),
        ("device_teams", "CREATE", "alice"),
    ]
    data = {"id": str(audit[0].record_id), "reason": "gone", "csrf_token": token}
    assert admin_client.post("/admin/hosts/delete/", data=data).status_code == 302
    delete = _audit(sessions)[-1]
    assert (delete.table_name, delete.operation, delete.new_values) == (
        "development_hosts",
        "DELETE",
        None,
    )
    assert "lab-01" not in admin_client.get("/admin/hosts/").get_data(as_text=True)


def test_audits_are_read_only_and_filterable(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    now = datetime.now(UTC)
    correlation = uuid.uuid4()
    with sessions.begin() as session:
        session.add(
            EventAuditLog(
                event_timestamp=now,
                received_at=now,
                hostname="router-07",
                message="Interface down",
                handling_decision="Page_and_ticket",
                team_assignment="NETO",
                matched_rule_id=1,
                correlation_id=correlation,
            )
        )
    assert login(admin_client, "victor") == 302
    page = admin_client.get("/admin/event-audit/").get_data(as_text=True)
    assert "router-07" in page
    assert "/admin/event-audit/new/" not in page
    assert admin_client.get("/admin/event-audit/new/").status_code == 403
    assert admin_client.get("/admin/config-audit/new/").status_code == 403
    # The list's filters, as the filter form puts them in the URL.
    listing = "/admin/event-audit/?flt0_{}={}"
    found = admin_client.get(listing.format("correlation_id_equals", correlation))
    assert "router-07" in found.get_data(as_text=True)
    other = admin_client.get(listing.format("hostname_equals", "router-99"))
    assert "router-07" not in other.get_data(as_text=True)
    assert "router-07" in admin_client.get(listing.format("hostname_equals", "router-07")).get_data(
        as_text=True
    )


def test_the_event_audit_filters_by_why_not_forwarded_and_shows_the_rules_version(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        for hostname, reason, version in (
            ("quiet-01", "unmatched", 41),
            ("lab-01", "dev_handling", 41),
            ("core-01", None, 42),
        ):
            session.add(
                EventAuditLog(
                    event_timestamp=now,
                    received_at=now,
                    hostname=hostname,
                    message="m",
                    handling_decision="Log_only",
                    forwarded_to_moog=reason is None,
                    held_reason=reason,
                    rules_version=version,
                    correlation_id=uuid.uuid4(),
                )
            )
    assert login(admin_client, "victor") == 302
    page = admin_client.get("/admin/event-audit/").get_data(as_text=True)
    assert "Why not forwarded" in page and "Rules version" in page
    # The filter offers every reason, as a drop-down (its options are JSON the page's script reads).
    groups = re.search(r'id="filter-groups-data"[^>]*>([^<]*)<', page)
    assert groups and all(f'"{reason}"' in groups.group(1) for reason in NOT_FORWARDED_REASONS)
    listing = "/admin/event-audit/?flt0_{}={}"
    unmatched = admin_client.get(listing.format("why_not_forwarded_equals", "unmatched"))
    text = unmatched.get_data(as_text=True)
    assert "quiet-01" in text and "lab-01" not in text and "core-01" not in text
    by_version = admin_client.get(listing.format("rules_version_equals", 42)).get_data(as_text=True)
    assert "core-01" in by_version and "quiet-01" not in by_version


def test_a_link_fills_in_the_rule_form_and_nothing_is_saved_until_submitted(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    assert login(admin_client, "alice") == 302
    query = (
        "match_type=regex&match_string=fan%5Cs%2B%5CS%2B%5Cs%2Bfailed%22%3E&team_assignment=NETO"
    )
    page = admin_client.get(f"/admin/rules/new/?{query}").get_data(as_text=True)
    assert 'value="fan\\s+\\S+\\s+failed&#34;&gt;"' in page  # escaped, not markup
    assert re.search(r'<option selected value="regex">|<option value="regex" selected', page)
    assert 'value="NETO"' in page
    # A match type that is not one is ignored, not shown.
    page = admin_client.get("/admin/rules/new/?match_type=bogus").get_data(as_text=True)
    assert "bogus" not in page
    assert _rules(sessions) == []


def test_the_api_keeps_working_without_csrf_or_login(settings: Settings, users: None) -> None:
    app = create_app(settings.model_copy(update={"webui_api_key": SecretStr("k" * 24)}))
    try:
        client = app.test_client()
        body = {**{k: v for k, v in RULE_FORM.items() if v}, "priority": 500, "reason": "api"}
        body.pop("is_active")
        response = client.post("/api/v2/rules", json=body, headers={"X-API-Key": "k" * 24})
        assert response.status_code == 201, response.get_json()
        assert client.post("/api/v2/nowhere", headers={"X-API-Key": "k" * 24}).status_code == 404
    finally:
        close_web_app(app)


def test_a_rule_names_the_rule_it_clears_in_the_form_and_it_is_checked(
    admin_client: FlaskClient, sessions: sessionmaker
) -> None:
    assert login(admin_client, "alice") == 302
    token = form_token(admin_client, "/admin/rules/new/")
    form = {**RULE_FORM, "reason": "pair", "csrf_token": token}
    refused = admin_client.post("/admin/rules/new/", data={**form, "clears_rule_id": "999"})
    assert refused.status_code == 200  # the form again: no rule 999
    assert all(rule.match_string != "LINK-3-UPDOWN" for rule in _rules(sessions))
    assert admin_client.post("/admin/rules/new/", data=form).status_code == 302
    [down] = [rule for rule in _rules(sessions) if rule.match_string == "LINK-3-UPDOWN"]
    up = {**form, "match_string": "LINK-UP", "clears_rule_id": str(down.id)}
    response = admin_client.post("/admin/rules/new/", data=up)
    assert response.status_code == 302, response.get_data(as_text=True)
    [rule] = [rule for rule in _rules(sessions) if rule.match_string == "LINK-UP"]
    assert rule.clears_rule_id == down.id
    edit = f"/admin/rules/edit/?id={down.id}"
    itself = {**form, "csrf_token": form_token(admin_client, edit), "clears_rule_id": str(down.id)}
    assert admin_client.post(edit, data=itself).status_code == 200  # a rule cannot clear itself
