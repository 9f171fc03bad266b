"""The REST API v2 against a real PostgreSQL and Redis, through Flask's test client.

Chosen behaviour checked here: a ``limit`` above 500 is refused with 400 (not clamped); a change
that changes nothing answers 200 with ``changed: false`` and writes no audit row.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import redis
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, DevelopmentHost
from mutt_app.rules.validate import (
    MAX_CONTAINS_CHARS,
    MAX_PATTERN_CHARS,
    MAX_TRAP_OID_CHARS,
)
from mutt_app.web import create_app
from mutt_app.web.api.errors import constraint_error
from tests.conftest import close_web_app
from tests.factories import CATCH_ALL, CRITICAL, INTERFACE, event_audit_rows
from tests.records import audit_rows, engine_message, rules_version
from tests.web import AUTH, KEY, call

# --- authentication ----------------------------------------------------------------------------


def test_requests_without_the_right_key_are_refused(api_client: FlaskClient) -> None:
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}, {"X-API-Key": "é"}):
        response = api_client.get("/api/v2/rules", headers=headers)
        assert response.status_code == 401
        assert response.headers["X-API-Version"] == "2"
        assert set(response.json) == {"error", "details"}
    response = api_client.post("/api/v2/rules", json=CRITICAL | {"reason": "x"})
    assert response.status_code == 401
    assert call(api_client, "GET", "/api/v2/rules", status=200)["total"] == 0
    assert call(api_client, "GET", "/api/v1/rules", status=200)["total"] == 0  # the alias


def test_without_a_configured_key_every_request_is_refused(settings: Settings) -> None:
    app = create_app(settings)  # no WEBUI_API_KEY
    try:
        client = app.test_client()
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "anything"}):
            response = client.get("/api/v2/dev-hosts", headers=headers)
            assert response.status_code == 401
            assert "no API key is configured" in response.json["error"]
        assert client.get("/health").status_code == 200  # only the API is closed
    finally:
        close_web_app(app)


def test_unknown_routes_and_methods_answer_json(api_client: FlaskClient) -> None:
    response = api_client.get("/api/v2/nothing-here", headers=AUTH)
    assert response.status_code == 404 and response.json["error"] == "Not Found"
    assert response.headers["X-API-Version"] == "2"
    response = api_client.patch("/api/v2/rules/1", headers=AUTH)
    assert response.status_code == 405 and "PUT" in response.headers["Allow"]
    assert api_client.get("/not-the-api").status_code == 404  # other paths keep Flask's page
    assert not api_client.get("/not-the-api").is_json


# --- rules: create, read, list ----------------------------------------------------------------


def test_create_and_read_a_rule_with_one_audit_row_and_a_version_bump(
    api_client: FlaskClient, engine: Engine, redis_client: redis.Redis
) -> None:
    correlation = str(uuid.uuid4())
    created = call(
        api_client,
        "POST",
        "/api/v2/rules",
        INTERFACE,
        reason="page on interface flaps",
        headers={"X-Correlation-ID": correlation},
        status=201,
    )
    rule_id = created["id"]
    assert created["changed"] is True and created["correlation_id"] == correlation
    assert created["rules_version"] == rules_version(redis_client) == 1

    rule = call(api_client, "GET", f"/api/v2/rules/{rule_id}", status=200)["rule"]
    assert {k: rule[k] for k in INTERFACE} == INTERFACE
    assert rule["is_active"] is True and rule["trap_oid"] is None and rule["created_at"]

    rows = audit_rows(engine)
    assert len(rows) == 1
    row = rows[0]
    assert (row.operation, row.table_name, row.record_id) == ("CREATE", "alert_rules", rule_id)
    assert (row.changed_by, row.reason) == ("api-key", "page on interface flaps")
    assert str(row.correlation_id) == correlation
    assert row.old_values is None and row.new_values == rule


def test_list_rules_filters_and_pages(api_client: FlaskClient) -> None:
    ids = [
        call(api_client, "POST", "/api/v2/rules", spec, status=201)["id"]
        for spec in (
            CRITICAL,
            INTERFACE,
            CATCH_ALL,
            INTERFACE | {"team_assignment": "UNIX", "priority": 10},
        )
    ]
    call(api_client, "DELETE", f"/api/v2/rules/{ids[3]}", {}, status=200)

    every = call(api_client, "GET", "/api/v2/rules", status=200)
    assert (every["total"], every["limit"], every["offset"]) == (4, 100, 0)
    assert [r["id"] for r in every["rules"]] == [ids[0], ids[1], ids[3], ids[2]]  # priority order

    page = call(api_client, "GET", "/api/v2/rules?limit=2&offset=1", status=200)
    assert [r["id"] for r in page["rules"]] == [ids[1], ids[3]] and page["total"] == 4
    active = call(api_client, "GET", "/api/v2/rules?is_active=true", status=200)
    assert active["total"] == 3 and ids[3] not in [r["id"] for r in active["rules"]]
    assert call(api_client, "GET", "/api/v2/rules?is_active=false", status=200)["total"] == 1
    regex = call(api_client, "GET", "/api/v2/rules?match_type=regex", status=200)
    assert {r["id"] for r in regex["rules"]} == {ids[1], ids[3]}
    unix = call(api_client, "GET", "/api/v2/rules?team=UNIX", status=200)
    assert [r["id"] for r in unix["rules"]] == [ids[3]]
    assert len(call(api_client, "GET", "/api/v2/rules?limit=500", status=200)["rules"]) == 4

    # limit above 500 is refused, not clamped; so are nonsense parameters.
    for query in (
        "limit=501",
        "limit=0",
        "limit=ten",
        "offset=-1",
        "is_active=maybe",
        "match_type=glob",
    ):
        error = call(api_client, "GET", f"/api/v2/rules?{query}", status=400)
        assert error["error"] and error["details"]["parameter"] in query


# --- rules: validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (CRITICAL | {"colour": "red"}, "unknown field: colour"),
        (CRITICAL | {"colour": 1, "size": 2}, "unknown fields: colour, size"),
        (CRITICAL | {"id": 7}, "read-only field: id"),
        (CRITICAL | {"priority": "high"}, "priority expected integer, got string"),
        (CRITICAL | {"priority": 100.0}, "priority expected integer, got number"),
        (CRITICAL | {"is_active": "yes"}, "is_active expected boolean, got string"),
        (
            CRITICAL | {"syslog_severity": True},
            "syslog_severity expected integer or null, got boolean",
        ),
        (CRITICAL | {"match_string": ["a"]}, "match_string expected string or null, got array"),
        (CRITICAL | {"priority": None}, "priority must not be null"),
        (CRITICAL | {"team_assignment": None}, "missing required field: team_assignment"),
        (CRITICAL | {"match_string": "a\x00b"}, "match_string must not contain NUL"),
        ({k: v for k, v in CRITICAL.items() if k != "dev_handling"}, "missing required field"),
    ],
)
def test_malformed_rules_are_422_naming_the_field(
    api_client: FlaskClient, engine: Engine, redis_client: redis.Redis, body: dict, needle: str
) -> None:
    error = call(api_client, "POST", "/api/v2/rules", body, status=422)
    assert needle in error["error"]
    assert error["details"]
    assert audit_rows(engine) == [] and rules_version(redis_client) == 0


@pytest.mark.parametrize(
    "fields",
    [
        INTERFACE | {"match_string": "(a)\\1"},  # a backreference: RE2 refuses it
        INTERFACE | {"match_string": "(?=lookahead)"},
        CRITICAL | {"priority": 0},
        CRITICAL | {"priority": 1001},
        CRITICAL | {"syslog_severity": 8},
        CRITICAL | {"match_type": "glob"},
        INTERFACE | {"match_string": "(unclosed"},
        CRITICAL | {"prod_handling": "Suppress"},  # a dev-only handling
        CRITICAL | {"dev_handling": "Page_and_ticket"},  # a prod-only handling
        CRITICAL | {"syslog_severity": -1},
        CRITICAL | {"trap_oid": "  "},
        CRITICAL | {"match_string": ""},
        CRITICAL | {"team_assignment": "  "},
        CRITICAL | {"match_type": "oid_prefix"},  # an oid_prefix rule needs a trap_oid
        CRITICAL | {"match_string": None},  # no criterion at all
        CRITICAL | {"match_string": None, "trap_oid": "1.3.6.1"},  # contains needs a string
    ],
)
def test_rules_the_engine_refuses_are_422_with_its_message(
    api_client: FlaskClient, engine: Engine, fields: dict
) -> None:
    error = call(api_client, "POST", "/api/v2/rules", fields, status=422)
    problems = error["details"].get("fields")
    if problems is not None:  # outside a field's documented bounds: refused before the engine
        assert len(problems) == 1 and all(name in error["error"] for name in problems)
    else:
        assert error["error"] == engine_message(**fields)
    with Session(engine) as session:
        assert session.scalars(select(AlertRule)).all() == []


def test_bad_regex_message_is_re2s(api_client: FlaskClient) -> None:
    error = call(
        api_client, "POST", "/api/v2/rules", INTERFACE | {"match_string": "(a)\\1"}, status=422
    )
    assert error["error"].startswith("invalid regex '(a)\\\\1': ")
    assert "backreference" in error["error"] or "escape" in error["error"]


@pytest.mark.parametrize(
    ("fields", "limit"),
    [
        # A length over the bound is refused as the description documents it (maxLength) ...
        (INTERFACE | {"match_string": "x" * 100_000}, f"at most {MAX_PATTERN_CHARS} characters"),
        (CRITICAL | {"match_string": "y" * 5_000_000}, f"at most {MAX_CONTAINS_CHARS} characters"),
        (
            CRITICAL | {"match_type": "oid_prefix", "match_string": None, "trap_oid": "1." * 600},
            f"at most {MAX_TRAP_OID_CHARS} characters",
        ),
        # ... and a short pattern with a huge program by the engine, which names its bound.
        (INTERFACE | {"match_string": "a.{1000}"}, "MAX_REGEX_PROGRAM_SIZE"),
    ],
)
def test_rules_over_a_bound_are_422_naming_it_on_create_and_update(
    api_client: FlaskClient, fields: dict, limit: str
) -> None:
    error = call(api_client, "POST", "/api/v2/rules", fields, status=422)
    assert limit in error["error"]
    assert len(orjson.dumps(error)) < 2000  # the refused string is not echoed in full
    assert call(api_client, "GET", "/api/v2/rules")["rules"] == []

    created = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)
    error = call(api_client, "PUT", f"/api/v2/rules/{created['id']}", fields, status=422)
    assert limit in error["error"]
    assert call(api_client, "GET", f"/api/v2/rules/{created['id']}")["rule"]["match_string"] == (
        "CRITICAL"
    )


def test_the_rule_tester_is_422_when_it_runs_out_of_its_time_budget(
    settings: Settings, api_client: FlaskClient
) -> None:
    call(api_client, "POST", "/api/v2/rules", INTERFACE, status=201)
    event = {"hostname": "router-01", "message": "Interface Gi0/1 changed state to down"}
    assert call(api_client, "POST", "/api/v2/rules/test", event, reason=None, status=200)["matched"]

    hurried = create_app(
        settings.model_copy(
            update={"webui_api_key": SecretStr(KEY), "classify_time_budget_seconds": 1e-6}
        )
    )
    try:
        error = call(
            hurried.test_client(), "POST", "/api/v2/rules/test", event, reason=None, status=422
        )
    finally:
        close_web_app(hurried)
    assert "CLASSIFY_TIME_BUDGET_SECONDS" in error["error"] and "1e-06s" in error["error"]


def test_a_change_needs_a_reason_and_a_json_object(api_client: FlaskClient, engine: Engine) -> None:
    error = call(api_client, "POST", "/api/v2/rules", CRITICAL, reason=None, status=422)
    assert "reason" in error["error"] and error["details"] == {"missing_fields": ["reason"]}
    call(api_client, "POST", "/api/v2/rules", CRITICAL | {"reason": "   "}, reason=None, status=422)
    call(api_client, "POST", "/api/v2/rules", CRITICAL | {"reason": 5}, reason=None, status=422)
    for data in (b"{not json", b"[1, 2]", b'"text"'):
        response = api_client.post(
            "/api/v2/rules", data=data, headers=AUTH | {"Content-Type": "application/json"}
        )
        assert response.status_code == 400 and response.json["error"]
    response = api_client.post(
        "/api/v2/rules",
        json=CRITICAL | {"reason": "r"},
        headers=AUTH | {"X-Correlation-ID": "not-a-uuid"},
    )
    assert response.status_code == 400
    assert audit_rows(engine) == []
    # The header is as good as the body field.
    created = call(
        api_client,
        "POST",
        "/api/v2/rules",
        CRITICAL,
        reason=None,
        headers={"X-Change-Reason": "from the header"},
        status=201,
    )
    assert audit_rows(engine, record_id=created["id"])[0].reason == "from the header"


def test_database_constraint_violations_map_to_422_and_409(engine: Engine) -> None:
    # The API validates before writing, so a constraint is its last line of defence; here it is
    # tripped directly, as a writer that bypassed validation would.
    with Session(engine) as session:
        session.add(AlertRule(**CRITICAL | {"priority": 0, "is_active": True}))
        with pytest.raises(IntegrityError) as caught:
            session.flush()
    error = constraint_error(caught.value)
    assert error.status == 422
    assert error.details["constraint"].endswith("priority_range")

    with Session(engine) as session:
        session.add_all([DevelopmentHost(hostname="twin"), DevelopmentHost(hostname="twin")])
        with pytest.raises(IntegrityError) as caught:
            session.flush()
    # A unique violation is a duplicate.
    duplicate = constraint_error(caught.value, conflict="dup")
    assert (duplicate.status, duplicate.error) == (409, "dup")
    assert duplicate.details["constraint"] == "uq_development_hosts_hostname"


# --- rules: update and delete -----------------------------------------------------------------


def test_update_is_partial_validated_merged_and_audited(
    api_client: FlaskClient, engine: Engine, redis_client: redis.Redis
) -> None:
    rule_id = call(api_client, "POST", "/api/v2/rules", INTERFACE, status=201)["id"]
    before = call(api_client, "GET", f"/api/v2/rules/{rule_id}", status=200)["rule"]

    updated = call(
        api_client,
        "PUT",
        f"/api/v2/rules/{rule_id}",
        {"priority": 500, "team_assignment": "WAN"},
        reason="too noisy",
        status=200,
    )
    assert updated["changed"] is True and updated["rules_version"] == 2 == rules_version(
        redis_client
    )
    after = updated["rule"]
    assert (after["priority"], after["team_assignment"]) == (500, "WAN")
    assert after["match_string"] == INTERFACE["match_string"]  # untouched fields stay
    rows = audit_rows(engine, operation="UPDATE")
    assert len(rows) == 1
    assert rows[0].old_values == before and rows[0].new_values == after
    assert rows[0].old_values["priority"] == 800 and rows[0].new_values["priority"] == 500
    assert rows[0].reason == "too noisy" and rows[0].record_id == rule_id

    # Validated on the merged rule: the stored regex type with a pattern RE2 refuses...
    error = call(
        api_client, "PUT", f"/api/v2/rules/{rule_id}", {"match_string": "a(?!b)"}, status=422
    )
    assert error["error"].startswith("invalid regex 'a(?!b)'")
    # ...or a type change that the stored fields cannot satisfy.
    error = call(
        api_client, "PUT", f"/api/v2/rules/{rule_id}", {"match_type": "oid_prefix"}, status=422
    )
    assert error["error"] == "an oid_prefix rule needs a trap_oid"
    ok = call(
        api_client,
        "PUT",
        f"/api/v2/rules/{rule_id}",
        {"match_type": "oid_prefix", "trap_oid": "1.3.6.1.4.1.9", "match_string": None},
        status=200,
    )
    assert ok["rule"]["match_string"] is None and ok["rule"]["trap_oid"] == "1.3.6.1.4.1.9"

    call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {"priority": "1"}, status=422)
    call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {"bogus": 1}, status=422)
    call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {"created_at": "now"}, status=422)
    call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {}, status=422)  # nothing to update
    call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {"priority": 5}, reason=None, status=422)
    assert len(audit_rows(engine, operation="UPDATE")) == 2

    # Asking for what is already there changes nothing: no audit row, no version bump.
    same = call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {"priority": 500}, status=200)
    assert same["changed"] is False and same["rules_version"] is None
    assert len(audit_rows(engine)) == 3 and rules_version(redis_client) == 3

    assert call(api_client, "PUT", "/api/v2/rules/999999", {"priority": 5}, status=404)["error"]
    assert call(api_client, "PUT", f"/api/v2/rules/{2**40}", {"priority": 5}, status=404)
    assert call(api_client, "GET", "/api/v2/rules/424242", status=404)["error"] == "no rule 424242"


def test_delete_is_soft_and_audited(
    api_client: FlaskClient, engine: Engine, redis_client: redis.Redis
) -> None:
    rule_id = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"]
    call(api_client, "DELETE", f"/api/v2/rules/{rule_id}", {"bogus": 1}, status=422)
    call(api_client, "DELETE", f"/api/v2/rules/{rule_id}", {}, reason=None, status=422)
    response = api_client.delete(
        f"/api/v2/rules/{rule_id}", headers=AUTH | {"X-Change-Reason": "retired"}
    )
    assert response.status_code == 200 and response.json["rule"]["is_active"] is False
    assert rules_version(redis_client) == 2
    assert (
        call(api_client, "GET", f"/api/v2/rules/{rule_id}", status=200)["rule"]["is_active"]
        is False
    )
    [row] = audit_rows(engine, operation="DELETE")
    assert (row.record_id, row.reason) == (rule_id, "retired")
    assert row.old_values["is_active"] is True and row.new_values["is_active"] is False

    again = call(api_client, "DELETE", f"/api/v2/rules/{rule_id}", {}, status=200)
    assert again["changed"] is False and len(audit_rows(engine)) == 2
    call(api_client, "DELETE", "/api/v2/rules/999999", {}, status=404)
    # Reactivating is an update.
    back = call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {"is_active": True}, status=200)
    assert back["rule"]["is_active"] is True


def test_a_change_stands_when_redis_is_down(settings: Settings, engine: Engine) -> None:
    app = create_app(
        settings.model_copy(
            update={"webui_api_key": SecretStr(KEY), "redis_url": "redis://127.0.0.1:1/0"}
        )
    )
    try:
        created = call(app.test_client(), "POST", "/api/v2/rules", CRITICAL, status=201)
    finally:
        close_web_app(app)
    assert created["rules_version"] is None and "not bumped" in created["warnings"][0]
    assert len(audit_rows(engine, record_id=created["id"])) == 1


# --- the rule tester --------------------------------------------------------------------------


def test_the_rule_tester_names_the_winner_and_what_it_shadows(api_client: FlaskClient) -> None:
    critical = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"]
    interface = call(api_client, "POST", "/api/v2/rules", INTERFACE, status=201)["id"]
    catch_all = call(api_client, "POST", "/api/v2/rules", CATCH_ALL, status=201)["id"]
    retired = call(api_client, "POST", "/api/v2/rules", CRITICAL | {"priority": 999}, status=201)[
        "id"
    ]
    call(api_client, "DELETE", f"/api/v2/rules/{retired}", {}, status=200)

    event = {"hostname": "r1", "message": "CRITICAL: Interface Gi0/1 down", "severity": 3}
    answer = call(api_client, "POST", "/api/v2/rules/test", event, reason=None, status=200)
    assert answer["matched"] is True and answer["rule_id"] == critical
    assert answer["rule"]["id"] == critical and answer["rule"]["priority"] == 900
    assert [r["id"] for r in answer["shadowed"]] == [interface, catch_all]
    assert (answer["handling"], answer["team"], answer["is_dev"]) == (
        "Page_and_ticket",
        "NETO",
        False,
    )
    assert answer["forward"] is True and answer["event"]["syslog_severity"] == 3
    assert answer["skipped_rules"] == []

    # Development hosts and device teams are taken into account.
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "r1"}, status=201)
    call(
        api_client,
        "POST",
        "/api/v2/teams",
        {"hostname": "r1", "team_assignment": "WAN"},
        status=201,
    )
    answer = call(api_client, "POST", "/api/v2/rules/test", event, reason=None, status=200)
    assert (answer["handling"], answer["team"], answer["is_dev"]) == ("Ticket_only", "WAN", True)

    answer = call(
        api_client,
        "POST",
        "/api/v2/rules/test",
        {"hostname": "r2", "message": "Interface Gi0/2 down"},
        reason=None,
        status=200,
    )
    assert answer["rule_id"] == interface and answer["shadowed"] == []  # no severity: no catch-all
    answer = call(
        api_client,
        "POST",
        "/api/v2/rules/test",
        {"hostname": "r2", "message": "all quiet"},
        reason=None,
        status=200,
    )
    assert answer["matched"] is False and answer["rule"] is None and answer["rule_id"] is None
    assert (answer["handling"], answer["team"]) == ("Log_only", "NETO")  # UNHANDLED_DEFAULT_TEAM

    error = call(
        api_client, "POST", "/api/v2/rules/test", {"message": "no host"}, reason=None, status=422
    )
    assert "hostname" in error["error"]
    call(
        api_client,
        "POST",
        "/api/v2/rules/test",
        {"hostname": "h", "severity": 9},
        reason=None,
        status=422,
    )


# --- development hosts and device teams --------------------------------------------------------


def test_dev_hosts_add_list_duplicate_remove(
    api_client: FlaskClient, engine: Engine, redis_client: redis.Redis
) -> None:
    assert call(api_client, "GET", "/api/v2/dev-hosts", status=200) == {
        "dev_hosts": [],
        "total": 0,
        "limit": 100,
        "offset": 0,
    }
    created = call(
        api_client,
        "POST",
        "/api/v2/dev-hosts",
        {"hostname": " lab-1 ", "description": "lab"},
        status=201,
    )
    assert created["dev_host"]["hostname"] == "lab-1" and rules_version(redis_client) == 1
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "lab-2"}, status=201)
    error = call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "lab-1"}, status=409)
    assert "lab-1" in error["error"] and error["details"]["constraint"]
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "  "}, status=422)
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": 5}, status=422)
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "x", "owner": "me"}, status=422)
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "x"}, reason=None, status=422)

    listed = call(api_client, "GET", "/api/v2/dev-hosts?limit=1&offset=1", status=200)
    assert [h["hostname"] for h in listed["dev_hosts"]] == ["lab-2"] and listed["total"] == 2
    call(api_client, "GET", "/api/v2/dev-hosts?limit=501", status=400)

    removed = call(
        api_client, "DELETE", "/api/v2/dev-hosts/lab-1", {}, reason="decommissioned", status=200
    )
    assert removed["deleted"]["hostname"] == "lab-1" and rules_version(redis_client) == 3
    call(api_client, "DELETE", "/api/v2/dev-hosts/lab-1", {}, status=404)

    rows = audit_rows(engine, table_name="development_hosts")
    assert [r.operation for r in rows] == ["CREATE", "CREATE", "DELETE"]  # the 409 wrote nothing
    assert rows[0].new_values == created["dev_host"] and rows[0].old_values is None
    assert rows[2].old_values == created["dev_host"] and rows[2].new_values is None
    assert rows[2].reason == "decommissioned" and rows[2].changed_by == "api-key"


def test_teams_add_update_duplicate_remove(api_client: FlaskClient, engine: Engine) -> None:
    created = call(
        api_client,
        "POST",
        "/api/v2/teams",
        {"hostname": "core-1", "team_assignment": "WAN"},
        status=201,
    )
    call(
        api_client,
        "POST",
        "/api/v2/teams",
        {"hostname": "db-1", "team_assignment": "DBA"},
        status=201,
    )
    call(
        api_client,
        "POST",
        "/api/v2/teams",
        {"hostname": "core-1", "team_assignment": "X"},
        status=409,
    )
    call(api_client, "POST", "/api/v2/teams", {"hostname": "core-2"}, status=422)
    call(
        api_client,
        "POST",
        "/api/v2/teams",
        {"hostname": "core-2", "team_assignment": " "},
        status=422,
    )

    wan = call(api_client, "GET", "/api/v2/teams?team=WAN", status=200)
    assert [t["hostname"] for t in wan["teams"]] == ["core-1"] and wan["total"] == 1
    assert call(api_client, "GET", "/api/v2/teams", status=200)["total"] == 2

    updated = call(
        api_client, "PUT", "/api/v2/teams/core-1", {"team_assignment": "LAN"}, status=200
    )
    assert updated["team"]["team_assignment"] == "LAN" and updated["changed"] is True
    same = call(api_client, "PUT", "/api/v2/teams/core-1", {"team_assignment": "LAN"}, status=200)
    assert same["changed"] is False
    call(api_client, "PUT", "/api/v2/teams/core-1", {"team_assignment": 3}, status=422)
    call(api_client, "PUT", "/api/v2/teams/core-1", {}, status=422)
    call(api_client, "PUT", "/api/v2/teams/nowhere", {"team_assignment": "LAN"}, status=404)

    call(api_client, "DELETE", "/api/v2/teams/db-1", {}, status=200)
    call(api_client, "DELETE", "/api/v2/teams/db-1", {}, status=404)
    rows = audit_rows(engine, table_name="device_teams")
    assert [r.operation for r in rows] == ["CREATE", "CREATE", "UPDATE", "DELETE"]
    update = rows[2]
    assert update.record_id == created["id"]
    assert update.old_values["team_assignment"] == "WAN"
    assert update.new_values["team_assignment"] == "LAN"


# --- the audits ---------------------------------------------------------------------------------


def test_event_audit_filters_and_pages(api_client: FlaskClient, engine: Engine) -> None:
    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    ids = event_audit_rows(engine, base)

    every = call(api_client, "GET", "/api/v2/audit-logs", status=200)
    assert [log["message"] for log in every["logs"]] == [f"event {i}" for i in range(4, -1, -1)]
    assert every["has_more"] is False and every["limit"] == 50 and every["page"] == 1

    page = call(api_client, "GET", "/api/v2/audit-logs?limit=2&page=2", status=200)
    assert [log["message"] for log in page["logs"]] == ["event 2", "event 1"] and page["has_more"]
    last = call(api_client, "GET", "/api/v2/audit-logs?limit=2&page=3", status=200)
    assert [log["message"] for log in last["logs"]] == ["event 0"] and not last["has_more"]

    # Keyset paging walks the same rows.
    seen, cursor = [], ""
    while True:
        answer = call(api_client, "GET", f"/api/v2/audit-logs?limit=2&cursor={cursor}", status=200)
        seen += [log["message"] for log in answer["logs"]]
        if not answer["has_more"]:
            break
        cursor = answer["next_cursor"]
    assert seen == [f"event {i}" for i in range(4, -1, -1)]

    def messages(query: str) -> list[str]:
        return [
            log["message"]
            for log in call(api_client, "GET", f"/api/v2/audit-logs?{query}", status=200)["logs"]
        ]

    assert messages("hostname=web-1") == ["event 3", "event 1"]
    assert messages("rule_id=7") == ["event 2", "event 1", "event 0"]
    assert messages("handling=Log_only") == ["event 4", "event 3"]
    assert messages(f"correlation_id={ids[2]}") == ["event 2"]
    assert messages("start_date=2026-03-01T14:00:00Z&end_date=2026-03-01T15:00:00Z") == [
        "event 3",
        "event 2",
    ]
    # An unencoded "+" arrives as a space; the offset is still read.
    assert messages("start_date=2026-03-01T15:00:00+01:00&end_date=2026-03-01T15:00:00+01:00") == [
        "event 2"
    ]
    assert messages("end_date=2026-02-28") == []

    for query in (
        "start_date=yesterday",
        "end_date=2026-13-01",
        "correlation_id=nope",
        "rule_id=x",
        "limit=501",
        "page=0",
        "cursor=garbage",
        "start_date=2026-03-02&end_date=2026-03-01",
    ):
        assert call(api_client, "GET", f"/api/v2/audit-logs?{query}", status=400)["error"]


def test_config_audit_filters_and_pages(api_client: FlaskClient) -> None:
    rule_id = call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"]
    call(api_client, "PUT", f"/api/v2/rules/{rule_id}", {"priority": 5}, status=200)
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "lab"}, status=201)
    call(api_client, "DELETE", "/api/v2/dev-hosts/lab", {}, status=200)

    every = call(api_client, "GET", "/api/v2/config-audit", status=200)
    assert every["total"] == 4 and not every["has_more"]
    assert [log["operation"] for log in every["logs"]] == ["DELETE", "CREATE", "UPDATE", "CREATE"]
    page = call(api_client, "GET", "/api/v2/config-audit?limit=3&page=1", status=200)
    assert len(page["logs"]) == 3 and page["has_more"] and page["total"] == 4

    def operations(query: str) -> list[str]:
        answer = call(api_client, "GET", f"/api/v2/config-audit?{query}", status=200)
        return [log["operation"] for log in answer["logs"]]

    assert operations("table_name=alert_rules") == ["UPDATE", "CREATE"]
    assert operations(f"table_name=alert_rules&record_id={rule_id}&operation=UPDATE") == ["UPDATE"]
    assert operations("changed_by=api-key") == ["DELETE", "CREATE", "UPDATE", "CREATE"]
    assert operations("changed_by=someone-else") == []
    now = datetime.now(UTC)
    assert len(operations(f"start_date={(now - timedelta(hours=1)).date()}")) == 4
    assert operations(f"start_date={(now + timedelta(days=1)).date()}") == []

    for query in ("operation=MERGE", "start_date=soon", "record_id=-1", "limit=1000"):
        assert call(api_client, "GET", f"/api/v2/config-audit?{query}", status=400)["error"]
