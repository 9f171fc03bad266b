"""``mutt moog-sink``: a local stand-in for the Moogsoft webhook.

``mutt run`` points MUTT at it when MOOG_WEBHOOK_URL is unset, and the test suite uses it as a real
HTTP sink. It records every alert it accepts (``GET /events``) and can be told to misbehave for a
while (``POST /_control``): answer 500, 429 with Retry-After, 400, hang before answering, or refuse
the requests that carry a marked event.

Endpoints:

- ``POST /webhook`` (aliases ``POST /`` and ``POST /v1/integrations/events``): one JSON alert, a
  REST LAM batch ``{"events": [...]}``, or a Moogsoft Cloud Events API array ``[...]``; each event is
  recorded on its own (a batch of 50 is 50 events, one request). 200 ``{"success": true}`` unless a
  fault mode says otherwise (then the request is counted in ``/_stats`` as rejected, and none of its
  events is recorded: like Moog's APIs, the sink answers a request whole, never per event).
- ``GET /events?since=<index>``: ``{"count": n, "events": [...]}``; ``count`` is the number accepted so
  far, the ``since`` of the next incremental read. Each event is the alert plus ``_index`` and
  ``_received_at`` (epoch seconds).
- ``GET /_stats``: received, rejected by status, requests, requests_per_second_max.
- ``GET /_arrivals``: ``{"arrivals": [...]}``, the monotonic arrival time of every request.
- ``POST /_control``: ``{"status": 500, "retry_after": 2, "delay": 0, "for_seconds": 20}`` sets the
  mode; ``{"reject_marker": "text"}`` refuses (400) every request carrying an event whose
  ``description`` contains the text, and takes the others (each call replaces the previous one; ``for_seconds`` makes it expire); ``{"reset": true}``
  goes back to normal and clears events and counters. ``GET /_control`` shows the mode.
- ``GET /health``: 200.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from mutt_app.cli.context import Context

if TYPE_CHECKING:
    from flask import Flask
    from werkzeug.serving import BaseWSGIServer

__all__ = [
    "Mode",
    "SinkState",
    "create_sink_app",
    "make_sink_server",
    "max_in_window",
    "moog_sink",
    "parse_mode",
    "serve_sink",
]

MAX_EVENTS = 100_000
MAX_ARRIVALS = 1_000_000
MAX_DELAY = 3600.0
_CONTROL_KEYS = {"status", "retry_after", "delay", "for_seconds", "reset", "reject_marker"}


@dataclass(frozen=True)
class Mode:
    """How the webhook answers: the status, an optional Retry-After, a delay, an expiry."""

    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    expires_at: float | None = None
    """Monotonic time after which the sink answers normally again (None: until changed)."""
    reject_marker: str | None = None
    """A request with an event whose description contains this is refused whole (400)."""

    @property
    def accepts(self) -> bool:
        return 200 <= self.status < 300

    def describe(self, now: float) -> dict[str, Any]:
        """The mode as JSON, with the seconds it has left."""
        left = None if self.expires_at is None else round(max(self.expires_at - now, 0.0), 3)
        return {
            "status": self.status,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "remaining_seconds": left,
            "reject_marker": self.reject_marker,
        }


NORMAL = Mode()


def parse_mode(body: Any, now: float) -> Mode:
    """The mode a ``/_control`` body asks for; ValueError naming what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(body) - _CONTROL_KEYS)
    if unknown:
        raise ValueError(f"unknown keys {unknown}; use {sorted(_CONTROL_KEYS)}")
    status = _number(body, "status", 200, 100, 599)
    if int(status) != status:
        raise ValueError("status must be an integer")
    retry_after = body.get("retry_after")
    if retry_after is not None:
        retry_after = _number(body, "retry_after", 0, 0, 86_400)
    delay = _number(body, "delay", 0, 0, MAX_DELAY)
    for_seconds = body.get("for_seconds")
    if for_seconds is not None:
        for_seconds = _number(body, "for_seconds", 0, 0.001, 86_400)
    expires_at = None if for_seconds is None else now + for_seconds
    marker = body.get("reject_marker")
    if marker is not None and (not isinstance(marker, str) or not marker):
        raise ValueError("reject_marker must be a non-empty string")
    return Mode(int(status), retry_after, delay, expires_at, marker)


def _number(body: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{key} must be a number from {low:g} to {high:g}, not {value!r}")
    return float(value)


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most of ``times`` that fall in any half-open interval ``window`` long."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class SinkState:
    """What the sink has seen, and its mode; every method is safe to call from any thread."""

    def __init__(
        self,
        max_events: int = MAX_EVENTS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._clock, self._wall_clock = clock, wall_clock
        self._events: deque[dict[str, Any]] = deque(maxlen=max_events)
        self._arrivals: deque[float] = deque(maxlen=MAX_ARRIVALS)
        self._received = 0
        self._rejected: Counter[int] = Counter()
        self._mode = NORMAL

    def arrive(self) -> Mode:
        """Note a webhook request's arrival; the mode it is to be answered in."""
        with self._lock:
            now = self._clock()
            self._arrivals.append(now)
            return self._current_mode(now)

    def accept(self, alert: dict[str, Any]) -> dict[str, Any]:
        """Record an alert; the stored event (the alert with ``_index`` and ``_received_at``)."""
        with self._lock:
            event = {**alert, "_index": self._received, "_received_at": self._wall_clock()}
            self._events.append(event)
            self._received += 1
            return event

    def reject(self, status: int) -> None:
        """Count a request answered with a non-2xx ``status``."""
        with self._lock:
            self._rejected[status] += 1

    def set_mode(self, mode: Mode) -> None:
        with self._lock:
            self._mode = mode

    def mode(self) -> dict[str, Any]:
        """The current mode as JSON."""
        with self._lock:
            now = self._clock()
            return self._current_mode(now).describe(now)

    def reset(self) -> None:
        """Back to normal, with no events, arrivals or counts."""
        with self._lock:
            self._mode = NORMAL
            self._events.clear()
            self._arrivals.clear()
            self._received = 0
            self._rejected.clear()

    def events(self, since: int = 0) -> tuple[int, list[dict[str, Any]]]:
        """The number accepted so far, and the events with ``_index >= since`` still kept."""
        with self._lock:
            dropped = self._received - len(self._events)
            return self._received, list(self._events)[max(since - dropped, 0) :]

    def arrivals(self) -> list[float]:
        with self._lock:
            return list(self._arrivals)

    def stats(self) -> dict[str, Any]:
        """Counts: accepted, rejected by status, requests, and the busiest second's requests."""
        with self._lock:
            arrivals = list(self._arrivals)
            rejected = {str(status): n for status, n in sorted(self._rejected.items())}
            received = self._received
        return {
            "received": received,
            "rejected": rejected,
            "requests": len(arrivals),
            "requests_per_second_max": max_in_window(arrivals, 1.0),
        }

    def _current_mode(self, now: float) -> Mode:
        if self._mode.expires_at is not None and now >= self._mode.expires_at:
            self._mode = NORMAL
        return self._mode


def alert_line(alert: dict[str, Any]) -> str:
    """One line per accepted alert, for the terminal (either format)."""
    tags = alert.get("tags") if isinstance(alert.get("tags"), dict) else {}
    external_id = alert.get("external_id", tags.get("external_id", "-"))
    description = str(alert.get("description", ""))[:80]
    return (
        f"alert {external_id} {alert.get('source', '-')} "
        f"sev={alert.get('severity', '-')} {description}"
    )


def request_events(body: Any) -> list[dict[str, Any]] | None:
    """The events of a request body (one event, a REST LAM batch, a Cloud array), or None."""
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        events = body["events"]
    elif isinstance(body, list):
        events = body
    elif isinstance(body, dict):
        events = [body]
    else:
        return None
    if not events or not all(isinstance(e, dict) for e in events):
        return None
    return events


def create_sink_app(
    state: SinkState | None = None, *, echo: Callable[[str], None] | None = None
) -> Flask:
    """The sink as a Flask app; ``echo`` gets one line per accepted alert (None: silent)."""
    from flask import Flask, Response, jsonify, request

    state = state or SinkState()
    app = Flask("mutt_app.devtools.moog_sink")
    app.extensions["mutt_sink"] = state

    def answer(status: int, body: dict[str, Any], **headers: str) -> Response:
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers)
        return response

    @app.post("/webhook")
    @app.post("/")
    @app.post("/v1/integrations/events")
    def webhook() -> Response:
        mode = state.arrive()
        if mode.delay:
            time.sleep(mode.delay)  # a threaded server: only this request waits
        if not mode.accepts:
            state.reject(mode.status)
            headers = {}
            if mode.retry_after is not None:
                headers["Retry-After"] = f"{mode.retry_after:g}"
            body = {"success": False, "error": f"injected status {mode.status}"}
            return answer(mode.status, body, **headers)
        alerts = request_events(request.get_json(force=True, silent=True))
        if alerts is None:
            state.reject(400)
            error = 'body must be an event, {"events": [...]} or an array of events'
            return answer(400, {"success": False, "error": error})
        marker = mode.reject_marker
        refused = [a for a in alerts if marker and marker in str(a.get("description", ""))]
        if refused:
            state.reject(400)
            error = f"{len(refused)} of {len(alerts)} events refused: description has {marker!r}"
            return answer(400, {"success": False, "error": error})
        for alert in alerts:
            state.accept(alert)
            if echo is not None:
                echo(alert_line(alert))
        return answer(mode.status, {"success": True})

    @app.get("/events")
    def events() -> Response:
        since = request.args.get("since", default=0, type=int)
        count, found = state.events(max(since, 0))
        return answer(200, {"count": count, "events": found})

    @app.get("/_stats")
    def stats() -> Response:
        return answer(200, state.stats())

    @app.get("/_arrivals")
    def arrivals() -> Response:
        return answer(200, {"arrivals": state.arrivals()})

    @app.get("/_control")
    def show_mode() -> Response:
        return answer(200, state.mode())

    @app.post("/_control")
    def control() -> Response:
        body = request.get_json(force=True, silent=True)
        if isinstance(body, dict) and body.get("reset"):
            state.reset()
            return answer(200, state.mode())
        try:
            mode = parse_mode(body, time.monotonic())
        except ValueError as exc:
            return answer(400, {"error": str(exc)})
        state.set_mode(mode)
        return answer(200, state.mode())

    @app.get("/health")
    def health() -> Response:
        return answer(200, {"status": "healthy", "service": "mutt-moog-sink"})

    return app


def make_sink_server(host: str, port: int, app: Flask) -> BaseWSGIServer:
    """A threaded WSGI server for ``app`` (port 0: any free port; see ``server_port``)."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        # The app prints one line per alert; an access-log line per request would bury them.
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    return make_server(host, port, app, threaded=True, request_handler=QuietHandler)


def serve_sink(host: str, port: int, *, quiet: bool = False) -> None:
    """Serve the sink on ``host:port`` until interrupted."""
    echo = None if quiet else click.echo
    server = make_sink_server(host, port, create_sink_app(echo=echo))
    click.echo(
        f"moog sink listening on http://{host}:{server.server_port}/webhook "
        f"(received alerts: GET /events)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


@click.command("moog-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port (0: any free one) [default: MOOG_SINK_PORT, 8099].",
)
@click.option("--quiet", is_flag=True, help="Do not print a line per received alert.")
@click.pass_obj
def moog_sink(obj: Context, host: str, port: int | None, quiet: bool) -> None:
    """Run a local Moog webhook that records and prints alerts (for demos and tests)."""
    # SIGTERM (from `mutt run` or a test) should close the socket and exit 0, like Ctrl-C.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    serve_sink(host, obj.settings.moog_sink_port if port is None else port, quiet=quiet)
