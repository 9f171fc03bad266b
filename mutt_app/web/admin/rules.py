"""Admin UI: alert rules, highest priority first; delete deactivates; bulk (de)activation.

Every change is a command of :mod:`mutt_app.commands.rules`: the form is checked with the engine's
own rule check (a regex RE2 refuses is refused here with RE2's message, a dedup key naming unknown
parts with the parts it may name) and ``clears_rule_id`` must
name another rule; deleting a rule deactivates it (as the API does), since the event audit keeps
referring to it.
"""

from __future__ import annotations

from typing import Any

from flask import flash, request
from flask_admin.actions import action
from flask_admin.contrib.sqla import tools
from wtforms import IntegerField, StringField
from wtforms.validators import NumberRange, Optional

from mutt_app.commands import rules
from mutt_app.commands.changes import MAX_DB_INT, Change
from mutt_app.commands.errors import Invalid
from mutt_app.db.models import (
    DEV_HANDLINGS,
    MATCH_TYPES,
    MAX_DEDUP_WINDOW_SECONDS,
    PROD_HANDLINGS,
    AlertRule,
)
from mutt_app.rules.dedup_key import DEFAULT_KEY
from mutt_app.rules.drafts import RULE_FIELD_NAMES
from mutt_app.web.admin.base import MuttModelView, ReasonField, blank_is_none, strip

PREFILLED_FIELDS = ("match_type", "match_string", "team_assignment")
"""Rule form fields a link may fill in (``/admin/rules/new/?match_type=regex&match_string=...``)."""


class AlertRuleView(MuttModelView):
    """Alert rules, highest priority first; delete deactivates; bulk (de)activation."""

    delete_failed = "Failed to deactivate the rule:"
    # The priority first, then the rule's other fields in form order.
    column_list = (
        "id",
        "priority",
        *(name for name in RULE_FIELD_NAMES if name != "priority"),
        "updated_at",
    )
    column_default_sort = [("priority", True), ("id", False)]
    column_filters = ("team_assignment", "match_type", "prod_handling", "dev_handling", "is_active")
    column_searchable_list = ("match_string",)
    column_sortable_list = ("id", "priority", "match_type", "team_assignment", "is_active")
    form_columns = (*RULE_FIELD_NAMES, "reason")
    form_overrides = {
        "clears_rule_id": IntegerField,
        "match_string": StringField,
        "trap_oid": StringField,
        "team_assignment": StringField,
        "dedup_key": StringField,
    }
    form_choices = {
        "match_type": [(value, value) for value in MATCH_TYPES],
        "prod_handling": [(value, value) for value in PROD_HANDLINGS],
        "dev_handling": [(value, value) for value in DEV_HANDLINGS],
    }
    form_args = {
        "match_string": {"filters": [blank_is_none]},
        "trap_oid": {"filters": [strip, blank_is_none]},
        "team_assignment": {"filters": [strip]},
        "priority": {"default": 100},
        "is_active": {"default": True},
        "dedup_window_seconds": {
            "validators": [Optional(), NumberRange(0, MAX_DEDUP_WINDOW_SECONDS)],
            "description": "seconds repeats of an alert are counted, not forwarded; empty: the"
            " default (DEDUP_WINDOW_SECONDS), 0: off for this rule",
        },
        "dedup_key": {
            "filters": [strip, blank_is_none],
            "description": "which parts make one incident, comma-separated: host, severity,"
            " template, masked, message, field:<name>, group:<name> (a named group of the regex);"
            f" empty: the default ({DEFAULT_KEY}). Try it in the rule tester first.",
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
        """The form's own checks, then the rule commands' (a regex RE2 cannot compile is refused,
        ``clears_rule_id`` must name another rule and close no loop of clearing rules)."""
        if not super().validate_form(form):
            return False
        if not hasattr(form, "match_type"):  # the delete and action forms
            return True
        team = form.team_assignment.data
        fields = {name: getattr(form, name).data for name in RULE_FIELD_NAMES}
        fields.update(
            match_string=fields["match_string"] or None,
            trap_oid=fields["trap_oid"] or None,
            team_assignment=team.strip() if isinstance(team, str) else team,
        )
        try:
            rules.check_rule(fields)
        except Invalid as exc:
            flash(f"Not a valid rule: {exc.message}", "error")
            return False
        clears = form.clears_rule_id.data
        try:
            rules.check_clears(self.db, clears, request.args.get("id", type=int))
        except Invalid as exc:  # no such rule, the rule itself, or a loop of clearing rules
            flash(f"Not a valid rule: {exc.message}", "error")
            return False
        return True

    def delete_record(self, change: Change, model: AlertRule) -> None:
        """Deactivate the rule (soft delete, as the API does): the event audit refers to it."""
        rules.deactivate(change, model)

    def _set_active(self, ids: list[str], active: bool) -> None:
        # In id order, so that two bulk changes take their row locks in the same order (no deadlock).
        query = tools.get_query_for_ids(self.get_query(), self.model, ids).order_by(AlertRule.id)
        try:
            with self.change() as change:
                changed = rules.set_active(change, query.all(), active)
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
