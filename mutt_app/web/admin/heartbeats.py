"""The admin UI's heartbeats page: the hosts quiet now first, then the heartbeats, quiet ones first.

Changes go through the audited-change service like every admin change (:class:`MuttModelView`):
a reason on every form, the row locked, one config_audit_log row; a heartbeat must name exactly one
of host and team (:func:`mutt_app.commands.heartbeats.check_target`). Which hosts are quiet is what the
last check recorded in Redis (:func:`mutt_app.watch.heartbeat_quiet.quiet_hosts`), shown
:data:`QUIET_PAGE_SIZE` at a time (``?quiet_page=N``, with links), with how many there are and how
many were not alerted past a heartbeat's cap: the page does not grow with the number of hosts. If
Redis cannot say, the page still lists and edits the heartbeats, and says so.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import flash, g, request, url_for
from markupsafe import Markup, escape
from wtforms import StringField
from wtforms.validators import NumberRange, Optional

from mutt_app.commands import heartbeats as commands
from mutt_app.commands.errors import Invalid
from mutt_app.db.models import MAX_HEARTBEAT_MINUTES, PROD_HANDLINGS
from mutt_app.watch.heartbeat_quiet import over_cap, quiet_counts, quiet_hosts
from mutt_app.watch.heartbeats import is_glob
from mutt_app.web.admin.base import MuttModelView, ReasonField, blank_is_none, strip
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)


QUIET_PAGE_SIZE = 50


def _quiet_now() -> dict[int, int] | None:
    """Open quiet alerts per heartbeat id (read once per request); None if Redis is unreachable."""
    if "mutt_quiet_counts" not in g:
        try:
            g.mutt_quiet_counts = quiet_counts(runtime().redis)
        except (redis.RedisError, OSError) as exc:
            log.warning("heartbeats page: quiet hosts unknown: %s", exc)
            g.mutt_quiet_counts = None
    return g.mutt_quiet_counts


def _quiet_page() -> dict[str, Any] | None:
    """The page of quiet hosts ``?quiet_page=N`` asks for (from 1), with the total, the hosts not
    alerted past a cap, and links to the pages around it; None if Redis is unreachable."""
    counts = _quiet_now()
    if counts is None:
        return None
    total = sum(counts.values())
    last = max(1, -(-total // QUIET_PAGE_SIZE))
    raw = request.args.get("quiet_page", "1")
    number = min(int(raw), last) if raw.isdigit() and int(raw) >= 1 else 1
    try:
        client = runtime().redis
        hosts = quiet_hosts(client, offset=(number - 1) * QUIET_PAGE_SIZE, limit=QUIET_PAGE_SIZE)
        not_alerted = sum(over_cap(client).values())
    except (redis.RedisError, OSError) as exc:
        log.warning("heartbeats page: quiet hosts unknown: %s", exc)
        return None
    args = request.args.to_dict()

    def link(at: int) -> str:
        return url_for(request.endpoint or "", **{**args, "quiet_page": at})

    return {
        "hosts": hosts,
        "total": total,
        "number": number,
        "last": last,
        "over_cap": not_alerted,
        "next": link(number + 1) if number < last else None,
        "prev": link(number - 1) if number > 1 else None,
    }


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
            kwargs["quiet"] = _quiet_page()
        return super().render(template, **kwargs)

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        """The page's heartbeats, those with quiet hosts first (stable within each group)."""
        total, rows = super().get_list(*args, **kwargs)
        counts = _quiet_now() or {}
        return total, sorted(rows, key=lambda row: -counts.get(row.id, 0))

    @staticmethod
    def _quiet_column(view: HeartbeatView, context: Any, model: Any, name: str) -> Markup:
        counts = _quiet_now()
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
