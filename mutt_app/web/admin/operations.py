"""Admin UI pages for running MUTT: dynamic configuration and beat, the rule tester, Flower (the dead
letters are in :mod:`mutt_app.web.admin.deadletters`).

Access (roles from :mod:`mutt_app.web.auth`):

- Dynamic configuration (``/admin/dynamic-config/``): everyone reads it with the beat schedule; an
  operator or admin changes values, checked by :func:`mutt_app.dynamic_config.parse_value` and
  stored by the command :func:`mutt_app.commands.dynamic_config.set_values`, all or none.
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
from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.menu import MenuLink
from flask_login import current_user

from mutt_app.commands import dynamic_config as config_commands
from mutt_app.commands import rules
from mutt_app.commands.errors import Invalid
from mutt_app.dynamic_config import KEYS, parse_value
from mutt_app.events.schema import InvalidEvent
from mutt_app.rules.compile import BudgetExceeded
from mutt_app.web.admin.base import MuttPage, form_reason, role_allows
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)

SAMPLE_EVENT = {
    "hostname": "router-01",
    "message": "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to down",
    "syslog_severity": 3,
}


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
    jobs = runtime().celery.conf.beat_schedule or {}
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
        config = runtime().dynamic_config
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
            can_edit=role_allows(self.write_role),
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
        config = runtime().dynamic_config
        try:
            current = config.get_all()
        except (redis.RedisError, OSError) as exc:
            log.error("dynamic configuration change refused: Redis unreachable: %s", exc)
            flash(f"Nothing was changed: Redis is unreachable ({exc}).", "error")
            return redirect(url_for(".index"))
        # Only the settings the form sent; a missing one is left as it is.
        values = {name: request.form[name].strip() for name in KEYS if name in request.form}
        problems: dict[str, str] = {}
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            try:
                value = parse_value(name, raw)
            except ValueError as exc:
                problems[name] = str(exc)
                continue
            parsed[name] = value
        if problems:
            flash("Nothing was changed: " + "; ".join(problems.values()), "error")
            return self._page(values, problems), 422
        changed = {name: v for name, v in parsed.items() if v != current[name]["value"]}
        if not changed:
            flash("Nothing to change: every value is as it was.", "info")
            return redirect(url_for(".index"))
        reason = form_reason()
        if reason is None:
            return self._page(values), 422
        try:
            with runtime().sessions.begin() as session:
                old = config_commands.set_values(
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
        dedup_key = request.form.get("dedup_key", "").strip()
        result = None
        error = None
        if request.method == "POST":
            try:
                result = test_event(text, dedup_key or None)
            except ValueError as exc:
                error = str(exc)
        return self.render(
            "admin/mutt/rule_tester.html",
            event_text=text,
            dedup_key=dedup_key,
            result=result,
            error=error,
        ), (422 if error else 200)


def test_event(text: str, dedup_key: str | None = None) -> dict[str, Any]:
    """The rule tester's answer for an event given as JSON text, with the winning rule's dedup key
    or ``dedup_key`` tried instead; ValueError if either is not one."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the event must be a JSON object")
    try:
        trial = rules.trial(runtime(), body, dedup_key)
    except InvalidEvent as exc:
        raise ValueError(f"not a valid event: {exc}") from None
    except Invalid as exc:
        raise ValueError(exc.message) from None
    except BudgetExceeded as exc:
        raise ValueError(str(exc)) from None
    return {"event": trial.event, **trial.outcome(), "skipped_rules": trial.skipped_rules}


# --- Flower --------------------------------------------------------------------------------------


class FlowerLink(MenuLink):
    """FLOWER_URL, or Flower on FLOWER_PORT of the host the browser reached the UI on."""

    def get_url(self) -> str:
        config = runtime().settings
        if config.flower_url:
            return config.flower_url
        host = urlsplit(request.host_url).hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        return f"{request.scheme}://{host}:{config.flower_port}/"

    def is_accessible(self) -> bool:
        return role_allows("viewer")
