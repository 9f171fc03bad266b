"""The admin UI (Flask-Admin): a module per resource, mounted here.

:mod:`~mutt_app.web.admin.base` holds what every page shares (access by role, the required reason,
the audited change); :mod:`~mutt_app.web.admin.dashboard` the dashboard at ``/``;
:mod:`~mutt_app.web.admin.rules`, :mod:`~mutt_app.web.admin.hosts` (development hosts, device
teams), :mod:`~mutt_app.web.admin.heartbeats`, :mod:`~mutt_app.web.admin.windows` (maintenance
windows) and :mod:`~mutt_app.web.admin.drafts` (rule drafts) the configuration; and
:mod:`~mutt_app.web.admin.audits`, :mod:`~mutt_app.web.admin.deadletters` and
:mod:`~mutt_app.web.admin.operations` (dynamic configuration, the rule tester, Flower) the pages for
running MUTT. Every change runs a command of :mod:`mutt_app.commands`.
"""

from __future__ import annotations

import warnings

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme
from sqlalchemy.orm import Session, scoped_session

from mutt_app.db.models import (
    AlertRule,
    ConfigAuditLog,
    DevelopmentHost,
    DeviceTeam,
    EventAuditLog,
    Heartbeat,
)
from mutt_app.web.admin.audits import ConfigAuditView, EventAuditView
from mutt_app.web.admin.dashboard import DashboardView
from mutt_app.web.admin.deadletters import DeadLetterView
from mutt_app.web.admin.drafts import RuleDraftView
from mutt_app.web.admin.heartbeats import HeartbeatView
from mutt_app.web.admin.hosts import DevelopmentHostView, DeviceTeamView
from mutt_app.web.admin.operations import DynamicConfigView, FlowerLink, RuleTesterView
from mutt_app.web.admin.rules import AlertRuleView
from mutt_app.web.admin.windows import MaintenanceWindowView
from mutt_app.web.context import runtime


def register_admin(app: Flask) -> Admin:
    """Mount the admin UI on ``app``: the dashboard at ``/``, the views under ``/admin/``."""
    # One session per request (app context), made from the app's factory on first use and closed
    # when the request ends.
    db: scoped_session[Session] = scoped_session(lambda: runtime().sessions())
    app.teardown_appcontext(lambda _exc: db.remove())
    with warnings.catch_warnings():
        # Flask-Admin 2 would rather have a Flask-SQLAlchemy object; MUTT keeps its own engine
        # (password rotation, pool settings) and gives a plain scoped session, still supported.
        warnings.filterwarnings("ignore", "Passing a session object", DeprecationWarning)
        return _admin(app, db)


def _admin(app: Flask, db: scoped_session[Session]) -> Admin:
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
