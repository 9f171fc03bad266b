"""Web UI sessions end when they should: at log-out, and when a password or role changes or the
account is disabled.

Flask's session is a signed cookie, so a copy of it stays valid until it expires unless the server
refuses it: every session carries the user's session generation, which log-out, ``mutt users
set-password``, ``set-role`` and ``disable`` bump, ending every session of that user at once.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from mutt_app.cli import main
from mutt_app.config import Settings
from tests.web import form_token, login

COOKIE = "mutt_session"


def _logged_in_as(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username) == 302
    assert client.get("/").status_code == 200
    return client


def _copy(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another client holding the same session cookie, as a thief with a copy of it would."""
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie.value)
    return thief


def _refused(client: FlaskClient) -> bool:
    response = client.get("/admin/rules/")
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def _mutt(settings: Settings, *args: str, input: str | None = None) -> None:
    env = {"DATABASE_URL": settings.database_dsn()}
    if "--reason" not in args:
        args = (*args, "--reason", "test")
    result = CliRunner().invoke(main, list(args), env=env, input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_a_copy_of_the_cookie_is_refused_after_log_out(admin_app: Flask) -> None:
    client = _logged_in_as(admin_app, "alice")
    thief = _copy(admin_app, client)
    assert not _refused(thief)  # the copy works while the session lives
    other = _logged_in_as(admin_app, "alice")  # alice on another browser
    bob = _logged_in_as(admin_app, "victor")
    token = form_token(client, "/")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert _refused(client)
    assert _refused(thief)
    assert _refused(other)  # log-out ends every session of that user
    assert not _refused(bob)  # and no one else's
    # Logging in again gives a fresh session that works.
    assert not _refused(_logged_in_as(admin_app, "alice"))


@pytest.mark.parametrize(
    "command",
    [
        ("users", "set-password", "alice", "--password-stdin"),
        ("users", "set-role", "alice", "viewer"),
        ("users", "disable", "alice"),
    ],
)
def test_a_password_or_role_change_or_disabling_ends_the_users_sessions(
    admin_app: Flask, settings: Settings, command: tuple[str, ...]
) -> None:
    alice = _logged_in_as(admin_app, "alice")
    victor = _logged_in_as(admin_app, "victor")
    _mutt(settings, *command, input="a brand new passphrase\n")
    assert _refused(alice)
    assert not _refused(victor)


def test_setting_the_same_role_again_keeps_the_sessions(
    admin_app: Flask, settings: Settings
) -> None:
    alice = _logged_in_as(admin_app, "alice")
    _mutt(settings, "users", "set-role", "alice", "admin")
    _mutt(settings, "users", "enable", "alice")
    assert not _refused(alice)


def test_a_disabled_account_cannot_log_in_until_enabled(
    admin_app: Flask, settings: Settings
) -> None:
    _mutt(settings, "users", "disable", "alice", "--reason", "left the team")
    assert login(admin_app.test_client(), "alice") == 401
    _mutt(settings, "users", "enable", "alice")
    assert not _refused(_logged_in_as(admin_app, "alice"))
