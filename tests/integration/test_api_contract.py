"""The API's contract, route by route, on real PostgreSQL and Redis: 401 for every route, 415 for every
body, 404 for every path parameter, pagination bounds for every list, and for every change exactly one
config audit row whose old and new values are the record before and after.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from mutt_app.db.models import PoisonLetter
from tests.factories import CRITICAL, INTERFACE
from tests.integration.api_routes import ROUTES
from tests.records import audit_rows, engine_message
from tests.web import AUTH, call

BODY_ROUTES = [
    ("POST", "/api/v2/rules"),
    ("PUT", "/api/v2/rules/1"),
    ("DELETE", "/api/v2/rules/1"),
    ("POST", "/api/v2/rules/test"),
    ("POST", "/api/v2/dev-hosts"),
    ("DELETE", "/api/v2/dev-hosts/lab"),
    ("POST", "/api/v2/teams"),
    ("PUT", "/api/v2/teams/core"),
    ("DELETE", "/api/v2/teams/core"),
    ("PUT", "/api/v2/config"),
]


def _concrete(rule: str) -> str:
    return re.sub(r"<int:\w+>", "1", rule).replace("<hostname>", "h")


@pytest.mark.parametrize(("method", "rule", "_role"), ROUTES)
@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "not-the-key"}], ids=["no key", "bad key"])
def test_every_route_is_401_without_the_right_key(
    api_client: FlaskClient,
    engine: Engine,
    method: str,
    rule: str,
    _role: str,
    headers: dict[str, str],
) -> None:
    for path in (_concrete(rule), _concrete(rule).replace("/api/v2/", "/api/v1/")):
        response = api_client.open(path, method=method, json={"reason": "r"}, headers=headers)
        assert response.status_code == 401, (path, response.json)
        assert response.headers["X-API-Version"] == "2"
        assert set(response.json) == {"error", "details"}
    assert audit_rows(engine) == []


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ('{"reason": "r"}', "text/plain"),
        ("reason=r", "application/x-www-form-urlencoded"),
        ('{"reason": "r"}', None),
    ],
    ids=["text", "form", "no type"],
)
def test_every_body_must_be_sent_as_json(
    api_client: FlaskClient,
    engine: Engine,
    method: str,
    path: str,
    data: str,
    content_type: str | None,
) -> None:
    headers = AUTH | ({"Content-Type": content_type} if content_type else {})
    response = api_client.open(path, method=method, data=data, headers=headers)
    assert response.status_code == 415, response.json
    assert set(response.json) == {"error", "details"}
    assert audit_rows(engine) == []


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("data", [b"{not json", b"[1]", b'"text"', b"3"])
def test_json_that_is_not_an_object_is_400(
    api_client: FlaskClient,
    method: str,
    path: str,
    data: bytes,
) -> None:
    response = api_client.open(
        path, method=method, data=data, headers=AUTH | {"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.json
    assert response.json["error"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/rules/424242"),
        ("PUT", "/api/v2/rules/424242"),
        ("DELETE", "/api/v2/rules/424242"),
        ("DELETE", "/api/v2/dev-hosts/nowhere"),
        ("PUT", "/api/v2/teams/nowhere"),
        ("DELETE", "/api/v2/teams/nowhere"),
        ("POST", "/api/v2/dlq/424242/replay"),
        ("POST", "/api/v2/dlq/424242/replay?poison=true"),
        ("GET", "/api/v2/events/6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a"),
        ("GET", "/api/v2/rules/not-a-number"),
        ("GET", "/api/v2/no-such-route"),
    ],
)
def test_every_missing_record_is_404(
    api_client: FlaskClient,
    engine: Engine,
    method: str,
    path: str,
) -> None:
    body = {"priority": 5} if method == "PUT" and "rules" in path else None
    body = {"team_assignment": "X"} if method == "PUT" and "teams" in path else body
    error = call(api_client, method, path, body if body is not None else {}, status=404)
    assert error["error"]
    assert audit_rows(engine) == []


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v2/rules", ("limit", "offset")),
        ("/api/v2/dev-hosts", ("limit", "offset")),
        ("/api/v2/teams", ("limit", "offset")),
        ("/api/v2/dlq", ("limit", "offset")),
        ("/api/v2/audit-logs", ("limit", "page")),
        ("/api/v2/config-audit", ("limit", "page")),
    ],
)
def test_pagination_bounds_of_every_list(
    api_client: FlaskClient,
    path: str,
    params: tuple[str, str],
) -> None:
    limit, position = params
    for query in (f"{limit}=0", f"{limit}=501", f"{limit}=ten", f"{limit}=-1", f"{limit}=1.5"):
        error = call(api_client, "GET", f"{path}?{query}", status=400)
        assert error["details"]["parameter"] == limit
    lowest = 0 if position == "offset" else 1
    for query in (f"{position}={lowest - 1}", f"{position}=x", f"{position}={2**31}"):
        error = call(api_client, "GET", f"{path}?{query}", status=400)
        assert error["details"]["parameter"] == position
    assert call(api_client, "GET", f"{path}?{limit}=500", status=200)["limit"] == 500
    assert call(api_client, "GET", f"{path}?{limit}=1", status=200)["limit"] == 1
    deep = call(api_client, "GET", f"{path}?{position}={2**31 - 1}", status=200)
    lists = [v for v in deep.values() if isinstance(v, list)]
    assert lists == [[]]  # past the end: an empty page, not an error


def test_pages_walk_every_row_once(api_client: FlaskClient) -> None:
    for i in range(7):
        call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": f"lab-{i}"}, status=201)
    seen = []
    for offset in range(0, 9, 3):
        page = call(api_client, "GET", f"/api/v2/dev-hosts?limit=3&offset={offset}", status=200)
        assert page["total"] == 7 and len(page["dev_hosts"]) <= 3
        seen += [h["hostname"] for h in page["dev_hosts"]]
    assert seen == sorted(f"lab-{i}" for i in range(7))
    pages = [
        call(api_client, "GET", f"/api/v2/config-audit?limit=3&page={p}", status=200)
        for p in (1, 2, 3)
    ]
    assert [len(p["logs"]) for p in pages] == [3, 3, 1]
    assert [p["has_more"] for p in pages] == [True, True, False]
    assert len({log["id"] for p in pages for log in p["logs"]}) == 7


# --- every change: exactly one audit row, old and new values as read before and after ---------


def _rule(client: FlaskClient, rule_id: int) -> dict[str, Any]:
    return call(client, "GET", f"/api/v2/rules/{rule_id}", status=200)["rule"]


def _listed(client: FlaskClient, path: str, key: str, hostname: str) -> dict[str, Any] | None:
    rows = call(client, "GET", f"{path}?limit=500", status=200)[key]
    return next((row for row in rows if row["hostname"] == hostname), None)


def _config(client: FlaskClient, name: str) -> Any:
    return call(client, "GET", "/api/v2/config", status=200)["config"][name]["value"]


CHANGES = {
    "create rule": ("POST", "/api/v2/rules", INTERFACE, "alert_rules", "CREATE"),
    "update rule": ("PUT", "/api/v2/rules/{rule}", {"priority": 321, "team_assignment": "WAN"}, "alert_rules", "UPDATE"),
    "reactivate rule": ("PUT", "/api/v2/rules/{inactive}", {"is_active": True}, "alert_rules", "UPDATE"),
    "delete rule": ("DELETE", "/api/v2/rules/{rule}", {}, "alert_rules", "DELETE"),
    "add dev host": ("POST", "/api/v2/dev-hosts", {"hostname": "lab-2", "description": "d"}, "development_hosts", "CREATE"),
    "remove dev host": ("DELETE", "/api/v2/dev-hosts/lab", {}, "development_hosts", "DELETE"),
    "add team": ("POST", "/api/v2/teams", {"hostname": "db", "team_assignment": "DBA"}, "device_teams", "CREATE"),
    "change team": ("PUT", "/api/v2/teams/core", {"team_assignment": "LAN"}, "device_teams", "UPDATE"),
    "remove team": ("DELETE", "/api/v2/teams/core", {}, "device_teams", "DELETE"),
    "dynamic config": ("PUT", "/api/v2/config", {"moog_rate_limit": 11, "alerter_shed_mode": "defer"}, "dynamic_config", "UPDATE"),
}  # fmt: skip


def _state(client: FlaskClient, name: str, ids: dict[str, int]) -> Any:
    """The record the change ``name`` touches, as the API shows it (None when absent)."""
    if "rule" in name:
        rule_id = ids["inactive"] if name == "reactivate rule" else ids.get("created", ids["rule"])
        return _rule(client, rule_id) if rule_id else None
    if "dev host" in name:
        return _listed(
            client, "/api/v2/dev-hosts", "dev_hosts", "lab-2" if "add" in name else "lab"
        )
    if "team" in name:
        return _listed(client, "/api/v2/teams", "teams", "db" if "add" in name else "core")
    return {k: _config(client, k) for k in ("moog_rate_limit", "alerter_shed_mode")}


@pytest.mark.parametrize("name", list(CHANGES))
def test_each_change_writes_one_audit_row_with_the_old_and_new_values(
    api_client: FlaskClient,
    engine: Engine,
    name: str,
) -> None:
    ids = {
        "rule": call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"],
        "inactive": call(api_client, "POST", "/api/v2/rules", CATCH_ALL_INACTIVE, status=201)["id"],
    }
    call(api_client, "POST", "/api/v2/dev-hosts", {"hostname": "lab"}, status=201)
    call(
        api_client,
        "POST",
        "/api/v2/teams",
        {"hostname": "core", "team_assignment": "WAN"},
        status=201,
    )
    method, path, body, table, operation = CHANGES[name]
    if name == "create rule":
        ids["created"] = 0
    before = _state(api_client, name, ids)
    seeded = len(audit_rows(engine))

    answer = call(api_client, method, path.format(**ids), body, reason=f"because {name}")
    if name == "create rule":
        ids["created"] = answer["id"]
    after = _state(api_client, name, ids)

    rows = audit_rows(engine)[seeded:]
    assert len(rows) == 1, [(r.operation, r.table_name) for r in rows]
    row = rows[0]
    assert (row.table_name, row.operation, row.reason) == (table, operation, f"because {name}")
    assert row.changed_by == "api-key"
    if operation == "CREATE":
        assert before is None and row.old_values is None and row.new_values == after
    elif table == "dynamic_config":
        assert row.old_values == before and row.new_values == after == body
    elif table == "alert_rules" or operation == "UPDATE":
        assert row.old_values == before and row.new_values == after and before != after
    else:  # a removed host or mapping
        assert row.old_values == before and after is None and row.new_values is None
    if row.record_id is not None and table != "dynamic_config":
        assert row.record_id == row.new_values.get("id") if row.new_values else row.old_values["id"]

    # Sent again, the same change writes nothing: it changes nothing, or the record is gone (404)
    # or already there (409). A second create of a rule is a second rule, so it is left out.
    if name != "create rule":
        response = api_client.open(
            path.format(**ids),
            method=method,
            json={**body, "reason": "again"},
            headers=AUTH,
        )
        expected = {"CREATE": 409, "DELETE": 404 if table != "alert_rules" else 200}
        assert response.status_code == expected.get(operation, 200), response.json
        if response.status_code == 200:
            assert response.json.get("changed", False) is False
        assert len(audit_rows(engine)) == seeded + 1


CATCH_ALL_INACTIVE = {
    "syslog_severity": 7,
    "match_type": "contains",
    "priority": 1,
    "prod_handling": "Log_only",
    "dev_handling": "Suppress",
    "team_assignment": "NETO",
    "is_active": False,
}


# --- rule constraints on update, and wrong types on every body -------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"priority": 0},
        {"priority": 1001},
        {"syslog_severity": 8},
        {"syslog_severity": -1},
        {"match_type": "glob"},
        {"prod_handling": "Suppress"},
        {"dev_handling": "Page_and_ticket"},
        {"match_string": ""},
        {"match_string": "(unclosed"},
        {"match_string": "(a)\\1"},
        {"trap_oid": "  "},
        {"team_assignment": " "},
        {"match_type": "oid_prefix"},
        {"match_string": None},
    ],
)
def test_an_update_the_engine_refuses_is_422_and_changes_nothing(
    api_client: FlaskClient,
    engine: Engine,
    fields: dict[str, Any],
) -> None:
    rule_id = call(api_client, "POST", "/api/v2/rules", INTERFACE, status=201)["id"]
    before = _rule(api_client, rule_id)
    error = call(api_client, "PUT", f"/api/v2/rules/{rule_id}", fields, status=422)
    merged = {
        k: v for k, v in before.items() if k in INTERFACE or k in ("trap_oid", "syslog_severity")
    }
    problems = error["details"].get("fields")
    if problems is not None:  # outside the field's documented bounds: refused before the engine
        assert set(problems) == set(fields)
    else:
        assert error["error"] == engine_message(**(merged | fields))
    assert _rule(api_client, rule_id) == before
    assert [r.operation for r in audit_rows(engine)] == ["CREATE"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v2/dev-hosts", {"hostname": "h", "description": 5}, "description"),
        ("POST", "/api/v2/dev-hosts", {"hostname": ["h"]}, "hostname"),
        ("POST", "/api/v2/teams", {"hostname": 1, "team_assignment": "X"}, "hostname"),
        ("POST", "/api/v2/teams", {"hostname": "h", "team_assignment": False}, "team_assignment"),
        ("PUT", "/api/v2/teams/core", {"team_assignment": None}, "team_assignment"),
        ("PUT", "/api/v2/rules/{rule}", {"is_active": 1}, "is_active"),
        ("PUT", "/api/v2/rules/{rule}", {"trap_oid": 1.5}, "trap_oid"),
        ("POST", "/api/v2/rules", CRITICAL | {"team_assignment": {"a": 1}}, "team_assignment"),
        ("PUT", "/api/v2/config", {"moog_rate_limit": "many"}, "moog_rate_limit"),
        ("PUT", "/api/v2/config", {"moog_rate_limit": [1]}, "moog_rate_limit"),
        ("PUT", "/api/v2/config", {"alerter_shed_mode": "drop"}, "alerter_shed_mode"),
        ("PUT", "/api/v2/config", {"slo_ingest_success_target": 1.5}, "slo_ingest_success_target"),
    ],
)
def test_wrong_types_and_values_are_422_naming_the_field(
    api_client: FlaskClient,
    engine: Engine,
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    ids = {"rule": call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)["id"]}
    call(
        api_client,
        "POST",
        "/api/v2/teams",
        {"hostname": "core", "team_assignment": "WAN"},
        status=201,
    )
    seeded = len(audit_rows(engine))
    error = call(api_client, method, path.format(**ids), body, status=422)
    assert field in error["error"] or field in str(error["details"])
    assert len(audit_rows(engine)) == seeded


def test_dlq_lists_poison_and_replays_it(
    api_client: FlaskClient,
    engine: Engine,
) -> None:
    with Session(engine) as session, session.begin():
        poisoned = PoisonLetter(
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": {"external_id": "6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a"}},
            error_type="MoogError",
            error_message="still failing after 3 replays",
            reason="still failing after 3 replays",
        )
        session.add(poisoned)
        session.flush()
        poison_id = poisoned.id
    listed = call(api_client, "GET", "/api/v2/dlq?poison=true", status=200)
    assert listed["poison"] is True and [i["id"] for i in listed["items"]] == [poison_id]
    assert call(api_client, "GET", "/api/v2/dlq", status=200)["total"] == 0
    assert call(api_client, "GET", "/api/v2/dlq?task=mutt.classify_event&poison=true")["total"] == 0
    path = f"/api/v2/dlq/{poison_id}/replay?poison=true"
    replayed = call(api_client, "POST", path, {}, status=200)
    assert replayed["replayed"] == poison_id
    assert call(api_client, "GET", "/api/v2/dlq?poison=true", status=200)["total"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/dlq?task=a%00b"),
        ("GET", "/api/v2/rules?team=a%00b"),
        ("GET", "/api/v2/teams?team=%00"),
        ("GET", "/api/v2/audit-logs?hostname=h%00&handling=x"),
        ("GET", "/api/v2/config-audit?changed_by=%00"),
        ("DELETE", "/api/v2/dev-hosts/a%00b"),
        ("PUT", "/api/v2/teams/a%00b"),
    ],
)
def test_a_nul_in_a_query_or_path_is_400_not_500(
    api_client: FlaskClient,
    method: str,
    path: str,
) -> None:
    error = call(
        api_client, method, path, {"team_assignment": "X"} if method == "PUT" else {}, status=400
    )
    assert "NUL" in error["error"]
