"""The REST API v2 of the web app (``/api/v2``; ``/api/v1`` is an alias of the same routes).

Authentication: every request needs the header ``X-API-Key``, compared in constant time with the
accepted keys of :mod:`mutt_app.api_keys`: WEBUI_API_KEY (one admin key) or, when set,
WEBUI_API_KEYS (``name:role:key,...``). With no key configured every request is refused: the API is
never open by default. Each route needs a role (:func:`requires`; unmarked reads need viewer,
unmarked writes admin): viewer reads and uses the rule tester, operator also replays dead letters
and changes the dynamic configuration, admin changes rules, development hosts and device teams.
Bad keys are counted per client IP (:mod:`mutt_app.web.throttle`); too many answer 429. A person
logged in to the UI (session cookie, no key) may use what needs only the viewer role, as themselves.
Only ``GET /openapi.json`` (:mod:`mutt_app.web.api.openapi`, the OpenAPI 3.1 description) needs no key.

Every response carries ``X-API-Version: 2``; every error is JSON ``{"error": "...", "details": ...}``
with status 400 (malformed query parameter, header or JSON), 401 (no or unknown key), 403 (the key's
role is too low), 404 (no such record, or no such route under /api), 405, 409 (duplicate), 415 (a
body not sent as application/json), 422 (JSON, but not an acceptable change: unknown or read-only
field, wrong type, invalid rule, no reason), 429 (throttled) or 503 (database unreachable).

Changes (create, update, delete of rules, development hosts, device teams and heartbeats; PUT
/config) need a reason, from the body's ``"reason"`` or the ``X-Change-Reason`` header, and each
writes exactly one ``config_audit_log`` row in the same transaction as the change (rules, hosts,
teams and heartbeats through :mod:`mutt_app.commands.changes`, which locks the row first) (changed_by ``api:<key name>``, or
``api-key`` for WEBUI_API_KEY; old and new values; the reason; a correlation id from
``X-Correlation-ID`` or a new one). After the commit the rules version in Redis is bumped so that
workers reload within seconds. A request that changes nothing (the values are already as asked)
writes no audit row and bumps nothing.

List endpoints take ``limit`` (1..500) and refuse a larger one with 400 rather than clamping it, so
a client never silently receives fewer rows than it asked for.

Where things are: :mod:`~mutt_app.web.api.blueprint` (the blueprint and its hooks),
:mod:`~mutt_app.web.api.keys` (keys and roles), :mod:`~mutt_app.web.api.errors`,
:mod:`~mutt_app.web.api.responses`, :mod:`~mutt_app.web.api.fields` (request bodies),
:mod:`~mutt_app.web.api.params` (query parameters), :mod:`~mutt_app.web.api.rows`,
:mod:`~mutt_app.web.api.changes` (audited changes) and :mod:`~mutt_app.web.api.resources` make the
skeleton; a module per resource attaches its routes to the blueprint: :mod:`~mutt_app.web.api.rules`
(rules, rule tester, rule drafts and their backtest), :mod:`~mutt_app.web.api.operations`
(dead-letter queue, deliveries, dynamic configuration), :mod:`~mutt_app.web.api.hosts` (development
hosts, device teams), :mod:`~mutt_app.web.api.heartbeats`, :mod:`~mutt_app.web.api.windows`
(maintenance windows), :mod:`~mutt_app.web.api.audit` (the event and configuration audits),
:mod:`~mutt_app.web.api.events` (one event's whole story),
:mod:`~mutt_app.web.api.slo`, :mod:`~mutt_app.web.api.unhandled` (unhandled templates),
:mod:`~mutt_app.web.api.dashboard` and :mod:`~mutt_app.web.api.openapi.document` (the description).
This module is the one place that imports them all, to mount the API.
"""

from __future__ import annotations

from flask import Flask

# Each route module attaches its views to the blueprint when imported.
from mutt_app.web.api import (  # noqa: F401 (imported to attach their views)
    audit,
    dashboard,
    events,
    heartbeats,
    hosts,
    operations,
    refusals,
    rules,
    slo,
    unhandled,
    windows,
)
from mutt_app.web.api.blueprint import bp, routing_error
from mutt_app.web.api.openapi import document  # noqa: F401 (GET /openapi.json)


def register_api(app: Flask) -> None:
    """Mount the API on ``app`` at /api/v2, with /api/v1 as an alias of the same routes."""
    app.register_blueprint(bp)
    app.register_blueprint(bp, url_prefix="/api/v1", name="api_v1")
    app.register_error_handler(404, routing_error)
    app.register_error_handler(405, routing_error)
