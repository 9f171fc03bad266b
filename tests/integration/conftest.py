"""The web apps integration tests share, on this test's PostgreSQL and Redis, through Flask's test
client: the REST API with its key (``api_app``), and the admin UI with the ``users`` to log in as
and the API key too (``admin_app``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr

from mutt_app.config import Settings
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.web import KEY


@pytest.fixture
def api_app(settings: Settings) -> Iterator[Flask]:
    """The web app with one (admin) API key, ``tests.web.KEY``."""
    app = create_app(settings.model_copy(update={"webui_api_key": SecretStr(KEY)}))
    app.testing = True
    try:
        yield app
    finally:
        close_web_app(app)


@pytest.fixture
def api_client(api_app: Flask) -> FlaskClient:
    return api_app.test_client()


@pytest.fixture
def admin_app(settings: Settings, users: None) -> Iterator[Flask]:
    """The web app with the ``users`` and the API key ``tests.web.KEY``."""
    # The test client speaks plain HTTP, which never gets a Secure cookie back.
    app = create_app(
        settings.model_copy(update={"webui_cookie_secure": False, "webui_api_key": SecretStr(KEY)})
    )
    app.testing = True
    try:
        yield app
    finally:
        close_web_app(app)


@pytest.fixture
def admin_client(admin_app: Flask) -> FlaskClient:
    """A test client of ``admin_app``, not logged in."""
    return admin_app.test_client()
