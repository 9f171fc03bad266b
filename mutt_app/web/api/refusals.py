"""How the REST API answers a command's refusal (:mod:`mutt_app.commands.errors`).

:class:`~mutt_app.commands.errors.NotFound` is a 404, :class:`~mutt_app.commands.errors.Invalid` a
422 and :class:`~mutt_app.commands.errors.Conflict` a 409, each ``{"error": message, "details":
details}`` like every other API error. The handler is registered on the API blueprint when this
module is imported (by :mod:`mutt_app.web.api`, with the route modules).
"""

from __future__ import annotations

from flask import Response

from mutt_app.commands.errors import CommandError, Conflict, Invalid, NotFound
from mutt_app.web.api.blueprint import bp
from mutt_app.web.api.responses import json_response

STATUS: dict[type[CommandError], int] = {NotFound: 404, Invalid: 422, Conflict: 409}


def status_of(exc: CommandError) -> int:
    """The HTTP status that answers ``exc``."""
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 422)


@bp.errorhandler(CommandError)
def refused(exc: CommandError) -> Response:
    """A command's refusal as an API error answer."""
    return json_response({"error": exc.message, "details": exc.details}, status_of(exc))
