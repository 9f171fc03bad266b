"""Driving MUTT's web apps from tests as a person and an API client do.

A person logs in through the /login form with the CSRF token read from the page, as a browser does;
an API client sends the key in ``X-API-Key``. The users the ``users`` fixture makes all have
``PASSWORD``.
"""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

PASSWORD = "correct horse battery staple"
KEY = "test-api-key-0123456789"
AUTH = {"X-API-Key": KEY}
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(page: str) -> str:
    """The CSRF token of a form in ``page``."""
    found = CSRF.search(page)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> int:
    """Log in through the form; the status code of the answer (302 when it worked)."""
    token = csrf_token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    return response.status_code


def logged_in(client: FlaskClient) -> bool:
    """Whether the client's session is logged in (the home page answers)."""
    return client.get("/").status_code == 200


def form_token(client: FlaskClient, url: str) -> str:
    """The CSRF token of the form on the page at ``url``, which must answer 200."""
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return csrf_token(response.get_data(as_text=True))


def call(
    client: FlaskClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    reason: str | None = "test change",
    headers: dict[str, str] | None = None,
    status: int | None = None,
) -> Any:
    """Call the API with the key; a dict body gets ``reason`` unless it is None. Returns the JSON."""
    if isinstance(body, dict) and reason is not None and method != "GET":
        body = {**body, "reason": reason}
    response = client.open(path, method=method, json=body, headers={**AUTH, **(headers or {})})
    assert response.headers["X-API-Version"] == "2"
    assert response.is_json, response.data
    if status is not None:
        assert response.status_code == status, response.json
    return response.json
