"""The OpenAPI document: every resource's operations and schemas assembled, each operation given its
id, its role (``x-required-role``, read from its view) and the answers every operation shares; served
at ``GET /openapi.json`` without a key.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

from flask import Flask, Response, current_app

from mutt_app.config import VERSION
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.keys import public, required_role
from mutt_app.web.api.openapi import (
    audit,
    dashboard,
    drafts,
    events,
    heartbeats,
    hosts,
    operations,
    rules,
    slo,
    unhandled,
    windows,
)
from mutt_app.web.api.openapi.schema import (
    ANY,
    REASON,
    STR,
    Operations,
    Schema,
    errors,
    object_schema,
    ref,
    ref_response,
)
from mutt_app.web.api.responses import json_response

RESOURCES: tuple[ModuleType, ...] = (
    rules,
    drafts,
    hosts,
    audit,
    events,
    operations,
    slo,
    unhandled,
    dashboard,
    windows,
    heartbeats,
)
"""The modules that describe the resources, each with its ``schemas()`` and ``operations()``."""

ERROR_TEXT = {
    400: "Malformed request: a query parameter, JSON syntax, or a header",
    401: "No or unknown X-API-Key",
    403: "The key's role does not allow this",
    404: "No such record",
    409: "Duplicate",
    415: "The body is not sent as application/json",
    422: "JSON, but not an acceptable change (unknown field, wrong type, invalid rule, no reason)",
    429: (
        "Too many bad API keys from this address, or (POST /rules/backtest) this web process"
        " already runs BACKTEST_MAX_CONCURRENT backtests (Retry-After says how long to wait)"
    ),
    503: "A store (database, Redis) is unreachable",
}


def _schemas() -> Schema:
    """Every component schema: the shared ones (an error, a bare reason) and each resource's."""
    schemas: Schema = {
        "Error": object_schema({"error": STR, "details": ANY}, ["error", "details"]),
        "Reason": object_schema({"reason": REASON}),
    }
    for resource in RESOURCES:
        schemas |= resource.schemas()
    return schemas


def _operations() -> Operations:
    """Every operation, by (method, path under /api/v2 in OpenAPI's {param} form)."""
    found: Operations = {}
    for resource in RESOURCES:
        found |= resource.operations()
    found[("get", "/openapi.json")] = {
        "summary": "This description (no key needed)",
        "security": [],
        "responses": {
            "200": {
                "description": "OpenAPI 3.1 document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }
    return found


def to_openapi_path(rule: str) -> str:
    """A Flask rule (``/rules/<int:rule_id>``) in OpenAPI's form (``/rules/{rule_id}``)."""
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>", r"{\1}", rule)


def document(app: Flask) -> dict[str, Any]:
    """The OpenAPI document, with each operation's role as ``x-required-role`` from its view."""
    views: dict[tuple[str, str], Any] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(f"{bp.name}."):
            path = to_openapi_path(rule.rule.removeprefix(bp.url_prefix or ""))
            for method in rule.methods or ():
                views[(method.lower(), path)] = app.view_functions[rule.endpoint]
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in _operations().items():
        operation = dict(operation)
        view = views.get((method, path))
        operation["operationId"] = method + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")
        if view is not None and not getattr(view, "public", False):
            role = required_role(view, method.upper())
            operation["x-required-role"] = role
            if role == "viewer":  # a logged-in UI session may use these too
                operation["security"] = [{"ApiKey": []}, {"Session": []}]
            operation["description"] = f"Needs a key with the {role} role (or a higher one)."
            operation["responses"] = {
                **operation["responses"],
                **errors(401, 403, 429),
            }
        operation["responses"] = {**operation["responses"], "414": ref_response("E414")}
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "MUTT REST API",
            "version": VERSION,
            "description": (
                "The MUTT web app's API. Every answer carries X-API-Version: 2; every error is"
                ' {"error": ..., "details": ...}. /api/v1 is an alias of the same routes.'
            ),
        },
        "servers": [{"url": "/api/v2"}, {"url": "/api/v1"}],
        "security": [{"ApiKey": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Session": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "mutt_session",
                    "description": "the UI's log-in session (read-only use)",
                },
            },
            "schemas": _schemas(),
            "responses": {
                f"E{status}": {
                    "description": text,
                    "content": {"application/json": {"schema": ref("Error")}},
                }
                for status, text in ERROR_TEXT.items()
            }
            | {
                # From the HTTP server (gunicorn's limit_request_line), before the app: not JSON.
                "E414": {"description": "The request line (path and query) is too long"}
            },
        },
    }


@bp.get("/openapi.json")
@public
def get_openapi() -> Response:
    """The OpenAPI description of this API."""
    cached = current_app.extensions.get("mutt_openapi")
    if cached is None:
        cached = current_app.extensions.setdefault(
            "mutt_openapi", document(current_app._get_current_object())
        )  # type: ignore[attr-defined]
    return json_response(cached)
