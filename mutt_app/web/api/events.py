"""``GET /events/<correlation_id>``: one event's whole story (:func:`mutt_app.commands.events.story`).

What arrived, which rule and rules version decided it, why it was or was not sent (the held reason
in words, the alert a duplicate repeats, the window, the budgets), each delivery attempt with Moog's
answer, the dead letter if any, and its trace id when one is recorded. 400 for an id that is not a
UUID, 404 when MUTT has no trace of it; viewer, as every read.
"""

from __future__ import annotations

from flask import Response

from mutt_app.commands import events
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.errors import ApiError
from mutt_app.web.api.resources import redis_connection, sessions
from mutt_app.web.api.responses import json_response
from mutt_app.web.context import runtime


@bp.get("/events/<correlation_id>")
def event_story(correlation_id: str) -> Response:
    """The event's story: arrival, decision, outcome, deliveries, dead letters, trace id."""
    wanted = events.event_id(correlation_id)
    if wanted is None:
        raise ApiError(400, "correlation_id must be a UUID", {"parameter": "correlation_id"})
    with sessions()() as session:
        found = events.story(session, redis_connection(), runtime().dynamic_config, wanted)
    return json_response(found)
