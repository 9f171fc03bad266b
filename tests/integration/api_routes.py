"""The REST API as the tests know it: every route with the role it needs, and a check that an
answer fits the OpenAPI document."""

from __future__ import annotations

from typing import Any

from openapi_schema_validator import OAS31Validator

from mutt_app.web.api.openapi.document import to_openapi_path

# (method, path as in the url_map, the role it needs)
ROUTES: list[tuple[str, str, str]] = [
    ("GET", "/api/v2/rules", "viewer"),
    ("POST", "/api/v2/rules", "admin"),
    ("GET", "/api/v2/rules/<int:rule_id>", "viewer"),
    ("PUT", "/api/v2/rules/<int:rule_id>", "admin"),
    ("DELETE", "/api/v2/rules/<int:rule_id>", "admin"),
    ("POST", "/api/v2/rules/test", "viewer"),
    ("POST", "/api/v2/rules/backtest", "admin"),
    ("GET", "/api/v2/rules/drafts", "viewer"),
    ("POST", "/api/v2/rules/drafts", "admin"),
    ("GET", "/api/v2/rules/drafts/<int:draft_id>", "viewer"),
    ("PUT", "/api/v2/rules/drafts/<int:draft_id>", "admin"),
    ("POST", "/api/v2/rules/drafts/<int:draft_id>/publish", "admin"),
    ("POST", "/api/v2/rules/drafts/<int:draft_id>/rebase", "admin"),
    ("GET", "/api/v2/dev-hosts", "viewer"),
    ("POST", "/api/v2/dev-hosts", "admin"),
    ("DELETE", "/api/v2/dev-hosts/<hostname>", "admin"),
    ("GET", "/api/v2/teams", "viewer"),
    ("POST", "/api/v2/teams", "admin"),
    ("PUT", "/api/v2/teams/<hostname>", "admin"),
    ("DELETE", "/api/v2/teams/<hostname>", "admin"),
    ("GET", "/api/v2/audit-logs", "viewer"),
    ("GET", "/api/v2/config-audit", "viewer"),
    ("GET", "/api/v2/dlq", "viewer"),
    ("POST", "/api/v2/dlq/<int:item_id>/replay", "operator"),
    ("GET", "/api/v2/alerts/<correlation_id>/deliveries", "viewer"),
    ("GET", "/api/v2/events/<correlation_id>", "viewer"),
    ("GET", "/api/v2/config", "viewer"),
    ("PUT", "/api/v2/config", "operator"),
    ("GET", "/api/v2/slo", "viewer"),
    ("GET", "/api/v2/metrics", "viewer"),
    ("GET", "/api/v2/heartbeats", "viewer"),
    ("POST", "/api/v2/heartbeats", "admin"),
    ("PUT", "/api/v2/heartbeats/<int:heartbeat_id>", "admin"),
    ("DELETE", "/api/v2/heartbeats/<int:heartbeat_id>", "admin"),
    ("GET", "/api/v2/heartbeats/<int:heartbeat_id>/quiet-hosts", "viewer"),
    ("GET", "/api/v2/unhandled/templates", "viewer"),
    ("GET", "/api/v2/maintenance-windows", "viewer"),
    ("POST", "/api/v2/maintenance-windows", "admin"),
    ("GET", "/api/v2/maintenance-windows/<int:window_id>", "viewer"),
    ("PUT", "/api/v2/maintenance-windows/<int:window_id>", "admin"),
    ("POST", "/api/v2/maintenance-windows/<int:window_id>/end", "admin"),
    ("DELETE", "/api/v2/maintenance-windows/<int:window_id>", "admin"),
]


def check_answer(doc: dict[str, Any], method: str, rule: str, status: int, body: Any) -> None:
    """Fail unless ``body`` fits the documented schema of ``status`` for ``method rule``."""
    path = to_openapi_path(rule.removeprefix("/api/v2").removeprefix("/api/v1"))
    responses = doc["paths"][path][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {path} does not document {status}"
    response = responses[str(status)]
    if "$ref" in response:
        response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
    schema = response["content"]["application/json"]["schema"]
    # The components at the schema's root, so that "#/components/..." references resolve.
    OAS31Validator({**schema, "components": doc["components"]}).validate(body)
