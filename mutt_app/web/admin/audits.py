"""Admin UI: the two audits, read-only: the event audit (every event and what became of it) and
the configuration audit (every change, who made it and why)."""

from __future__ import annotations

from datetime import UTC, datetime

from flask_admin.contrib.sqla import tools
from flask_admin.contrib.sqla.filters import FilterEqual

from mutt_app.db.models import NOT_FORWARDED_REASONS, EventAuditLog
from mutt_app.web.admin.base import MAX_BIGINT, ReadOnlyView


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
