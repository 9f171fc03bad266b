"""Admin UI: the dashboard at ``/``."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response, redirect, request, url_for
from flask_admin import AdminIndexView, expose
from werkzeug.wrappers import Response as BaseResponse

from mutt_app.watch.dashboard import cached_metrics
from mutt_app.web.admin.base import role_allows
from mutt_app.web.context import runtime


class DashboardView(AdminIndexView):
    """``/``: throughput, queues, dead letters, the circuit, top rules and hosts, for anyone logged in.

    The page draws its charts (Chart.js, served from the app's static folder) and polls
    ``/dashboard/metrics`` every few seconds; the figures are :func:`mutt_app.watch.dashboard.cached_metrics`,
    the same answer as ``GET /api/v2/metrics``.
    """

    def is_accessible(self) -> bool:
        return role_allows("viewer")

    def inaccessible_callback(self, name: str, **kwargs: Any) -> BaseResponse:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @expose("/")
    def index(self) -> str:
        return self.render(
            "admin/mutt/dashboard.html",
            poll_seconds=max(runtime().settings.metrics_cache_ttl, 2),
            can_create_rules=role_allows("admin"),
        )

    @expose("/dashboard/metrics")
    def metrics(self) -> BaseResponse:
        """The dashboard's figures as JSON, for the page's polling (session-authenticated)."""
        current = runtime()
        body = cached_metrics(current.sessions, current.redis, current.settings)
        return Response(orjson.dumps(body), mimetype="application/json")
