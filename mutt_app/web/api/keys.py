"""Who calls the API and what they may do: API keys, roles per view, and the logged-in UI session.

Every request needs the header ``X-API-Key``, compared in constant time with the accepted keys of
:mod:`mutt_app.api_keys`. Each view needs a role (:func:`requires`; unmarked reads need viewer,
unmarked writes admin); :func:`public` views need no key. Bad keys are counted per client IP
(:mod:`mutt_app.web.throttle`); too many answer 429.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request
from flask_login import current_user

from mutt_app.api_keys import UNSCOPED_CHANGED_BY, ApiKey, accepted_keys, identify
from mutt_app.db.models import ROLES
from mutt_app.web import throttle
from mutt_app.web.api.errors import ApiError
from mutt_app.web.context import settings

log = logging.getLogger(__name__)

CHANGED_BY = UNSCOPED_CHANGED_BY  # changed_by of WEBUI_API_KEY; a scoped key's is api:<name>
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

F = TypeVar("F", bound=Callable[..., Any])


def requires(role: str) -> Callable[[F], F]:
    """Mark a view as needing ``role`` (viewer, operator, admin) instead of the default.

    Without a mark a reading method (GET, HEAD) needs viewer and anything else admin, so a new
    writing route is admin-only until someone decides otherwise.
    """
    assert role in ROLES

    def mark(view: F) -> F:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def public(view: F) -> F:
    """Mark a view as answering without a key (the API's own description)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def required_role(view: Callable[..., Any], method: str) -> str:
    """The role ``method`` on ``view`` needs."""
    marked = getattr(view, "required_role", None)
    if marked is not None:
        return marked
    return "viewer" if method in READ_METHODS else "admin"


def api_keys() -> tuple[ApiKey, ...]:
    """The keys this app accepts (parsed once)."""
    keys = current_app.extensions.get("mutt_api_keys")
    if keys is None:
        config = settings()
        keys = accepted_keys(
            config.webui_api_keys.get_secret_value() if config.webui_api_keys else None,
            config.webui_api_key.get_secret_value() if config.webui_api_key else None,
        )
        keys = current_app.extensions.setdefault("mutt_api_keys", keys)
    return keys


def current_key() -> ApiKey:
    """The key the current request was authenticated with."""
    return g.api_key


def authenticate() -> None:
    """401 unless ``X-API-Key`` is an accepted key, 403 unless its role suffices, 429 if throttled."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or getattr(view, "public", False):
        return
    given = request.headers.get("X-API-Key")
    if not given and (person := _logged_in_person()) is not None:
        # The spec's "API key or session": a person logged in to the UI may use what changes
        # nothing (what needs only the viewer role), as themselves. Not more: the API is not
        # CSRF-protected, so changes need a key.
        if required_role(view, request.method) != "viewer":
            raise ApiError(
                401, "a logged-in session may only read the API; changes need an X-API-Key"
            )
        _check_role(person, view)
        return
    keys = api_keys()
    if not keys:
        raise ApiError(
            401,
            "no API key is configured (WEBUI_API_KEY or WEBUI_API_KEYS): the API refuses"
            " every request until one is",
        )
    wait = throttle.retry_after(throttle.API_KEY)
    if wait is not None:
        raise ApiError(
            429,
            "too many requests with a bad API key from this address; retry later",
            {"retry_after_seconds": wait},
            headers={"Retry-After": str(wait)},
        )
    if not given:
        raise ApiError(401, "missing X-API-Key header")
    key = identify(keys, given)
    if key is None:
        throttle.record_failure(throttle.API_KEY)
        log.warning(
            "API request with a bad key from %s: %s %s",
            request.remote_addr,
            request.method,
            request.path,
        )
        raise ApiError(401, "invalid API key")
    _check_role(key, view)


def _check_role(key: ApiKey, view: Callable[..., Any]) -> None:
    """Remember who calls; 403 unless ``key``'s role is enough for this request."""
    g.api_key = key
    g.api_role = key.role
    needed = required_role(view, request.method)
    if not key.has_role(needed):
        raise ApiError(
            403,
            f"{key.name!r} has the {key.role} role; {request.method} {request.path} needs {needed}",
            {"key": key.name, "role": key.role, "required_role": needed},
        )


def _logged_in_person() -> ApiKey | None:
    """The person logged in to the UI (session cookie) as a read-only caller, or None."""
    if not hasattr(current_app, "login_manager"):
        return None
    person = current_user
    if not getattr(person, "is_authenticated", False):
        return None
    return ApiKey(f"user:{person.username}", person.role, "", scoped=True)
