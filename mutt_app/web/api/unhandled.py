"""API v2: ``GET /unhandled/templates``, the events no rule matched, grouped by message template.

Viewer role. Query: ``hours`` (1..168, default UNHANDLED_TEMPLATES_HOURS) and ``limit`` (1..500,
default 50 templates). The answer is :func:`mutt_app.watch.unhandled.unhandled_templates`:
each template with its event count, hosts, first and last seen, an example message and a
suggested rule (``match_type``, ``match_string``, ``team_assignment``; null when the template has
too little literal text for a safe rule). At most UNHANDLED_TEMPLATES_MAX_ROWS events (the newest)
are read; ``truncated`` says when there were more, and the counts are then of those only.
"""

from __future__ import annotations

from flask import Response

from mutt_app.watch.unhandled import MAX_HOURS, unhandled_templates
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.params import int_arg, limit_arg
from mutt_app.web.api.resources import sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.context import settings

DEFAULT_LIMIT = 50


@bp.get("/unhandled/templates")
def list_unhandled_templates() -> Response:
    """Unmatched events of the last ``hours``, grouped by template, most events first."""
    config = settings()
    hours = int_arg("hours", config.unhandled_templates_hours, minimum=1, maximum=MAX_HOURS)
    limit = limit_arg(DEFAULT_LIMIT)
    with sessions()() as session:
        answer = unhandled_templates(
            session, hours=hours, max_rows=config.unhandled_templates_max_rows, limit=limit
        )
    return json_response(answer)
