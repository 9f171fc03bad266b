"""A small real HTTP server speaking Prometheus' instant-query API, for the SLO tests.

``GET /api/v1/query?query=...`` evaluates the one query shape :mod:`mutt_app.watch.slo` sends,
``sum(increase(<metric>[<N>h]))`` with an optional ``{label="value",...}`` selector, over counter
series the test sets (``series`` maps a metric name to ``[(labels, increase), ...]``), and answers in
Prometheus' JSON: ``{"status": "success", "data": {"resultType": "vector", "result": [...]}}``; an
empty vector when no series matches, as Prometheus does. Any other query is a 400 ``bad_data``.
``fail_with`` makes every query answer that HTTP status (Prometheus' error JSON). ``queries``
records what was asked.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

QUERY = re.compile(
    r"^sum\(increase\((?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<sel>[^}]*)\})?\[(?P<hours>\d+)h\]\)\)$"
)
MATCHER = re.compile(r'\s*(?P<name>[a-zA-Z_]\w*)="(?P<value>[^"]*)"\s*')


class PrometheusServer:
    """A Prometheus stand-in on 127.0.0.1 and a free port: ``with PrometheusServer() as prom:``."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.fail_with: int | None = None
        self.queries: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.prometheus = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PrometheusServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def evaluate(self, query: str) -> tuple[int, dict[str, Any]]:
        self.queries.append(query)
        if self.fail_with is not None:
            return self.fail_with, {
                "status": "error",
                "errorType": "internal",
                "error": "test failure",
            }
        found = QUERY.match(query.strip())
        if not found:
            return 400, {"status": "error", "errorType": "bad_data", "error": f"parse: {query}"}
        wanted = dict(
            (m.group("name"), m.group("value")) for m in MATCHER.finditer(found.group("sel") or "")
        )
        matching = [
            value
            for labels, value in self.series.get(found.group("metric"), [])
            if all(labels.get(k) == v for k, v in wanted.items())
        ]
        result = (
            [{"metric": {}, "value": [time.time(), repr(float(sum(matching)))]}] if matching else []
        )
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/api/v1/query":
            status, body = 404, {"status": "error", "error": "not found"}
        else:
            query = parse_qs(parts.query).get("query", [""])[0]
            status, body = self.server.prometheus.evaluate(query)  # type: ignore[attr-defined]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
