"""A Moog stand-in for tests: a real HTTP server on a local port that records each request's
events and answers as the test says (any status, headers and body, or late: a read timeout)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (the request's events) -> (status, headers, body)
Answer = Callable[[list[dict[str, Any]]], tuple[int, dict[str, str], bytes]]


class StandIn:
    """An HTTP server that records each request's events and answers as ``answer`` says.

    ``answer`` may sleep (past the client's read timeout, say); an answer to a client that gave up
    goes nowhere, quietly. ``port`` 0 takes a free one; a given port lets a test open a server where
    connections were refused so far.
    """

    def __init__(self, answer: Answer, port: int = 0) -> None:
        self.answer = answer
        self.requests: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                events = body.get("events", []) if isinstance(body, dict) else body
                with stand_in.lock:
                    stand_in.requests.append(events)
                status, headers, text = stand_in.answer(events)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> StandIn:
        """Serve in a background thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/webhook"

    def events(self) -> list[dict[str, Any]]:
        """Every event of every request so far, in arrival order."""
        with self.lock:
            return [event for request in self.requests for event in request]
