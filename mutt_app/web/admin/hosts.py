"""Admin UI: development hosts and device teams, created and removed by the commands of
:mod:`mutt_app.commands.hosts` and :mod:`mutt_app.commands.teams`."""

from __future__ import annotations

from typing import Any

from wtforms import StringField

from mutt_app.commands import hosts, teams
from mutt_app.commands.changes import Change
from mutt_app.db.models import DevelopmentHost, DeviceTeam
from mutt_app.web.admin.base import MuttModelView, ReasonField, blank_is_none, strip


class DevelopmentHostView(MuttModelView):
    """Hosts whose events get the rules' dev_handling."""

    column_list = ("id", "hostname", "description", "added_at")
    column_searchable_list = ("hostname",)
    column_filters = ("hostname",)
    form_columns = ("hostname", "description", "reason")
    form_overrides = {"hostname": StringField, "description": StringField}
    form_args = {"hostname": {"filters": [strip]}, "description": {"filters": [blank_is_none]}}
    form_extra_fields = {"reason": ReasonField()}

    def create_record(self, change: Change, form: Any) -> DevelopmentHost:
        """Mark the form's host as development."""
        created = hosts.add(change, form.hostname.data, form.description.data)
        return change.session.get(DevelopmentHost, created["id"])

    def delete_record(self, change: Change, model: DevelopmentHost) -> None:
        """Make the host production again."""
        hosts.remove(change, model.hostname)


class DeviceTeamView(MuttModelView):
    """Host-to-team overrides."""

    column_list = ("id", "hostname", "team_assignment", "updated_at")
    column_searchable_list = ("hostname", "team_assignment")
    column_filters = ("hostname", "team_assignment")
    form_columns = ("hostname", "team_assignment", "reason")
    form_overrides = {"hostname": StringField, "team_assignment": StringField}
    form_args = {"hostname": {"filters": [strip]}, "team_assignment": {"filters": [strip]}}
    form_extra_fields = {"reason": ReasonField()}

    def create_record(self, change: Change, form: Any) -> DeviceTeam:
        """Map the form's host to its team."""
        created = teams.add(change, form.hostname.data, form.team_assignment.data)
        return change.session.get(DeviceTeam, created["id"])

    def delete_record(self, change: Change, model: DeviceTeam) -> None:
        """Remove the host's mapping."""
        teams.remove(change, model.hostname)
