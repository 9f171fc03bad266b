"""The web app behind the shipped nginx site (deploy/nginx/mutt-web.conf), as the deploy kit runs it.

A person logs in through nginx (the session cookie, the CSRF token and the redirect survive the
proxy), and with WEBUI_TRUSTED_PROXIES=1 the log-in throttle counts each person's own address: wrong
passwords from one address lock that address out, not everyone behind nginx.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from sqlalchemy.orm import Session

from mutt_app.commands import users as accounts
from tests.e2e.conftest import StackFactory
from tests.nginx_server import nginx_binary

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
LOGIN_FAILURES = 3

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed")


class _From(HTTPAdapter):
    """Connections from the loopback address ``source`` (127.0.0.x), as a separate client's."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def _browser(source: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", _From(source))
    return session


def _log_in(browser: requests.Session, url: str, password: str) -> requests.Response:
    page = browser.get(url, timeout=10)
    assert page.status_code == 200, page.status_code
    token = CSRF.search(page.text)
    assert token, "no CSRF token in the log-in page"
    form = {"username": "alice", "password": password, "csrf_token": token.group(1)}
    return browser.post(url, data=form, timeout=10)


def test_through_nginx_a_person_logs_in_and_the_throttle_counts_each_address(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(WEBUI_TRUSTED_PROXIES="1", WEBUI_LOGIN_MAX_FAILURES=str(LOGIN_FAILURES))
    with Session(stack.engine) as session, session.begin():
        accounts.create_user(session, "alice", PASSWORD, "admin", changed_by="test")
    stack.start_web().start_proxy("web")
    login = f"http://127.0.0.1:{stack.proxy_ports['web']}/login"

    guesser = _browser("127.0.0.2")
    answers = [_log_in(guesser, login, "wrong").status_code for _ in range(LOGIN_FAILURES)]
    assert answers == [401] * LOGIN_FAILURES
    # That address is locked out of the account, even with the right password ...
    throttled = _log_in(guesser, login, PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) >= 1

    # ... while alice, at her own address behind the same nginx, logs in.
    alice = _browser("127.0.0.3")
    response = _log_in(alice, login, PASSWORD)
    assert response.status_code == 200 and "/login" not in response.url, response.text[:500]
    log = stack.processes["web"].log_path.read_text(errors="replace")
    assert "failed log-in for 'alice' from 127.0.0.2" in log, log[-2000:]
    assert "from 127.0.0.1" not in log  # nginx's own address never stands for a person
