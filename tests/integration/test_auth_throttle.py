"""Failed log-ins and bad API keys throttled per client IP, on the real app with real Redis and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mutt_app.commands import users as accounts
from mutt_app.config import Settings
from mutt_app.db.models import User
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.web import CSRF

PASSWORD = "correct horse battery staple"
KEY = "throttle-key-0123456789"
ATTACKER = {"REMOTE_ADDR": "198.51.100.7"}
OTHER = {"REMOTE_ADDR": "203.0.113.9"}


def _app(settings: Settings, **update: object) -> Flask:
    app = create_app(
        settings.model_copy(
            update={
                "webui_cookie_secure": False,
                "webui_api_key": SecretStr(KEY),
                "webui_auth_ip_max_failures": 3,
                "webui_auth_ip_window_seconds": 60,
                **update,
            }
        )
    )
    app.testing = True
    return app


@pytest.fixture
def throttled_app(settings: Settings, engine: Engine) -> Iterator[Flask]:
    with Session(engine) as session, session.begin():
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
    app = _app(settings)
    try:
        yield app
    finally:
        close_web_app(app)


def _login(client: FlaskClient, password: str, address: dict[str, str]) -> tuple[int, str]:
    page = client.get("/login", environ_base=address).get_data(as_text=True)
    token = CSRF.search(page).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/login",
        data={"username": "alice", "password": password, "csrf_token": token},
        environ_base=address,
    )
    return response.status_code, response.headers.get("Retry-After", "")


def _last_login(engine: Engine) -> object:
    with Session(engine) as session:
        return session.scalars(select(User.last_login_at).where(User.username == "alice")).one()


def test_an_address_with_too_many_failed_logins_waits_and_others_do_not(
    throttled_app: Flask, engine: Engine
) -> None:
    attacker = throttled_app.test_client()
    for _ in range(3):
        assert _login(attacker, "wrong", ATTACKER)[0] == 401

    status, retry_after = _login(attacker, PASSWORD, ATTACKER)  # even the right password
    assert status == 429 and 1 <= int(retry_after) <= 60
    assert _last_login(engine) is None  # the password was not even checked
    page = attacker.get("/", environ_base=ATTACKER)
    assert page.status_code == 302  # not logged in

    # Another address is not affected, and the account (limit 5) is not locked.
    assert _login(throttled_app.test_client(), PASSWORD, OTHER)[0] == 302


def test_successful_logins_do_not_count(throttled_app: Flask) -> None:
    for _ in range(5):
        client = throttled_app.test_client()
        assert _login(client, PASSWORD, ATTACKER)[0] == 302


def test_failures_leave_the_moving_window(settings: Settings, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
    app = _app(settings, webui_auth_ip_window_seconds=2)
    try:
        client = app.test_client()
        for _ in range(3):
            assert _login(client, "wrong", ATTACKER)[0] == 401
        assert _login(client, PASSWORD, ATTACKER)[0] == 429
        time.sleep(2.2)
        assert _login(client, PASSWORD, ATTACKER)[0] == 302
    finally:
        close_web_app(app)


def test_bad_api_keys_are_throttled_per_address_in_json(
    throttled_app: Flask, redis_client: redis.Redis
) -> None:
    from prometheus_client import REGISTRY

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name, {"kind": "api-key"}) or 0.0

    failures, throttled = (
        sample("mutt_webui_auth_failures_total"),
        sample("mutt_webui_auth_throttled_total"),
    )
    client = throttled_app.test_client()
    for _ in range(3):
        response = client.get(
            "/api/v2/rules", headers={"X-API-Key": "guess"}, environ_base=ATTACKER
        )
        assert response.status_code == 401
    response = client.get("/api/v2/rules", headers={"X-API-Key": KEY}, environ_base=ATTACKER)
    assert response.status_code == 429
    assert response.headers["X-API-Version"] == "2"
    assert set(response.json) == {"error", "details"}
    assert (
        1 <= response.json["details"]["retry_after_seconds"] == int(response.headers["Retry-After"])
    )
    assert sample("mutt_webui_auth_failures_total") - failures == 3
    assert sample("mutt_webui_auth_throttled_total") - throttled == 1
    ok = client.get("/api/v2/rules", headers={"X-API-Key": KEY}, environ_base=OTHER)
    assert ok.status_code == 200
    # Counted in the shared Redis, where every web process sees them.
    assert any(b"mutt-auth" in key for key in redis_client.keys("*"))
    # Log-in failures are counted apart from API key failures.
    assert _login(throttled_app.test_client(), "wrong", ATTACKER)[0] == 401


def test_without_redis_the_throttle_fails_open(settings: Settings, engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
    app = _app(settings, redis_url="redis://127.0.0.1:1/0")
    try:
        client = app.test_client()
        for _ in range(6):  # past both limits (3 per address, 5 per account and address)
            assert _login(client, "wrong", ATTACKER)[0] == 401
        assert _login(client, PASSWORD, ATTACKER)[0] == 302
        response = client.get("/api/v2/rules", headers={"X-API-Key": KEY}, environ_base=ATTACKER)
        assert response.status_code == 200
    finally:
        close_web_app(app)


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(
    settings: Settings,
) -> None:
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    for trusted, separate in ((1, True), (0, False)):
        app = _app(settings, webui_trusted_proxies=trusted)
        try:
            client = app.test_client()
            for i in range(3):
                headers = {"X-API-Key": "guess", "X-Forwarded-For": "192.0.2.1"}
                response = client.get("/api/v2/rules", headers=headers, environ_base=proxy)
                assert response.status_code == 401, i
            other = {"X-API-Key": KEY, "X-Forwarded-For": "192.0.2.99"}
            answer = client.get("/api/v2/rules", headers=other, environ_base=proxy)
            # Trusted: another client behind the proxy. Not trusted: the header is ignored, so a
            # client cannot dodge the throttle by making one up.
            assert answer.status_code == (200 if separate else 429)
        finally:
            redis.Redis.from_url(settings.redis_dsn()).flushall()
            close_web_app(app)


def test_an_outsider_cannot_lock_a_user_out_from_another_address(
    settings: Settings, engine: Engine
) -> None:
    # The per-address throttle is set high, so that only the per-account limit (5) is in play.
    app = _app(settings, webui_auth_ip_max_failures=50)
    with Session(engine) as session, session.begin():
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
    try:
        attacker = app.test_client()
        for _ in range(5):
            assert _login(attacker, "wrong", ATTACKER)[0] == 401
        # Locked for alice from this address, even with the right password, which is not checked.
        status, retry_after = _login(attacker, PASSWORD, ATTACKER)
        assert status == 429 and 1 <= int(retry_after) <= 300
        for _ in range(10):
            assert _login(attacker, "wrong", ATTACKER)[0] == 429
        # Alice, from her own address, gets in.
        assert _login(app.test_client(), PASSWORD, OTHER)[0] == 302
    finally:
        close_web_app(app)
