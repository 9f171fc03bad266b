"""The forward task's HTTP session: proxy variables read once, when it is made, and still honoured."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mutt_app.runtime import moog_session


class _Recorder(BaseHTTPRequestHandler):
    """Answers 202 to any POST and remembers its request line (a proxy sees the absolute URL)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.request_lines.append(self.requestline)  # type: ignore[attr-defined]
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.request_lines = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_proxy_in_the_environment_carries_the_webhook_posts(
    recorder: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = f"http://127.0.0.1:{recorder.server_port}"
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = moog_session("http://moog.invalid/webhook")

    # Read once: a change after the session was made does not reach it.
    monkeypatch.delenv("HTTP_PROXY")
    assert session.post("http://moog.invalid/webhook", json={}, timeout=5).status_code == 202
    assert session.proxies == {"http": proxy}
    assert recorder.request_lines == ["POST http://moog.invalid/webhook HTTP/1.1"]


def test_no_proxy_sends_the_webhook_posts_direct(
    recorder: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    url = f"http://127.0.0.1:{recorder.server_port}/webhook"
    session = moog_session(url)

    assert session.post(url, json={}, timeout=5).status_code == 202
    assert recorder.request_lines == ["POST /webhook HTTP/1.1"]


def test_the_ca_bundle_variable_is_the_sessions_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/mutt/moog-ca.pem")
    assert moog_session("https://moog.invalid/webhook").verify == "/etc/mutt/moog-ca.pem"
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert moog_session("https://moog.invalid/webhook").verify is True
