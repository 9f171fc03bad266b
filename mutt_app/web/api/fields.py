"""Request bodies: the JSON object of a request, and the reason a change gives.

A body sent as anything but JSON is a 415, JSON that does not parse or is not an object a 400; a
change without a reason a 422. The body's fields are checked by
:func:`mutt_app.commands.fields.check_fields` (:class:`~mutt_app.commands.fields.FieldSpec`), whose
:class:`~mutt_app.commands.errors.Invalid` the API answers with 422.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import request

from mutt_app.commands.fields import json_type
from mutt_app.web.api.errors import ApiError


def json_body() -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}``.

    A body sent as anything but JSON (Content-Type ``application/json`` or ``...+json``) is a 415;
    JSON that does not parse, or is not an object, a 400.
    """
    data = request.get_data(cache=True)
    if not data.strip():
        return {}
    if not request.is_json:
        raise ApiError(
            415,
            "the body must be sent as Content-Type: application/json",
            {"content_type": request.content_type},
        )
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "body is not valid JSON", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def change_reason(body: Mapping[str, Any]) -> str:
    """The reason for a change: the body's ``reason``, else header ``X-Change-Reason``; 422 if none."""
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(422, f"wrong field type: reason expected string, got {json_type(reason)}")
    reason = (reason or request.headers.get("X-Change-Reason") or "").strip()
    if not reason:
        raise ApiError(
            422,
            'a change needs a reason: the body field "reason" or the X-Change-Reason header',
            {"missing_fields": ["reason"]},
        )
    if "\x00" in reason:
        raise ApiError(422, "reason must not contain NUL characters")
    return reason
