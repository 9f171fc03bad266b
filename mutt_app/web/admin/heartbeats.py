"""The admin UI's heartbeats page: the hosts quiet now first, then the heartbeats, quiet ones first.

Changes go through the audited-change service like every admin change (:class:`MuttModelView`):
a reason on every form, the row locked, one config_audit_log row; a heartbeat must name exactly one
of host and team (:func:`mutt_app.commands.heartbeats.check_target`). Which hosts are quiet is what the
last check recorded in Redis (:func:`mutt_app.watch.heartbeats.quiet_hosts`); if Redis cannot say, the
page still lists and edits the heartbeats, and says so.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import flash, g
from markupsafe import Markup, escape
from wtforms import StringField
from wtforms.validators import NumberRange, Optional

from mutt_app.commands import heartbeats as commands
from mutt_app.commands.errors import Invalid
from mutt_app.db.models import MAX_HEARTBEAT_MINUTES, PROD_HANDLINGS
from mutt_app.watch.heartbeats import is_glob, quiet_hosts
from mutt_app.web.admin.base import MuttModelView, ReasonField, blank_is_none, strip
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)


def _quiet_now() -> list[dict[str, Any]] | None:
    """The open quiet alerts, longest quiet first (read once per request); None if Redis is
    unreachable."""
    if "mutt_quiet_hosts" not in g:
        try:
            g.mutt_quiet_hosts = quiet_hosts(runtime().redis)
        except (redis.RedisError, OSError) as exc:
            log.warning("heartbeats page: quiet hosts unknown: %s", exc)
            g.mutt_quiet_hosts = None
    return g.mutt_quiet_hosts


class HeartbeatView(MuttModelView):
    """Heartbeats: a host, glob or device team that must send an event every N minutes."""

    list_template = "admin/mutt/heartbeats.html"
    column_list = (
        "name",
        "quiet",
        "host",
        "team",
        "interval_minutes",
        "handling",
        "team_assignment",
        "is_active",
    )
    column_labels = {"quiet": "Quiet hosts now", "interval_minutes": "Every (min)"}
    column_default_sort = ("name", False)
    column_searchable_list = ("name", "host", "team")
    column_filters = ("host", "team", "handling", "is_active")
    form_columns = (
        "name",
        "host",
        "team",
        "interval_minutes",
        "handling",
        "team_assignment",
        "is_active",
        "description",
        "reason",
    )
    form_overrides = {
        "name": StringField,
        "host": StringField,
        "team": StringField,
        "team_assignment": StringField,
        "description": StringField,
    }
    form_choices = {"handling": [(value, value) for value in PROD_HANDLINGS]}
    form_args = {
        "name": {"filters": [strip]},
        "host": {
            "filters": [strip, blank_is_none],
            "description": "a host name, or a glob (db-*) over the hosts MUTT has heard from;"
            " or leave empty and give a team",
        },
        "team": {
            "filters": [strip, blank_is_none],
            "description": "a device team: every host mapped to it must talk",
        },
        "interval_minutes": {
            "validators": [NumberRange(1, MAX_HEARTBEAT_MINUTES)],
            "description": "a host sending nothing for this long is quiet: one alert to Moog,"
            " one clear when it talks again",
        },
        "handling": {"default": "Ticket_only", "description": "the alert's lane"},
        "team_assignment": {
            "filters": [strip, blank_is_none],
            "validators": [Optional()],
            "description": "the alert's Moog class; empty: the host's device team",
        },
        "is_active": {"default": True},
        "description": {"filters": [blank_is_none]},
    }
    form_extra_fields = {"reason": ReasonField()}

    def validate_form(self, form: Any) -> bool:
        """The form's checks, then exactly one of host and team (the table's CHECK, in words)."""
        if not super().validate_form(form):
            return False
        if not hasattr(form, "host"):  # the delete form
            return True
        try:
            commands.check_target({"host": form.host.data, "team": form.team.data})
        except Invalid:
            flash(
                "A heartbeat watches a host (or glob) or a device team: give exactly one.", "error"
            )
            return False
        return True

    def render(self, template: str, **kwargs: Any) -> str:
        """The list page shows the quiet hosts above the heartbeats."""
        if template == self.list_template:
            kwargs["quiet_hosts"] = _quiet_now()
        return super().render(template, **kwargs)

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        """The page's heartbeats, those with quiet hosts first (stable within each group)."""
        total, rows = super().get_list(*args, **kwargs)
        counts = _counts(_quiet_now()) or {}
        return total, sorted(rows, key=lambda row: -counts.get(row.id, 0))

    @staticmethod
    def _quiet_column(view: HeartbeatView, context: Any, model: Any, name: str) -> Markup:
        counts = _counts(_quiet_now())
        if counts is None:
            return Markup("<span class='text-muted'>unknown</span>")
        quiet = counts.get(model.id, 0)
        if not quiet:
            return Markup("0")
        return Markup("<span class='badge badge-danger'>{}</span>").format(quiet)

    @staticmethod
    def _host_column(view: HeartbeatView, context: Any, model: Any, name: str) -> Markup | str:
        if model.host is None:
            return ""
        label = " <span class='badge badge-info'>glob</span>" if is_glob(model.host) else ""
        return Markup(f"{escape(model.host)}{label}")

    column_formatters = {"quiet": _quiet_column, "host": _host_column}


def _counts(quiet: list[dict[str, Any]] | None) -> dict[int, int] | None:
    if quiet is None:
        return None
    counts: dict[int, int] = {}
    for entry in quiet:
        counts[entry["heartbeat_id"]] = counts.get(entry["heartbeat_id"], 0) + 1
    return counts
