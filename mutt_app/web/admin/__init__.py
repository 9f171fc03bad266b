"""The admin UI (Flask-Admin): rules, development hosts, device teams, and the two audits.

Access follows the logged-in person's role (see :mod:`mutt_app.web.auth`): a viewer or an operator
reads everything; an admin also creates, edits and deletes rules, hosts and teams. Anyone not logged
in is sent to /login; a logged-in person without the role gets 403.

Every change made here goes through the same service as the REST API's and the CLI's
(:mod:`mutt_app.commands.changes`): the form needs a reason, the row is locked before its old values are read,
the change and its ``config_audit_log`` row (who = the username, old and new values, the reason, one
correlation id per request) commit in one transaction, and the rules version is bumped after the
commit so that workers reload. Deleting a rule deactivates it (as the API does), since the event
audit keeps referring to it. Rule forms are checked with the engine's own
:func:`mutt_app.rules.validate.validate_rule_fields`, so a regex RE2 refuses is refused here with RE2's message.

The dashboard at ``/`` (:class:`DashboardView`) draws :mod:`mutt_app.watch.dashboard`'s figures; the
dead-letter, dynamic-configuration and rule-tester pages are in :mod:`mutt_app.web.admin.operations`.
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, abort, flash, g, redirect, request, url_for
from flask_admin import Admin, AdminIndexView, expose
from flask_admin.actions import action
from flask_admin.contrib.sqla import ModelView, tools
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_admin.theme import Bootstrap4Theme
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import BigInteger
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.orm import Session, scoped_session
from werkzeug.wrappers import Response as BaseResponse
from wtforms import HiddenField, IntegerField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from mutt_app.commands.changes import Change, audited_change
from mutt_app.db.models import (
    DEV_HANDLINGS,
    MATCH_TYPES,
    MAX_DEDUP_WINDOW_SECONDS,
    NOT_FORWARDED_REASONS,
    PROD_HANDLINGS,
    AlertRule,
    ConfigAuditLog,
    DevelopmentHost,
    DeviceTeam,
    EventAuditLog,
    Heartbeat,
)
from mutt_app.rules.validate import RuleError, validate_rule_fields
from mutt_app.watch.dashboard import cached_metrics
from mutt_app.web.api.params import MAX_DB_INT
from mutt_app.web.api.resources import redis_connection, sessions
from mutt_app.web.context import settings

log = logging.getLogger(__name__)

# Flask-Admin views that change data; only roles allowed to write reach them.
WRITE_VIEWS = frozenset({"create_view", "edit_view", "delete_view", "action_view", "ajax_update"})
MAX_REASON = 1000
PREFILLED_FIELDS = ("match_type", "match_string", "team_assignment")
"""Rule form fields a link may fill in (``/admin/rules/new/?match_type=regex&match_string=...``)."""
MAX_BIGINT = 2**63 - 1
MAX_PAGE = MAX_DB_INT
"""The last list page anyone may ask for (0-based); past it is 400, not an OFFSET the database refuses."""


class ReasonField(StringField):
    """The reason for a change: required on every change form, kept in the audit, not the record."""

    def __init__(self, label: str = "Reason for this change", **kwargs: Any) -> None:
        kwargs.setdefault("validators", [DataRequired(), Length(max=MAX_REASON)])
        super().__init__(label, **kwargs)

    def populate_obj(self, obj: Any, name: str) -> None:
        # The reason belongs to the config_audit_log row, not to the rule, host or team.
        return None


def _blank_is_none(value: Any) -> Any:
    # An empty text box means "not set" (NULL), which the rules' CHECK constraints expect.
    return None if value == "" else value


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _role_allows(role: str) -> bool:
    return bool(current_user.is_authenticated and current_user.has_role(role))


def _reason() -> str:
    return (request.form.get("reason") or "").strip()


def _correlation_id() -> uuid.UUID:
    """One id for every audit row of this request (a bulk action writes several)."""
    if "mutt_correlation_id" not in g:
        g.mutt_correlation_id = uuid.uuid4()
    return g.mutt_correlation_id


class AdminForm(FlaskForm):
    """A Flask-WTF form (it renders the CSRF token every non-API POST needs) that keeps the edited
    record, as Flask-Admin's own BaseForm does: Flask-Admin's Unique validator reads ``form._obj``,
    and without it saving a host or team under its unchanged hostname fails with "Already exists".
    """

    def __init__(self, *args: Any, obj: Any = None, **kwargs: Any) -> None:
        self._obj = obj
        super().__init__(*args, obj=obj, **kwargs)


class MuttModelView(ModelView):
    """A model view with MUTT's access rules, audit trail and rules-version bump."""

    form_base_class = AdminForm
    list_template = "admin/mutt/list.html"
    page_size = 50
    can_view_details = True
    named_filter_urls = True  # ?flt0_hostname_equals=... rather than positional numbers
    read_role = "viewer"
    write_role: str | None = "admin"
    """The role that may create, edit and delete here; None: nobody (read-only view)."""

    # --- access ------------------------------------------------------------------------------

    @property  # type: ignore[override]
    def can_create(self) -> bool:
        return self.write_role is not None and _role_allows(self.write_role)

    @property  # type: ignore[override]
    def can_edit(self) -> bool:
        return self.write_role is not None and _role_allows(self.write_role)

    @property  # type: ignore[override]
    def can_delete(self) -> bool:
        return self.write_role is not None and _role_allows(self.write_role)

    def is_accessible(self) -> bool:
        return _role_allows(self.read_role)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> BaseResponse:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        response = super()._handle_view(name, **kwargs)
        if response is not None:
            return response
        # PostgreSQL's text cannot hold NUL, so a search, filter or form value with one could
        # only fail in the driver.
        if any("\x00" in value for value in (*request.args.values(), *request.form.values())):
            abort(400, description="a value contains a NUL character")
        # Flask-Admin would only redirect a refused change; a refusal is a 403 here.
        if name in WRITE_VIEWS and not self.can_edit:
            abort(403)
        return None

    def is_action_allowed(self, name: str) -> bool:
        return self.can_edit and super().is_action_allowed(name)

    # --- hostile URLs: bad page numbers and ids are the client's error, never a 500 -------------

    def _get_list_extra_args(self) -> Any:
        args = super()._get_list_extra_args()
        if args.page is not None and not 0 <= args.page <= MAX_PAGE:
            log.info("refused %s: page out of range", request.full_path)
            abort(400, description=f"page must be from 0 to {MAX_PAGE}")
        return args

    def get_list(self, *args: Any, **kwargs: Any) -> Any:
        """The list page's rows; a filter or search value the database cannot take is 400.

        Such values (a number past the column's range, a NUL character, a malformed date) fail
        only when bound or run; a database that is down or broken still answers 500.
        """
        try:
            return super().get_list(*args, **kwargs)
        except (StatementError, OverflowError) as exc:
            if isinstance(exc, DBAPIError) and not isinstance(exc, DataError):
                raise
            self.db.rollback()
            log.info("refused %s: %s", request.full_path, getattr(exc, "orig", exc))
            abort(400, description="a filter or search value the database cannot take")

    def row_key(self, id: str) -> Any:
        """The primary key that ``id`` (from the URL) names, or None when it names none.

        A single integer key, in the column's range (PostgreSQL refuses a larger number outright).
        """
        column = self.model.__mapper__.primary_key[0]
        bound = MAX_BIGINT if isinstance(column.type, BigInteger) else MAX_DB_INT
        try:
            key = int(id)
        except (TypeError, ValueError):
            return None
        return key if 0 < key <= bound else None

    def get_one(self, id: Any) -> Any:
        """The row ``id`` names, or None (Flask-Admin then says it does not exist)."""
        key = self.row_key(id)
        return None if key is None else self.db.get(self.model, key)

    # --- forms: a required reason on every change ----------------------------------------------

    def get_delete_form(self) -> type[FlaskForm]:
        class DeleteForm(self.form_base_class):  # type: ignore[name-defined, misc]
            id = HiddenField(validators=[InputRequired()])
            url = HiddenField()
            reason = ReasonField()

        return DeleteForm

    def get_action_form(self) -> type[FlaskForm]:
        class ActionForm(self.form_base_class):  # type: ignore[name-defined, misc]
            action = HiddenField()
            url = HiddenField()
            reason = ReasonField()

        return ActionForm

    # --- changes: through the audited-change service --------------------------------------------

    @property
    def db(self) -> Session:
        return self.session  # type: ignore[return-value]

    @contextmanager
    def change(self) -> Iterator[Change]:
        """One audited change in this request's session, by the logged-in person, with the form's
        reason; a Redis failure in the bump after the commit is flashed, not raised."""
        with audited_change(
            self.db,
            redis_connection(),
            changed_by=current_user.username,
            reason=_reason(),
            correlation_id=_correlation_id(),
        ) as change:
            yield change
        if change.warnings:
            flash(
                "Saved, but Redis is unreachable: workers pick the change up within"
                " CACHE_RELOAD_INTERVAL.",
                "warning",
            )

    def _failed(self, exc: Exception, message: str) -> None:
        # Flask-Admin's own handling and wording: an IntegrityError is flashed, anything else
        # logged and flashed after ``message``.
        if not self.handle_view_exception(exc):
            log.exception(message)
            flash(f"{message} {exc}", "error")

    def create_model(self, form: Any) -> Any:
        """Create a record from the form, audited."""
        try:
            with self.change() as change:
                model = self.build_new_instance()
                form.populate_obj(model)
                change.create(model)
        except Exception as exc:
            self._failed(exc, "Failed to create record.")
            return False
        return model

    def update_model(self, form: Any, model: Any) -> bool:
        """Apply the form to ``model``, locking its row before its old values are read."""
        try:
            with self.change() as change:
                change.update(model, form.populate_obj)
        except Exception as exc:
            self._failed(exc, "Failed to update record.")
            return False
        return True

    def delete_model(self, model: Any) -> bool:
        """Delete ``model``, locking its row before its last values are read."""
        try:
            with self.change() as change:
                change.delete(model)
        except Exception as exc:
            self._failed(exc, "Failed to delete record.")
            return False
        return True


class ReadOnlyView(MuttModelView):
    """An audit: nobody creates, edits or deletes its rows here."""

    write_role = None
    can_export = False
    column_display_actions = True


class AlertRuleView(MuttModelView):
    """Alert rules, highest priority first; delete deactivates; bulk (de)activation."""

    column_list = (
        "id",
        "priority",
        "match_type",
        "match_string",
        "trap_oid",
        "syslog_severity",
        "prod_handling",
        "dev_handling",
        "team_assignment",
        "is_active",
        "dedup_window_seconds",
        "clears_rule_id",
        "updated_at",
    )
    column_default_sort = [("priority", True), ("id", False)]
    column_filters = ("team_assignment", "match_type", "prod_handling", "dev_handling", "is_active")
    column_searchable_list = ("match_string",)
    column_sortable_list = ("id", "priority", "match_type", "team_assignment", "is_active")
    form_columns = (
        "match_type",
        "match_string",
        "trap_oid",
        "syslog_severity",
        "priority",
        "prod_handling",
        "dev_handling",
        "team_assignment",
        "is_active",
        "dedup_window_seconds",
        "clears_rule_id",
        "reason",
    )
    form_overrides = {
        "clears_rule_id": IntegerField,
        "match_string": StringField,
        "trap_oid": StringField,
        "team_assignment": StringField,
    }
    form_choices = {
        "match_type": [(value, value) for value in MATCH_TYPES],
        "prod_handling": [(value, value) for value in PROD_HANDLINGS],
        "dev_handling": [(value, value) for value in DEV_HANDLINGS],
    }
    form_args = {
        "match_string": {"filters": [_blank_is_none]},
        "trap_oid": {"filters": [_strip, _blank_is_none]},
        "team_assignment": {"filters": [_strip]},
        "priority": {"default": 100},
        "is_active": {"default": True},
        "dedup_window_seconds": {
            "validators": [Optional(), NumberRange(0, MAX_DEDUP_WINDOW_SECONDS)],
            "description": "seconds repeats of an alert are counted, not forwarded; empty: the"
            " default (DEDUP_WINDOW_SECONDS), 0: off for this rule",
        },
        "clears_rule_id": {
            "label": "Clears rule id",
            "validators": [Optional(), NumberRange(1, MAX_DB_INT)],
            "description": "the id of the rule whose alerts this one clears (LINK-UP clears"
            " LINK-DOWN): flap detection watches the pair; empty: none",
        },
    }
    form_extra_fields = {"reason": ReasonField()}

    def create_form(self, obj: Any = None) -> Any:
        """The create form; shown (GET) with ``match_type``, ``match_string`` and
        ``team_assignment`` from the query string filled in, as the unhandled templates' "create a
        rule" link asks. Nothing is saved until the admin submits it with a reason."""
        form = super().create_form(obj)
        if request.method == "GET":
            for name in PREFILLED_FIELDS:
                value = request.args.get(name)
                if value and (name != "match_type" or value in MATCH_TYPES):
                    getattr(form, name).data = value
        return form

    def validate_form(self, form: Any) -> bool:
        """The form's own checks, then the engine's (a regex RE2 cannot compile is refused)."""
        if not super().validate_form(form):
            return False
        if not hasattr(form, "match_type"):  # the delete and action forms
            return True
        team = form.team_assignment.data
        try:
            validate_rule_fields(
                form.match_type.data,
                form.match_string.data or None,
                form.trap_oid.data or None,
                form.syslog_severity.data,
                form.priority.data,
                form.prod_handling.data,
                form.dev_handling.data,
                team.strip() if isinstance(team, str) else team,
            )
        except RuleError as exc:
            flash(f"Not a valid rule: {exc}", "error")
            return False
        clears = form.clears_rule_id.data
        if clears is not None:
            own = request.args.get("id", type=int)
            if clears == own or self.db.get(AlertRule, clears) is None:
                flash(f"Not a valid rule: clears_rule_id {clears} names no other rule", "error")
                return False
        return True

    def delete_model(self, model: AlertRule) -> bool:
        """Deactivate the rule (soft delete, as the API does): the event audit refers to it."""
        try:
            with self.change() as change:
                # Decided on the locked row: already inactive is no change and no audit row.
                change.update(model, {"is_active": False}, operation="DELETE")
        except Exception as exc:
            self._failed(exc, "Failed to deactivate the rule:")
            return False
        return True

    def _set_active(self, ids: list[str], active: bool) -> None:
        # In id order, so that two bulk changes take their row locks in the same order (no deadlock).
        query = tools.get_query_for_ids(self.get_query(), self.model, ids).order_by(AlertRule.id)
        changed = 0
        try:
            with self.change() as change:
                for rule in query.all():
                    changed += change.update(rule, {"is_active": active})
        except Exception as exc:
            self._failed(exc, "Failed to change the rules:")
            return
        flash(f"{changed} rule(s) {'activated' if active else 'deactivated'}.", "success")

    @action("activate", "Activate", "Activate the selected rules?")
    def action_activate(self, ids: list[str]) -> None:
        """Activate the selected rules (one audit row each, one correlation id)."""
        self._set_active(ids, True)

    @action("deactivate", "Deactivate", "Deactivate the selected rules?")
    def action_deactivate(self, ids: list[str]) -> None:
        """Deactivate the selected rules (one audit row each, one correlation id)."""
        self._set_active(ids, False)


class DevelopmentHostView(MuttModelView):
    """Hosts whose events get the rules' dev_handling."""

    column_list = ("id", "hostname", "description", "added_at")
    column_searchable_list = ("hostname",)
    column_filters = ("hostname",)
    form_columns = ("hostname", "description", "reason")
    form_overrides = {"hostname": StringField, "description": StringField}
    form_args = {"hostname": {"filters": [_strip]}, "description": {"filters": [_blank_is_none]}}
    form_extra_fields = {"reason": ReasonField()}


class DeviceTeamView(MuttModelView):
    """Host-to-team overrides."""

    column_list = ("id", "hostname", "team_assignment", "updated_at")
    column_searchable_list = ("hostname", "team_assignment")
    column_filters = ("hostname", "team_assignment")
    form_columns = ("hostname", "team_assignment", "reason")
    form_overrides = {"hostname": StringField, "team_assignment": StringField}
    form_args = {"hostname": {"filters": [_strip]}, "team_assignment": {"filters": [_strip]}}
    form_extra_fields = {"reason": ReasonField()}


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


class DashboardView(AdminIndexView):
    """``/``: throughput, queues, dead letters, the circuit, top rules and hosts, for anyone logged in.

    The page draws its charts (Chart.js, served from the app's static folder) and polls
    ``/dashboard/metrics`` every few seconds; the figures are :func:`mutt_app.watch.dashboard.cached_metrics`,
    the same answer as ``GET /api/v2/metrics``.
    """

    def is_accessible(self) -> bool:
        return _role_allows("viewer")

    def inaccessible_callback(self, name: str, **kwargs: Any) -> BaseResponse:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))

    @expose("/")
    def index(self) -> str:
        return self.render(
            "admin/mutt/dashboard.html",
            poll_seconds=max(settings().metrics_cache_ttl, 2),
            can_create_rules=_role_allows("admin"),
        )

    @expose("/dashboard/metrics")
    def metrics(self) -> BaseResponse:
        """The dashboard's figures as JSON, for the page's polling (session-authenticated)."""
        body = cached_metrics(sessions(), redis_connection(), settings())
        return Response(orjson.dumps(body), mimetype="application/json")


def register_admin(app: Flask) -> Admin:
    """Mount the admin UI on ``app``: the dashboard at ``/``, the views under ``/admin/``."""
    # One session per request (app context), made from the app's factory on first use and closed
    # when the request ends.
    db: scoped_session[Session] = scoped_session(lambda: sessions()())
    app.teardown_appcontext(lambda _exc: db.remove())
    with warnings.catch_warnings():
        # Flask-Admin 2 would rather have a Flask-SQLAlchemy object; MUTT keeps its own engine
        # (password rotation, pool settings) and gives a plain scoped session, still supported.
        warnings.filterwarnings("ignore", "Passing a session object", DeprecationWarning)
        return _admin(app, db)


def _admin(app: Flask, db: scoped_session[Session]) -> Admin:
    # Imported here: those pages import this module's helpers.
    from mutt_app.web.admin.drafts import RuleDraftView
    from mutt_app.web.admin.heartbeats import HeartbeatView
    from mutt_app.web.admin.operations import (
        DeadLetterView,
        DynamicConfigView,
        FlowerLink,
        RuleTesterView,
    )
    from mutt_app.web.admin.windows import MaintenanceWindowView

    admin = Admin(
        app,
        name="MUTT",
        url="/",
        index_view=DashboardView(name="Dashboard", url="/"),
        theme=Bootstrap4Theme(base_template="admin/mutt/master.html"),
    )
    admin.add_view(AlertRuleView(AlertRule, db, name="Rules", endpoint="rules", url="/admin/rules"))
    admin.add_view(
        DevelopmentHostView(
            DevelopmentHost, db, name="Dev hosts", endpoint="hosts", url="/admin/hosts"
        )
    )
    admin.add_view(
        DeviceTeamView(DeviceTeam, db, name="Device teams", endpoint="teams", url="/admin/teams")
    )
    admin.add_view(
        HeartbeatView(
            Heartbeat, db, name="Heartbeats", endpoint="heartbeats", url="/admin/heartbeats"
        )
    )
    admin.add_view(
        EventAuditView(
            EventAuditLog, db, name="Event audit", endpoint="event_audit", url="/admin/event-audit"
        )
    )
    admin.add_view(DeadLetterView(name="Dead letters", endpoint="dlq", url="/admin/dlq"))
    admin.add_view(
        DynamicConfigView(
            name="Dynamic config", endpoint="dynamic_config", url="/admin/dynamic-config"
        )
    )
    admin.add_view(
        RuleTesterView(name="Rule tester", endpoint="rule_tester", url="/admin/rule-tester")
    )
    admin.add_view(
        RuleDraftView(name="Rule drafts", endpoint="rule_drafts", url="/admin/rule-drafts")
    )
    admin.add_view(
        MaintenanceWindowView(
            name="Maintenance", endpoint="maintenance_windows", url="/admin/maintenance-windows"
        )
    )
    admin.add_link(FlowerLink(name="Flower", target="_blank"))
    admin.add_view(
        ConfigAuditView(
            ConfigAuditLog,
            db,
            name="Config audit",
            endpoint="config_audit",
            url="/admin/config-audit",
        )
    )
    return admin
