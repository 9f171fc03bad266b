"""Admin UI page for maintenance windows (``/admin/maintenance-windows/``).

Everyone logged in sees every window, whether it is open now, and its next occurrences; an admin
(as for rules) adds one (with a preview of its next occurrences before saving), ends an open one
now, or deletes one. Every change is a command of :mod:`mutt_app.commands.windows` (the checks
the REST API's changes pass too), run with the form's reason.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from mutt_app.commands import windows as commands
from mutt_app.commands.changes import audited_change
from mutt_app.commands.errors import Conflict, Invalid, NotFound
from mutt_app.db.models import WINDOW_ACTIONS, MaintenanceWindow
from mutt_app.holdback import windows as mw
from mutt_app.web.admin.base import MuttPage, form_reason, role_allows
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)

PREVIEW_OCCURRENCES = 5
_LISTS = ("hosts", "teams", "oid_prefixes")


def _form_fields(form: Any) -> dict[str, Any]:
    """The window's fields from the form: lists comma-separated, times read in its time zone."""
    timezone = (form.get("timezone") or "UTC").strip()
    zone = mw.zone(timezone)

    def when(name: str) -> datetime | None:
        raw = (form.get(name) or "").strip()
        if not raw:
            return None
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise mw.WindowError(f"{name}: a date and time, like 2026-12-24T02:00") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=zone)

    duration = (form.get("duration_minutes") or "").strip()
    if duration and not duration.isdigit():
        raise mw.WindowError("duration_minutes: a whole number of minutes")
    rule_ids = [item.strip() for item in (form.get("rule_ids") or "").split(",") if item.strip()]
    if any(not item.isdigit() for item in rule_ids):
        raise mw.WindowError("rule_ids: rule ids, comma-separated")
    fields: dict[str, Any] = {
        "name": form.get("name"),
        "starts_at": when("starts_at"),
        "ends_at": when("ends_at"),
        "duration_minutes": int(duration) if duration else None,
        "rrule": (form.get("rrule") or "").strip() or None,
        "timezone": timezone,
        "rule_ids": [int(item) for item in rule_ids],
        "action": form.get("action"),
        "summary_alert": form.get("summary_alert") == "on",
    }
    for name in _LISTS:
        fields[name] = [item.strip() for item in (form.get(name) or "").split(",") if item.strip()]
    return fields


class MaintenanceWindowView(MuttPage):
    """Windows with their next occurrences; admins add (with a preview), end now, delete."""

    write_role = "admin"

    def _page(self, preview: list[dict[str, str]] | None = None, problem: str | None = None) -> str:
        now = datetime.now(UTC)
        schedules = runtime().component(mw.Schedules.of).of_row  # kept per window version
        with runtime().sessions() as session:
            rows = session.scalars(select(MaintenanceWindow)).all()
            windows = [
                mw.describe(row, now, upcoming=PREVIEW_OCCURRENCES, schedules=schedules)
                for row in rows
            ]
        # Open windows first, then the next to open.
        windows.sort(
            key=lambda w: (
                not w["active"],
                w["next_occurrences"][0]["start"] if w["next_occurrences"] else "~",
                w["name"],
            )
        )
        return self.render(
            "admin/mutt/maintenance_windows.html",
            windows=windows,
            can_edit=role_allows(self.write_role),
            actions=WINDOW_ACTIONS,
            form=request.form,
            preview=preview,
            problem=problem,
        )

    @expose("/")
    def index(self) -> str:
        return self._page()

    def _change(self, reason: str) -> Any:
        return audited_change(
            runtime().sessions, runtime().redis, changed_by=current_user.username, reason=reason
        )

    def _rescheduled(self, window_id: int, schedule: mw.Schedule | None) -> None:
        commands.rescheduled(runtime(), window_id, schedule)

    @expose("/new", methods=("POST",))
    def create(self) -> Any:
        """Preview the next occurrences of the form's window, or add it."""
        self.require(self.write_role)
        try:
            stored = commands.checked(_form_fields(request.form))
        except mw.WindowError as exc:  # the form's own reading
            return self._page(problem=str(exc)), 422
        except Invalid as exc:
            return self._page(problem=exc.message), 422
        schedule = mw.Schedule(
            stored["starts_at"],
            ends_at=stored["ends_at"],
            rrule=stored["rrule"],
            duration_minutes=stored["duration_minutes"],
            timezone=stored["timezone"],
        )
        upcoming = schedule.occurrences(datetime.now(UTC), PREVIEW_OCCURRENCES)
        if request.form.get("preview"):
            shown = [{"start": o.start.isoformat(), "end": o.end.isoformat()} for o in upcoming]
            return self._page(preview=shown)
        reason = form_reason()
        if reason is None:
            return self._page(), 422  # _reason flashed why
        try:
            with self._change(reason) as change:
                window_id = commands.create(change, stored).id
        except IntegrityError:
            return self._page(problem=f"A window named {stored['name']!r} exists."), 409
        self._rescheduled(window_id, schedule)
        flash(f"Window {stored['name']!r} added.", "success")
        return redirect(url_for(".index"))

    @expose("/<int:window_id>/end", methods=("POST",))
    def end(self, window_id: int) -> Any:
        """End the window's open occurrence now."""
        self.require(self.write_role)
        reason = form_reason()
        if reason is None:
            return redirect(url_for(".index"))
        try:
            with self._change(reason) as change:
                row = commands.end(change, window_id)
                name, schedule = row.name, mw.schedule_of(row)
        except (NotFound, Conflict) as exc:
            flash(exc.message, "error")
            return redirect(url_for(".index"))
        self._rescheduled(window_id, schedule)
        flash(f"Window {name!r} ended now.", "success")
        return redirect(url_for(".index"))

    @expose("/<int:window_id>/delete", methods=("POST",))
    def delete(self, window_id: int) -> Any:
        """Delete the window (an open occurrence ends at once)."""
        self.require(self.write_role)
        reason = form_reason()
        if reason is None:
            return redirect(url_for(".index"))
        try:
            with self._change(reason) as change:
                old = commands.delete(change, window_id)
        except NotFound:
            flash(f"No maintenance window {window_id}.", "error")
            return redirect(url_for(".index"))
        self._rescheduled(window_id, None)
        flash(f"Window {old['name']!r} deleted.", "success")
        return redirect(url_for(".index"))
