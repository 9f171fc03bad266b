"""Admin UI: dead letters and poison (``/admin/dlq/``).

Everyone logged in inspects them (payload, error, attempts, the delivery history); an operator or
admin replays one (published again, the command :func:`mutt_app.commands.deadletters.replay` that
the API runs too); only an admin purges one (:func:`mutt_app.commands.deadletters.purge`), since a
purge cannot be undone (the audit row keeps the item, payload and all). Every change needs a reason
and writes one config_audit_log row (who = the username) in the same transaction as the change.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Any

import orjson
import redis
from flask import abort, flash, redirect, request, url_for
from flask_admin import expose
from flask_login import current_user
from kombu.exceptions import KombuError
from werkzeug.wrappers import Response as BaseResponse

from mutt_app.commands import deadletters as commands
from mutt_app.commands.changes import Change, audited_change
from mutt_app.commands.errors import Invalid, NotFound
from mutt_app.db.models import DeadLetter, PoisonLetter
from mutt_app.forwarding import deadletters
from mutt_app.forwarding import history as delivery_history
from mutt_app.web.admin.base import MAX_PAGE, MuttPage, form_reason, role_allows
from mutt_app.web.context import runtime

log = logging.getLogger(__name__)

PAGE_SIZE = 50
FORWARD_TASK = "mutt.forward_to_moog"


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
        with runtime().sessions() as session:
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
            can_replay=role_allows(self.replay_role),
            can_purge=role_allows(self.purge_role),
        )

    def _item(self, session: Any, item_id: int, poison: bool) -> DeadLetter | PoisonLetter:
        try:
            return commands.item(session, item_id, poison=poison)
        except NotFound:
            abort(404)

    @expose("/<int:item_id>/")
    def details(self, item_id: int) -> str:
        poison = self._poison()
        with runtime().sessions() as session:
            item = self._item(session, item_id, poison)
            payload = orjson.dumps(item.payload, option=orjson.OPT_INDENT_2).decode()
            replayable = deadletters.replay_call(item) is not None
            deliveries = None
            if item.task_name == FORWARD_TASK and item.correlation_id:
                try:
                    deliveries = delivery_history.report(runtime().redis, str(item.correlation_id))
                except (redis.RedisError, OSError):
                    deliveries = {"unavailable": True}
            return self.render(
                "admin/mutt/dlq_details.html",
                item=item,
                poison=poison,
                payload=payload,
                replayable=replayable,
                deliveries=deliveries,
                can_replay=role_allows(self.replay_role),
                can_purge=role_allows(self.purge_role),
            )

    @staticmethod
    def _change(reason: str) -> AbstractContextManager[Change]:
        # Its own session (the page's is read-only); no rules-version bump: no rule changed.
        return audited_change(
            runtime().sessions, None, changed_by=current_user.username, reason=reason
        )

    def _back(self, poison: bool) -> BaseResponse:
        return redirect(url_for(".index", poison=1 if poison else None))

    @expose("/<int:item_id>/replay", methods=("POST",))
    def replay(self, item_id: int) -> BaseResponse:
        """Publish the item's task again now and remove it, audited."""
        self.require(self.replay_role)
        poison = self._poison()
        reason = form_reason()
        if reason is None:
            return redirect(url_for(".details", item_id=item_id, poison=1 if poison else None))
        details = url_for(".details", item_id=item_id, poison=1 if poison else None)
        try:
            with self._change(reason) as change:
                self._item(change.session, item_id, poison)
                name, queue = commands.replay(change, runtime().celery, item_id, poison=poison)
        except Invalid:  # nothing was changed
            flash(f"Item {item_id} cannot be replayed (its payload is not usable).", "error")
            return redirect(details)
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
        reason = form_reason()
        if reason is None:
            return redirect(url_for(".details", item_id=item_id, poison=1 if poison else None))
        with self._change(reason) as change:
            self._item(change.session, item_id, poison)
            item = commands.purge(change, item_id, poison=poison)
        log.warning("%s purged %s %d", current_user.username, item.__tablename__, item_id)
        flash(f"Item {item_id} purged.", "success")
        return self._back(poison)
