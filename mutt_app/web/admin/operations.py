"""Admin UI pages for running MUTT: dead letters, dynamic configuration and beat, the rule tester.

Access (roles from :mod:`mutt_app.web.auth`):

- Dead letters and poison (``/admin/dlq/``): everyone logged in inspects them (payload, error,
  attempts); an operator or admin replays one (published again through
  :func:`mutt_app.forwarding.deadletters.replay`, the function the CLI, the API and remediation use); only an
  admin purges one, since a purge cannot be undone (the audit row keeps the item, payload and all).
- Dynamic configuration (``/admin/dynamic-config/``): everyone reads it with the beat schedule; an
  operator or admin changes values, checked by :func:`mutt_app.dynamic_config.parse_value` and
  stored by :func:`mutt_app.dynamic_config.set_audited`, all or none.
- Rule tester (``/admin/rule-tester/``): everyone; :func:`mutt_app.rules.tester.try_event` over the
  rules in the database, the same answer ``POST /api/v2/rules/test`` gives.

Every change needs a reason and writes one config_audit_log row (who = the username) in the same
transaction as the change.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import orjson
import redis
from celery.schedules import crontab, schedule
from flask import abort, flash, redirect, request, url_for
from flask_admin import BaseView, expose
from flask_admin.menu import MenuLink
from flask_login import current_user
from kombu.exceptions import KombuError
from werkzeug.wrappers import Response as BaseResponse

from mutt_app.db.config_audit import record_change
from mutt_app.db.models import DeadLetter, PoisonLetter
from mutt_app.dynamic_config import KEYS, parse_value, set_audited
from mutt_app.events.schema import InvalidEvent
from mutt_app.forwarding import deadletters
from mutt_app.forwarding import history as delivery_history
from mutt_app.names import FORWARD_TASK
from mutt_app.rules.compile import BudgetExceeded
from mutt_app.web.admin import MAX_BIGINT, MAX_PAGE, MAX_REASON
from mutt_app.web.api.operations import _celery, dynamic_config
from mutt_app.web.api.resources import redis_connection, sessions
from mutt_app.web.api.rules import rule_trial
from mutt_app.web.context import settings

log = logging.getLogger(__name__)

PAGE_SIZE = 50
SAMPLE_EVENT = {
    "hostname": "router-01",
    "message": "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down",
    "syslog_severity": 3,
}


def _allowed(role: str) -> bool:
    return bool(current_user.is_authenticated and current_user.has_role(role))


def _reason() -> str | None:
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
        return _allowed(self.read_role)

    def inaccessible_callback(self, name: str, **kwargs: Any) -> BaseResponse:
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def require(self, role: str) -> None:
        """403 unless the logged-in person has ``role`` (or a higher one)."""
        if not _allowed(role):
            abort(403)


# --- dead letters and poison ---------------------------------------------------------------------


def _table(poison: bool) -> str:
    return PoisonLetter.__tablename__ if poison else DeadLetter.__tablename__


class DeadLetterView(MuttPage):
    """The dead-letter queue and the poison store: inspect, replay (operator+), purge (admin)."""

    replay_role = "operator"
    purge_role = "admin"

    @staticmethod
    def _poison() -> bool:
        return request.values.get("poison", "") in ("1", "true", "yes")

    @expose("/")
    def index(self) -> str:
        poison = self._poison()
        try:
            # Clamped: a hostile page number gets the first or an empty page, not a database error.
            page = min(max(int(request.args.get("page", "1")), 1), MAX_PAGE)
        except ValueError:
            page = 1
        with sessions()() as session:
            items = deadletters.find(
                session, poison=poison, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
            )
            total = deadletters.count(session, poison=poison)
            other = deadletters.count(session, poison=not poison)
        return self.render(
            "admin/mutt/dlq.html",
            items=items,
            total=total,
            other_total=other,
            poison=poison,
            page=page,
            pages=max((total + PAGE_SIZE - 1) // PAGE_SIZE, 1),
            can_replay=_allowed(self.replay_role),
            can_purge=_allowed(self.purge_role),
        )

    def _item(self, session: Any, item_id: int, poison: bool) -> DeadLetter | PoisonLetter:
        # An id past 64 bits names nothing (and PostgreSQL would refuse it outright).
        item = (
            session.get(PoisonLetter if poison else DeadLetter, item_id)
            if item_id <= MAX_BIGINT
            else None
        )
        if item is None:
            abort(404)
        return item

    @expose("/<int:item_id>/")
    def details(self, item_id: int) -> str:
        poison = self._poison()
        with sessions()() as session:
            item = self._item(session, item_id, poison)
            payload = orjson.dumps(item.payload, option=orjson.OPT_INDENT_2).decode()
            replayable = deadletters.replay_call(item) is not None
            deliveries = None
            if item.task_name == FORWARD_TASK and item.correlation_id:
                try:
                    deliveries = delivery_history.report(
                        redis_connection(), str(item.correlation_id)
                    )
                except (redis.RedisError, OSError):
                    deliveries = {"unavailable": True}
            return self.render(
                "admin/mutt/dlq_details.html",
                item=item,
                poison=poison,
                payload=payload,
                replayable=replayable,
                deliveries=deliveries,
                can_replay=_allowed(self.replay_role),
                can_purge=_allowed(self.purge_role),
            )

    def _back(self, poison: bool) -> BaseResponse:
        return redirect(url_for(".index", poison=1 if poison else None))

    @expose("/<int:item_id>/replay", methods=("POST",))
    def replay(self, item_id: int) -> BaseResponse:
        """Publish the item's task again now and remove it, audited."""
        self.require(self.replay_role)
        poison = self._poison()
        reason = _reason()
        if reason is None:
            return redirect(url_for(".details", item_id=item_id, poison=1 if poison else None))
        details = url_for(".details", item_id=item_id, poison=1 if poison else None)
        try:
            with sessions().begin() as session:
                item = self._item(session, item_id, poison)
                old = item.as_dict()
                replayed = deadletters.replay(session, _celery(), item)
                if replayed is None:  # nothing was changed
                    flash(
                        f"Item {item_id} cannot be replayed (its payload is not usable).", "error"
                    )
                    return redirect(details)
                name, queue = replayed
                new = {"replayed": True, "task": name, "queue": queue}
                self._audit(session, item, old, new, reason)
        except (KombuError, redis.RedisError, OSError) as exc:
            # Publishing failed: the transaction rolled back and the item stays where it was.
            log.error(
                "replay of %s %d failed, broker unreachable: %s", _table(poison), item_id, exc
            )
            flash(f"Item {item_id} was not replayed: the broker is unreachable ({exc}).", "error")
            return redirect(details)
        log.info("%s replayed %s %d to %s", current_user.username, _table(poison), item_id, queue)
        flash(f"Item {item_id} replayed: {name} published on {queue}.", "success")
        return self._back(poison)

    @expose("/<int:item_id>/purge", methods=("POST",))
    def purge(self, item_id: int) -> BaseResponse:
        """Delete the item for good, audited (the audit row keeps it)."""
        self.require(self.purge_role)
        poison = self._poison()
        reason = _reason()
        if reason is None:
            return redirect(url_for(".details", item_id=item_id, poison=1 if poison else None))
        with sessions().begin() as session:
            item = self._item(session, item_id, poison)
            old = item.as_dict()
            deadletters.purge(session, item)
            self._audit(session, item, old, None, reason)
        log.warning("%s purged %s %d", current_user.username, item.__tablename__, item_id)
        flash(f"Item {item_id} purged.", "success")
        return self._back(poison)

    @staticmethod
    def _audit(
        session: Any,
        item: DeadLetter | PoisonLetter,
        old: dict[str, Any],
        new: dict[str, Any] | None,
        reason: str,
    ) -> None:
        record_change(
            session,
            changed_by=current_user.username,
            operation="DELETE",
            table_name=item.__tablename__,
            record_id=item.id,
            old_values=old,
            new_values=new,
            reason=reason,
        )


# --- dynamic configuration and beat --------------------------------------------------------------


def describe_schedule(entry: Any) -> str:
    """A beat entry's schedule in words: "every 60 s" or "cron 17 0 * * *" (minute hour ...)."""
    if isinstance(entry, timedelta):
        return f"every {entry.total_seconds():g} s"
    if isinstance(entry, crontab):
        fields = ("_orig_minute", "_orig_hour", "_orig_day_of_month", "_orig_month_of_year")
        parts = [str(getattr(entry, name)) for name in fields]
        return "cron " + " ".join([*parts, str(entry._orig_day_of_week)])
    if isinstance(entry, schedule):
        return f"every {entry.run_every.total_seconds():g} s"
    if isinstance(entry, int | float):
        return f"every {entry:g} s"
    return str(entry)


def beat_jobs() -> list[dict[str, str]]:
    """The Celery app's beat schedule: each job's name, task and schedule."""
    jobs = _celery().conf.beat_schedule or {}
    return [
        {"name": name, "task": job["task"], "schedule": describe_schedule(job["schedule"])}
        for name, job in sorted(jobs.items())
    ]


class DynamicConfigView(MuttPage):
    """Runtime settings (read: everyone; change: operator+) and the beat schedule (read-only)."""

    write_role = "operator"

    def _page(
        self, values: dict[str, str] | None = None, problems: dict[str, str] | None = None
    ) -> str:
        config = dynamic_config()
        current = config.get_all()
        rows = []
        for name, key in KEYS.items():
            bounds = []
            if key.minimum is not None:
                bounds.append(f">= {key.minimum:g}")
            if key.maximum is not None:
                bounds.append(f"<= {key.maximum:g}")
            if key.choices:
                bounds.append(" | ".join(key.choices))
            rows.append(
                {
                    "name": name,
                    "value": current[name]["value"],
                    "shown": (values or {}).get(name, str(current[name]["value"])),
                    "overridden": current[name]["overridden"],
                    "default": config.default(name),
                    "kind": key.kind.__name__,
                    "bounds": ", ".join(bounds),
                    "help": key.help,
                    "problem": (problems or {}).get(name),
                }
            )
        return self.render(
            "admin/mutt/dynamic_config.html",
            rows=rows,
            jobs=beat_jobs(),
            can_edit=_allowed(self.write_role),
            reason=request.form.get("reason", ""),
        )

    @expose("/")
    def index(self) -> Any:
        try:
            return self._page()
        except (redis.RedisError, OSError) as exc:
            log.warning("dynamic configuration page: Redis unreachable: %s", exc)
            flash(f"Redis is unreachable, the dynamic configuration cannot be read: {exc}", "error")
            return self.render("admin/mutt/dynamic_config.html", rows=[], jobs=beat_jobs(),
                               can_edit=False, reason="")  # fmt: skip

    @expose("/", methods=("POST",))
    def update(self) -> Any:
        """Store the values that changed, all or none, with one audit row."""
        self.require(self.write_role)
        config = dynamic_config()
        try:
            current = config.get_all()
        except (redis.RedisError, OSError) as exc:
            log.error("dynamic configuration change refused: Redis unreachable: %s", exc)
            flash(f"Nothing was changed: Redis is unreachable ({exc}).", "error")
            return redirect(url_for(".index"))
        # Only the settings the form sent; a missing one is left as it is.
        values = {name: request.form[name].strip() for name in KEYS if name in request.form}
        problems: dict[str, str] = {}
        changed: dict[str, Any] = {}
        for name, raw in values.items():
            try:
                value = parse_value(name, raw)
            except ValueError as exc:
                problems[name] = str(exc)
                continue
            if value != current[name]["value"]:
                changed[name] = value
        if problems:
            flash("Nothing was changed: " + "; ".join(problems.values()), "error")
            return self._page(values, problems), 422
        if not changed:
            flash("Nothing to change: every value is as it was.", "info")
            return redirect(url_for(".index"))
        reason = _reason()
        if reason is None:
            return self._page(values), 422
        try:
            with sessions().begin() as session:
                old = set_audited(
                    config, session, changed, changed_by=current_user.username, reason=reason
                )
        except (redis.RedisError, OSError) as exc:
            log.error("dynamic configuration change refused: Redis unreachable: %s", exc)
            flash(f"Nothing was changed: Redis is unreachable ({exc}).", "error")
            return self._page(values), 503
        shown = ", ".join(f"{n}: {old[n]} -> {v}" for n, v in changed.items())
        log.info("%s changed dynamic configuration: %s", current_user.username, shown)
        flash(f"Changed {shown}. Every process picks it up within seconds.", "success")
        return redirect(url_for(".index"))


# --- rule tester ---------------------------------------------------------------------------------


class RuleTesterView(MuttPage):
    """Paste an event: which active rule wins, with what handling and team, and what it shadows."""

    @expose("/", methods=("GET", "POST"))
    def index(self) -> Any:
        text = (
            request.form.get("event")
            or orjson.dumps(SAMPLE_EVENT, option=orjson.OPT_INDENT_2).decode()
        )
        result = None
        error = None
        if request.method == "POST":
            try:
                result = test_event(text)
            except ValueError as exc:
                error = str(exc)
        return self.render(
            "admin/mutt/rule_tester.html", event_text=text, result=result, error=error
        ), (422 if error else 200)


def test_event(text: str) -> dict[str, Any]:
    """The rule tester's answer for an event given as JSON text; ValueError if it is not one."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the event must be a JSON object")
    try:
        trial = rule_trial(body)
    except InvalidEvent as exc:
        raise ValueError(f"not a valid event: {exc}") from None
    except BudgetExceeded as exc:
        raise ValueError(str(exc)) from None
    return {"event": trial.event, **trial.outcome(), "skipped_rules": trial.skipped_rules}


# --- Flower --------------------------------------------------------------------------------------


class FlowerLink(MenuLink):
    """FLOWER_URL, or Flower on FLOWER_PORT of the host the browser reached the UI on."""

    def get_url(self) -> str:
        config = settings()
        if config.flower_url:
            return config.flower_url
        host = urlsplit(request.host_url).hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        return f"{request.scheme}://{host}:{config.flower_port}/"

    def is_accessible(self) -> bool:
        return _allowed("viewer")
