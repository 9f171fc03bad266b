"""Admin UI: rule drafts (``/admin/rule-drafts/``): edit a draft, backtest it, publish it.

A draft is its JSON document (:mod:`mutt_app.rules.drafts`), edited as text next to the live rules'
table (for their ids) and checked on save by :func:`~mutt_app.commands.drafts.parse_draft`, as the
REST API checks one, and against the live rules. Saving, the backtest and publishing are the commands of
:mod:`mutt_app.commands.drafts` the REST API runs too: "Backtest" answers what ``POST
/api/v2/rules/backtest`` answers; "Publish" writes one config_audit_log row per changed rule plus one
marking the draft published, all under the form's reason and one correlation id, and the rules
version is bumped so that workers reload.

A draft records the rules it changes as they were when drafted; when one changed since, the page
lists how, publishing is refused with that message, and the admin re-bases the draft ("Re-base",
with a reason) or ticks "Publish anyway" (:func:`mutt_app.commands.drafts.publish_stored`).

Everyone logged in reads drafts; only an admin creates, edits, backtests (it scans up to
BACKTEST_MAX_ROWS audit rows) and publishes them. Saving a draft changes no live rule, so it bumps
no rules version; it is audited all the same.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select
from werkzeug.wrappers import Response as BaseResponse

from mutt_app.commands import drafts as commands
from mutt_app.commands.changes import MAX_DB_INT, audited_change
from mutt_app.commands.errors import Conflict, Invalid, NotFound
from mutt_app.db.models import AlertRule, RuleDraft
from mutt_app.rules.backtest import MAX_HOURS
from mutt_app.rules.drafts import Draft
from mutt_app.web.admin.base import MuttPage, form_reason, role_allows
from mutt_app.web.capacity import BacktestsBusy, backtest_slots
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)

MAX_NAME = commands.MAX_NAME
MAX_DOCUMENT_CHARS = 1_000_000
DEFAULT_HOURS = 24


def _document_text(document: Any) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def read_draft(text: str) -> Draft:
    """The draft in ``text`` (JSON), checked as the API checks one and against the live rules;
    ValueError naming the problem."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise ValueError(f"the draft is over {MAX_DOCUMENT_CHARS:,} characters")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    try:
        draft = commands.parse_draft(document)
        with runtime().sessions() as session:
            commands.check_fits(session, draft)
    except Invalid as exc:
        raise ValueError(exc.message) from None
    return draft


class RuleDraftView(MuttPage):
    """Rule drafts: the list, one draft's editor with its backtest, publishing."""

    def _draft(self, session: Any, draft_id: int) -> RuleDraft:
        row = session.get(RuleDraft, draft_id) if draft_id <= MAX_DB_INT else None
        if row is None:
            abort(404)
        return row

    @expose("/")
    def index(self) -> str:
        with runtime().sessions() as session:
            drafts = session.scalars(select(RuleDraft).order_by(RuleDraft.id.desc())).all()
        return self.render(
            "admin/mutt/rule_drafts.html", drafts=drafts, can_edit=role_allows("admin")
        )

    @expose("/new", methods=("POST",))
    def create(self) -> BaseResponse:
        self.require("admin")
        name = (request.form.get("name") or "").strip()
        reason = form_reason()
        if not name or len(name) > MAX_NAME or "\x00" in name:
            flash(f"A draft needs a name of at most {MAX_NAME} characters.", "error")
            return redirect(url_for(".index"))
        if reason is None:
            return redirect(url_for(".index"))
        # A draft changes no live rule: no rules-version bump (no Redis), audited all the same.
        with audited_change(
            runtime().sessions, None, changed_by=current_user.username, reason=reason
        ) as change:
            created = commands.create(change, name, Draft())
        return redirect(url_for(".details", draft_id=created["id"]))

    def _page(
        self,
        draft_id: int,
        *,
        text: str | None = None,
        hours: int = DEFAULT_HOURS,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Any:
        with runtime().sessions() as session:
            row = self._draft(session, draft_id)
            rules = session.scalars(
                select(AlertRule).order_by(AlertRule.priority.desc(), AlertRule.id)
            ).all()
            body = self.render(
                "admin/mutt/rule_draft.html",
                draft=row,
                text=_document_text(row.document) if text is None else text,
                hours=hours,
                max_hours=MAX_HOURS,
                result=result,
                error=error,
                rules=rules,
                can_edit=role_allows("admin"),
                new_rules=row.document.get("create", []),
                stale=commands.changed_since(session, row) if row.published_at is None else {},
            )
        return body, (422 if error else 200)

    @expose("/<int:draft_id>/")
    def details(self, draft_id: int) -> Any:
        return self._page(draft_id)

    def _editable(self, session: Any, draft_id: int) -> RuleDraft:
        self.require("admin")
        row = self._draft(session, draft_id)
        if row.published_at is not None:
            abort(409, "this draft is published; start a new one")
        return row

    @expose("/<int:draft_id>/save", methods=("POST",))
    def save(self, draft_id: int) -> Any:
        text = request.form.get("document") or ""
        with runtime().sessions() as session:
            self._editable(session, draft_id)
        try:
            draft = read_draft(text)
        except ValueError as exc:
            return self._page(draft_id, text=text, error=str(exc))
        reason = form_reason()
        if reason is None:
            return self._page(draft_id, text=text)
        try:
            with audited_change(
                runtime().sessions, None, changed_by=current_user.username, reason=reason
            ) as change:
                commands.save(change, draft_id, read=lambda: draft)
        except (NotFound, Conflict):
            abort(409, "this draft was published or removed meanwhile")
        except Invalid as exc:  # the live rules changed since the draft was read
            return self._page(draft_id, text=text, error=exc.message)
        flash("Draft saved.", "success")
        return redirect(url_for(".details", draft_id=draft_id))

    @expose("/<int:draft_id>/backtest", methods=("POST",))
    def backtest(self, draft_id: int) -> Any:
        self.require("admin")
        raw = (request.form.get("hours") or "").strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_HOURS:
            return self._page(draft_id, error=f"hours must be a whole number from 1 to {MAX_HOURS}")
        hours = int(raw)
        with runtime().sessions() as session:
            document = self._draft(session, draft_id).document
        try:
            with backtest_slots().taken():
                result = commands.backtest(runtime(), Draft.from_document(document), hours)
        except Invalid as exc:
            return self._page(draft_id, hours=hours, error=exc.message)
        except BacktestsBusy as exc:
            body, _ = self._page(draft_id, hours=hours, error=str(exc))
            return body, 429, {"Retry-After": str(exc.retry_after)}
        return self._page(draft_id, hours=hours, result=result)

    @expose("/<int:draft_id>/publish", methods=("POST",))
    def publish(self, draft_id: int) -> BaseResponse:
        with runtime().sessions() as session:
            self._editable(session, draft_id)
        reason = form_reason()
        if reason is None:
            return redirect(url_for(".details", draft_id=draft_id))
        try:
            with audited_change(
                runtime().sessions,
                runtime().redis,
                changed_by=current_user.username,
                reason=reason,
            ) as change:
                created = commands.publish_stored(
                    change, draft_id, force=request.form.get("force") == "1"
                )[1]
        except NotFound:
            abort(404)
        except (Conflict, Invalid) as exc:  # a rule changed since the draft; a clearing loop
            flash(f"Not published: {exc.message}", "error")
            return redirect(url_for(".details", draft_id=draft_id))
        flash(
            f"Published: {len(created)} new rule(s); every change is in the config audit under"
            f" correlation id {change.correlation_id}.",
            "success",
        )
        if change.warnings:
            flash("Redis is unreachable: workers pick the change up within CACHE_RELOAD_INTERVAL.")
        return redirect(url_for(".details", draft_id=draft_id))

    @expose("/<int:draft_id>/rebase", methods=("POST",))
    def rebase(self, draft_id: int) -> BaseResponse:
        """Base the draft on its rules as they are now (after the admin checked it), audited."""
        with runtime().sessions() as session:
            self._editable(session, draft_id)
        reason = form_reason()
        if reason is None:
            return redirect(url_for(".details", draft_id=draft_id))
        try:
            with audited_change(
                runtime().sessions, None, changed_by=current_user.username, reason=reason
            ) as change:
                commands.rebase(change, draft_id)
        except NotFound:
            abort(404)
        except (Conflict, Invalid) as exc:
            flash(f"Not re-based: {exc.message}", "error")
            return redirect(url_for(".details", draft_id=draft_id))
        flash("Draft re-based on the rules as they are now.", "success")
        return redirect(url_for(".details", draft_id=draft_id))
