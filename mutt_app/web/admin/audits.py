"""Admin UI: the two audits, read-only: the event audit (every event and what became of it) and
the configuration audit (every change, who made it and why).

Each event of the audit links to its page (``/admin/event-audit/event/<correlation_id>/``): its
whole story, from :func:`mutt_app.commands.events.story`, as ``GET /api/v2/events/<id>`` gives it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import abort, url_for
from flask_admin import expose
from flask_admin.contrib.sqla import tools
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup, escape

from mutt_app.commands import events
from mutt_app.commands.errors import NotFound
from mutt_app.db.models import NOT_FORWARDED_REASONS, EventAuditLog
from mutt_app.names import HELD_REASONS
from mutt_app.web.admin.base import MAX_BIGINT, ReadOnlyView
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)


def _event_link(view: Any, context: Any, model: EventAuditLog, name: str) -> Markup:
    """The correlation id as a link to the event's page."""
    target = url_for(".event_story", correlation_id=str(model.correlation_id))
    return Markup(
        f'<a href="{escape(target)}" class="event-link">{escape(model.correlation_id)}</a>'
    )


class EventAuditView(ReadOnlyView):
    """The event audit, newest first, 50 a page; no total is counted (millions of rows)."""

    simple_list_pager = True
    column_list = (
        "event_timestamp",
        "hostname",
        "message",
        "syslog_severity",
        "matched_rule_id",
        "handling_decision",
        "team_assignment",
        "is_dev",
        "forwarded_to_moog",
        "held_reason",
        "duplicate_of",
        "rules_version",
        "correlation_id",
    )
    column_labels = {"held_reason": "Why not forwarded", "rules_version": "Rules version"}
    column_description = {
        "held_reason": "why the event did not reach Moog (empty: it did); see the runbook",
        "rules_version": "the rules version the event was classified under",
    }
    column_default_sort = ("event_timestamp", True)
    column_sortable_list = ("event_timestamp", "hostname")
    column_formatters = {"correlation_id": _event_link}

    @expose("/event/<correlation_id>/")
    def event_story(self, correlation_id: str) -> str:
        """One event's page: what arrived, the decision, why it was or was not sent, each
        delivery attempt, its dead letter, its trace id."""
        wanted = events.event_id(correlation_id)
        if wanted is None:
            abort(400, description="correlation_id must be a UUID")
        with runtime().sessions() as session:
            try:
                story = events.story(session, runtime().redis, runtime().dynamic_config, wanted)
            except NotFound:
                abort(404)
        raw = (story["event"] or {}).get("raw")
        return self.render(
            "admin/mutt/event.html",
            story=story,
            held_reasons=HELD_REASONS,
            raw=orjson.dumps(raw, option=orjson.OPT_INDENT_2).decode() if raw else "",
        )

    # The primary key is (id, event_timestamp), the partitioning column; the URL carries both, so
    # that a details page reads one partition. The timestamp goes in ISO 8601 and is parsed back to
    # a datetime, which both databases compare correctly (SQLite refuses a string for it).

    def get_pk_value(self, model: EventAuditLog) -> str:
        return tools.iterencode((model.id, model.event_timestamp.isoformat()))

    def row_key(self, id: str) -> tuple[int, datetime] | None:
        parts = tools.iterdecode(id or "")
        if len(parts) != 2:
            return None
        try:
            key, when = int(parts[0]), datetime.fromisoformat(parts[1])
        except ValueError:
            return None
        if not 0 < key <= MAX_BIGINT:
            return None
        # SQLite gives back naive datetimes; MUTT stores UTC everywhere.
        return key, when if when.tzinfo is not None else when.replace(tzinfo=UTC)

    column_filters = (
        "hostname",
        "matched_rule_id",
        "handling_decision",
        "team_assignment",
        # A drop-down of every reason; in the URL: flt0_why_not_forwarded_equals=unmatched.
        FilterEqual(
            EventAuditLog.held_reason,
            "Why not forwarded",
            options=[(reason, reason) for reason in NOT_FORWARDED_REASONS],
        ),
        "rules_version",
        "duplicate_of",
        "event_timestamp",
        "correlation_id",
    )


class ConfigAuditView(ReadOnlyView):
    """The configuration audit, newest change first."""

    column_list = (
        "changed_at",
        "changed_by",
        "operation",
        "table_name",
        "record_id",
        "reason",
        "correlation_id",
    )
    column_default_sort = ("changed_at", True)
    column_filters = (
        "changed_by",
        "operation",
        "table_name",
        "record_id",
        "changed_at",
        "correlation_id",
    )
