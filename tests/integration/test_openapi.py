"""The OpenAPI description (GET /api/v2/openapi.json): valid, complete, and true to the app.

``check_answer`` validates a real answer against the documented schema; the role matrix
(test_api_roles.py) runs it on every route's success answer and every 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from openapi_spec_validator import validate
from pydantic import SecretStr

from mutt_app.config import Settings
from mutt_app.rules.validate import MAX_CONTAINS_CHARS, MAX_PATTERN_CHARS, MAX_TRAP_OID_CHARS
from mutt_app.web import create_app
from mutt_app.web.api.openapi.document import to_openapi_path
from tests.conftest import close_web_app
from tests.factories import CRITICAL, event_audit_rows
from tests.integration.api_routes import ROUTES, check_answer

METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}


@pytest.fixture
def openapi_app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings.model_copy(update={"webui_api_key": SecretStr("k" * 20)}))
    try:
        yield app
    finally:
        close_web_app(app)


def fetch_document(app: Flask) -> dict[str, Any]:
    response = app.test_client().get("/api/v2/openapi.json")
    assert response.status_code == 200 and response.headers["X-API-Version"] == "2"
    return response.json


def test_the_document_is_valid_openapi(openapi_app: Flask) -> None:
    doc = fetch_document(openapi_app)
    validate(doc)  # openapi-spec-validator: raises on any error
    assert doc["openapi"].startswith("3.1")


def test_documented_operations_are_exactly_the_registered_routes(openapi_app: Flask) -> None:
    doc = fetch_document(openapi_app)
    documented = {
        (method.upper(), path) for path, operations in doc["paths"].items() for method in operations
    }
    registered = {
        (method, to_openapi_path(rule.rule.removeprefix("/api/v2")))
        for rule in openapi_app.url_map.iter_rules()
        if rule.rule.startswith("/api/v2/")
        for method in (rule.methods or set()) & METHODS
    }
    assert documented == registered


def test_every_path_parameter_and_operation_is_described(openapi_app: Flask) -> None:
    doc = fetch_document(openapi_app)
    ids = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert operation["summary"], (method, path)
            assert {"200", "201"} & set(operation["responses"]), (method, path)
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            wanted = {part[1:-1] for part in path.split("/") if part.startswith("{")}
            assert in_path == wanted, (method, path)
            if method in ("post", "put"):
                assert "requestBody" in operation, (method, path)
    assert len(ids) == len(set(ids))


def test_roles_in_the_document_are_the_apis(openapi_app: Flask) -> None:

    doc = fetch_document(openapi_app)
    for method, rule, role in ROUTES:
        operation = doc["paths"][to_openapi_path(rule.removeprefix("/api/v2"))][method.lower()]
        assert operation["x-required-role"] == role, (method, rule)
        assert {"401", "403"} <= set(operation["responses"])
    assert "x-required-role" not in doc["paths"]["/openapi.json"]["get"]


def test_the_description_needs_no_key_and_the_v1_alias_serves_it(settings: Settings) -> None:
    app = create_app(settings)  # no key configured at all: the API itself refuses everything
    try:
        client = app.test_client()
        assert client.get("/api/v1/openapi.json").json == fetch_document(app)
        assert client.get("/api/v2/rules").status_code == 401
    finally:
        close_web_app(app)


def test_errors_fit_the_documented_error_schema(openapi_app: Flask) -> None:
    doc = fetch_document(openapi_app)
    client = openapi_app.test_client()
    headers = {"X-API-Key": "k" * 20}
    for method, url, rule, kwargs, status in (
        ("GET", "/api/v2/rules", "/api/v2/rules", {"headers": {}}, 401),
        ("GET", "/api/v2/rules/999", "/api/v2/rules/<int:rule_id>", {}, 404),
        ("GET", "/api/v2/rules?limit=501", "/api/v2/rules", {}, 400),
        (
            "POST",
            "/api/v2/rules",
            "/api/v2/rules",
            {"data": "x", "content_type": "text/plain"},
            415,
        ),
        ("POST", "/api/v2/rules", "/api/v2/rules", {"json": {"reason": "r", "bogus": 1}}, 422),
        ("PUT", "/api/v2/config", "/api/v2/config", {"json": {"nope": 1, "reason": "r"}}, 422),
        (
            "DELETE",
            "/api/v2/teams/none",
            "/api/v2/teams/<hostname>",
            {"json": {"reason": "r"}},
            404,
        ),
    ):
        response = client.open(url, method=method, **{"headers": headers, **kwargs})
        assert response.status_code == status, (url, response.json)
        check_answer(doc, method, rule, status, response.json)


def test_populated_answers_fit_the_documented_schemas(openapi_app: Flask, engine) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from sqlalchemy.orm import Session

    from mutt_app.forwarding.deadletters import add_dead_letter

    event_audit_rows(engine, datetime(2026, 3, 1, 12, tzinfo=UTC))
    with Session(engine) as session, session.begin():
        add_dead_letter(
            session,
            task_name="mutt.forward_to_moog",
            queue="mutt.forward",
            payload={"alert": {"external_id": "6c442ed1-19ae-4c1b-9ecf-a3d7efc6d89a"}},
            error="Moog answered 400",
            backoff_base=60,
        )
    doc = fetch_document(openapi_app)
    client = openapi_app.test_client()
    headers = {"X-API-Key": "k" * 20}
    client.post("/api/v2/rules", json=CRITICAL | {"reason": "r"}, headers=headers)
    client.post(
        "/api/v2/teams",
        json={"hostname": "h", "team_assignment": "T", "reason": "r"},
        headers=headers,
    )
    client.post("/api/v2/dev-hosts", json={"hostname": "h", "reason": "r"}, headers=headers)
    window = {
        "name": "core upgrade",
        "starts_at": "2026-03-01T02:00:00+01:00",
        "rrule": "FREQ=WEEKLY;BYDAY=SU",
        "duration_minutes": 120,
        "timezone": "Europe/Berlin",
        "hosts": ["core-*"],
        "action": "suppress",
        "reason": "r",
    }
    created = client.post("/api/v2/maintenance-windows", json=window, headers=headers)
    assert created.status_code == 201, created.json
    check_answer(doc, "POST", "/api/v2/maintenance-windows", 201, created.json)
    for path in (
        "/maintenance-windows",
        "/audit-logs",
        "/config-audit",
        "/dlq",
        "/rules",
        "/teams",
        "/dev-hosts",
        "/config",
    ):
        response = client.get(f"/api/v2{path}", headers=headers)
        assert response.status_code == 200
        values = [v for v in response.json.values() if isinstance(v, list)]
        assert path == "/config" or values[0], path  # not an empty list: rows are checked
        check_answer(doc, "GET", f"/api/v2{path}", 200, response.json)


def test_each_setting_is_documented_and_checked_as_its_real_type(openapi_app: Flask) -> None:
    """An integer setting is an integer in the description and takes nothing else (422)."""
    from mutt_app.dynamic_config import KEYS

    schemas = fetch_document(openapi_app)["components"]["schemas"]
    put = schemas["DynamicConfigPut"]["properties"]
    shown = schemas["DynamicConfig"]["properties"]["config"]["properties"]
    for name, key in KEYS.items():
        kind = {int: "integer", float: "number", str: "string"}[key.kind]
        assert put[name]["type"] == kind == shown[name]["properties"]["value"]["type"], name
    assert put["moog_circuit_breaker_timeout"] | {"description": ""} == {
        "type": "integer",
        "minimum": 1,
        "maximum": 3600,
        "description": "",
    }
    client = openapi_app.test_client()
    headers = {"X-API-Key": "k" * 20, "X-Change-Reason": "test"}
    for value in (30.0, 30.5, "30", True, None):
        answer = client.put(
            "/api/v2/config", json={"moog_circuit_breaker_timeout": value}, headers=headers
        )
        assert answer.status_code == 422, (value, answer.json)
        assert "moog_circuit_breaker_timeout" in answer.json["details"], answer.json
    for name, value in (("moog_circuit_breaker_timeout", 30), ("moog_rate_period", 2)):
        answer = client.put("/api/v2/config", json={name: value}, headers=headers)
        assert answer.status_code == 200 and answer.json["new"] == {name: value}, answer.json


def test_body_fields_are_documented_with_the_bounds_the_api_checks(openapi_app: Flask) -> None:
    from mutt_app.events.schema import MAX_HOSTNAME_CHARS

    schemas = fetch_document(openapi_app)["components"]["schemas"]
    for schema in ("DevHostCreate", "TeamCreate"):
        hostname = schemas[schema]["properties"]["hostname"]
        assert hostname == {"type": "string", "minLength": 1, "maxLength": MAX_HOSTNAME_CHARS}
    rule = schemas["RuleCreate"]["properties"]
    assert rule["team_assignment"]["minLength"] == 1
    assert (rule["priority"]["minimum"], rule["priority"]["maximum"]) == (1, 1000)
    client = openapi_app.test_client()
    headers = {"X-API-Key": "k" * 20, "X-Change-Reason": "test"}
    for length, status in ((MAX_HOSTNAME_CHARS + 1, 422), (MAX_HOSTNAME_CHARS, 201)):
        answer = client.post("/api/v2/dev-hosts", json={"hostname": "h" * length}, headers=headers)
        assert answer.status_code == status, answer.json
    refused = client.post(
        "/api/v2/teams", json={"hostname": "h", "team_assignment": ""}, headers=headers
    )
    assert refused.status_code == 422 and "team_assignment" in refused.json["details"]["fields"]


def test_timestamps_carry_an_offset_on_the_embedded_sqlite_database(
    redis_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """SQLite hands back naive datetimes; the API still says which zone (UTC), as date-time must."""
    from datetime import datetime

    from mutt_app.config import load_settings
    from mutt_app.db.engine import make_engine, upgrade

    settings = load_settings(
        {"MUTT_DATA_DIR": str(tmp_path), "REDIS_URL": redis_url, "WEBUI_API_KEY": "k" * 20}
    )
    engine = make_engine(settings)
    upgrade(engine)
    engine.dispose()
    app = create_app(settings)
    try:
        client = app.test_client()
        headers = {"X-API-Key": "k" * 20, "X-Change-Reason": "test"}
        created = client.post(
            "/api/v2/teams", json={"hostname": "h", "team_assignment": "T"}, headers=headers
        )
        assert created.status_code == 201, created.json
        moments = [
            created.json["team"]["updated_at"],
            client.get("/api/v2/teams", headers=headers).json["teams"][0]["updated_at"],
            client.get("/api/v2/config-audit", headers=headers).json["logs"][0]["changed_at"],
        ]
        for moment in moments:
            assert datetime.fromisoformat(moment).utcoffset() is not None, moment
    finally:
        close_web_app(app)


def test_rule_bodies_document_the_rule_bounds(openapi_app: Flask) -> None:
    schemas = fetch_document(openapi_app)["components"]["schemas"]
    for name in ("RuleCreate", "RuleUpdate"):
        properties = schemas[name]["properties"]
        assert properties["match_string"]["maxLength"] == MAX_PATTERN_CHARS == MAX_CONTAINS_CHARS
        assert properties["trap_oid"]["maxLength"] == MAX_TRAP_OID_CHARS
