"""What every admin page shares: access by role, a required reason, the audited change.

Access follows the logged-in person's role (see :mod:`mutt_app.web.auth`): a viewer or an operator
reads everything; an admin also creates, edits and deletes. Anyone not logged in is sent to /login;
a logged-in person without the role gets 403.

Every change made here runs a command (:mod:`mutt_app.commands`) inside an audited change
(:mod:`mutt_app.commands.changes`), as the REST API's and the CLI's do: the form needs a reason, the
row is locked before its old values are read, the change and its ``config_audit_log`` row (who = the
username, old and new values, the reason, one correlation id per request) commit in one
transaction, and the rules version is bumped after the commit so that workers reload.
:class:`MuttModelView` is the base of the Flask-Admin table views, :class:`MuttPage` of the pages
MUTT draws itself.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import abort, flash, g, redirect, request, url_for
from flask_admin import BaseView
from flask_admin.contrib.sqla import ModelView
from flask_login import current_user
from flask_wtf import FlaskForm
from sqlalchemy import BigInteger
from sqlalchemy.exc import DataError, DBAPIError, StatementError
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, InputRequired, Length

from mutt_app.commands.changes import MAX_DB_INT, Change, audited_change
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)

WRITE_VIEWS = frozenset({"create_view", "edit_view", "delete_view", "action_view", "ajax_update"})
MAX_REASON = 1000
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


def blank_is_none(value: Any) -> Any:
    # An empty text box means "not set" (NULL), which the rules' CHECK constraints expect.
    return None if value == "" else value


def strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def role_allows(role: str) -> bool:
    return bool(current_user.is_authenticated and current_user.has_role(role))


def _reason_given() -> str:
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
    delete_failed = "Failed to delete record."
    """What a failed delete flashes before the error."""

    # --- access ------------------------------------------------------------------------------

    @property  # type: ignore[override]
    def can_create(self) -> bool:
        return self.write_role is not None and role_allows(self.write_role)

    @property  # type: ignore[override]
    def can_edit(self) -> bool:
        return self.write_role is not None and role_allows(self.write_role)

    @property  # type: ignore[override]
    def can_delete(self) -> bool:
        return self.write_role is not None and role_allows(self.write_role)

    def is_accessible(self) -> bool:
        return role_allows(self.read_role)

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
            runtime().redis,
            changed_by=current_user.username,
            reason=_reason_given(),
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

    def create_record(self, change: Change, form: Any) -> Any:
        """Create the form's record in ``change`` and return it (a view with a command for it
        runs that instead)."""
        model = self.build_new_instance()
        form.populate_obj(model)
        change.create(model)
        return model

    def delete_record(self, change: Change, model: Any) -> None:
        """Delete ``model`` in ``change`` (a view with a command for it runs that instead)."""
        change.delete(model)

    def create_model(self, form: Any) -> Any:
        """Create a record from the form, audited."""
        try:
            with self.change() as change:
                model = self.create_record(change, form)
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
                self.delete_record(change, model)
        except Exception as exc:
            self._failed(exc, self.delete_failed)
            return False
        return True


class ReadOnlyView(MuttModelView):
    """An audit: nobody creates, edits or deletes its rows here."""

    write_role = None
    can_export = False
    column_display_actions = True


def form_reason() -> str | None:
    """The form's reason, or None after flashing why it is refused."""
    reason = (request.form.get("reason") or "").strip()
    if not reason:
        flash("A change needs a reason.", "error")
        return None
    if len(reason) > MAX_REASON or "\x00" in reason:
        flash(f"The reason must be at most {MAX_REASON} characters of text.", "error")
        return None
    return reason


class MuttPage(BaseView):
    """A page for anyone logged in (viewer and up); log-in first, 403 without the role."""

    read_role = "viewer"

    def is_accessible(self) -> bool:
        return role_allows(self.read_role)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> BaseResponse:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def require(self, role: str) -> None:
        """403 unless the logged-in person has ``role`` (or a higher one)."""
        if not role_allows(role):
            abort(403)
