"""Liveness and readiness probes of each worker kind and of beat, each on a port of its own.

``GET /health`` (liveness) answers 200 while the process works: a worker's consumer event loop has
ticked within LOOP_STALL_SECONDS, or the worker is reconnecting to its broker (a restart would not
bring the broker back; readiness says it is away). ``GET /ready`` (readiness) answers 200 when the
process can do its work now: a worker's consumer is connected to the broker, the database and Redis
answer, and a classify worker has its rules loaded; else 503, with the failing checks named. Both
answer JSON.

The checks run every CHECK_INTERVAL_SECONDS on a thread of their own, with a Runtime of short
timeouts (``runtime.PROBE``), and a probe reads their last result: a request costs nothing and never
waits on a hung server. A result older than STALE_AFTER_SECONDS (a check that hangs) reads as not
ready.

Which port: a worker consuming only the forward lanes is a *forward* worker (HEALTH_PORT_MOOG);
any other worker is a *classify* worker (HEALTH_PORT_ALERTER); beat uses HEALTH_PORT_REMEDIATION.
A port already taken (a second worker of the same kind on a host) is logged and left to the first:
the classify worker's solo processes of one host (``classify-1@host``, ``classify-2@host``, ...) are
probed through whichever holds the port, as a prefork parent was for its children; each is
supervised on its own (systemd, ``mutt run``), and on Kubernetes each pod runs one and is probed.
The rules a classify worker's probe reports are the probe's own copy, loaded like a pool process's
(:class:`mutt_app.rules.cache.RuleCache`): under prefork the pool processes' copies live elsewhere.

A solo-pool worker runs each task in its event loop's thread, so the loop does not tick while one
runs: a task running counts as alive (:data:`mutt_app.redelivery.TASK_IN_LOOP`), as a prefork
parent ticks on while its children work.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery import bootsteps
from celery.signals import beat_init
from sqlalchemy import text

from mutt_app.forwarding.lanes import QUEUES as FORWARD_LANES
from mutt_app.redelivery import TASK_IN_LOOP, TaskInLoop, runs_tasks_in_loop
from mutt_app.rules.cache import RuleCache
from mutt_app.runtime import PROBE, Runtime
from mutt_app.worker import reload

log = logging.getLogger(__name__)

__all__ = ["LIVE_PATH", "READY_PATH", "Health", "WorkerProbes", "health_port", "worker_kind"]

LIVE_PATH = "/health"  # the seeds' health check, the liveness probe
READY_PATH = "/ready"
CHECK_INTERVAL_SECONDS = 1.0
STALE_AFTER_SECONDS = 10.0
# A consumer event loop that has not ticked for this long while connected is wedged: restart it.
LOOP_STALL_SECONDS = 60.0
TICK_SECONDS = 1.0

CLASSIFY, FORWARD, BEAT = "classify", "forward", "beat"

Check = Callable[[], str]


def worker_kind(queues: Iterable[str]) -> str:
    """``forward`` for a worker consuming only forward lanes, else ``classify``."""
    names = set(queues)
    return FORWARD if names and names <= set(FORWARD_LANES) else CLASSIFY


def health_port(runtime: Runtime, kind: str) -> int:
    """The probes' port of ``kind`` (0: none)."""
    settings = runtime.settings
    return {
        CLASSIFY: settings.health_port_alerter,
        FORWARD: settings.health_port_moog,
        BEAT: settings.health_port_remediation,
    }[kind]


class Health:
    """What the probes of one process report: the consumer's state and the last round of checks."""

    def __init__(self, kind: str, probe: Runtime, *, consumer: bool) -> None:
        self.kind = kind
        self.probe = probe
        # Beat has no consumer: its broker is Redis, which the "redis" check asks.
        self.broker_connected: bool | None = False if consumer else None
        self.last_tick = time.monotonic()
        # A solo pool's task in the event loop's thread (None: tasks run elsewhere).
        self.tasks: TaskInLoop | None = None
        self._checks: dict[str, Check] = {"redis": self._redis, "database": self._database}
        if kind == CLASSIFY:
            self._checks["rules"] = self._rules
        self._result: tuple[float, dict[str, Any]] = (float("-inf"), {})
        self._stopped = threading.Event()

    # --- the checks ---------------------------------------------------------------------------

    def _redis(self) -> str:
        self.probe.redis.ping()
        return "ok"

    def _database(self) -> str:
        with self.probe.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"

    def _rules(self) -> str:
        snapshot = self.probe.component(RuleCache.of).current()
        return f"version {snapshot.version}, {len(snapshot.ruleset)} active rules"

    def check_once(self) -> dict[str, Any]:
        """Run every check now; each maps to its answer, or to ``{"error": ...}``."""
        results: dict[str, Any] = {}
        for name, check in self._checks.items():
            try:
                results[name] = check()
            except Exception as exc:  # any failure is an answer, not a crash of the probe
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        self._result = (time.monotonic(), results)
        return results

    def _check_forever(self) -> None:
        while not self._stopped.is_set():
            started = time.monotonic()
            self.check_once()
            self._stopped.wait(max(0.0, CHECK_INTERVAL_SECONDS - (time.monotonic() - started)))

    # --- what the probes answer ---------------------------------------------------------------

    def tick(self) -> None:
        """The consumer's event loop is running (called from its timer)."""
        self.last_tick = time.monotonic()

    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the process works (or waits for its broker), and why not."""
        stalled = time.monotonic() - self.last_tick
        in_task = self.tasks is not None and self.tasks.running
        alive = self.broker_connected is not True or stalled < LOOP_STALL_SECONDS or in_task
        body: dict[str, Any] = {"status": "alive" if alive else "stalled", "kind": self.kind}
        if not alive:
            body["event_loop_silent_seconds"] = round(stalled, 1)
        return alive, {**body, "pid": os.getpid()}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Whether the process can do its work now, and each check's answer."""
        checked_at, results = self._result
        age = time.monotonic() - checked_at
        checks = dict(results)
        if self.broker_connected is not None:
            checks["broker"] = "ok" if self.broker_connected else {"error": "not connected"}
        if age > STALE_AFTER_SECONDS:
            checks["checks"] = {"error": f"no check finished for {age:.0f} s"}
        ready = bool(results) and all(not isinstance(v, dict) for v in checks.values())
        return ready, {"status": "ready" if ready else "not ready", "kind": self.kind, **checks}

    # --- serving --------------------------------------------------------------------------------

    def serve(self, port: int) -> bool:
        """Start the checks and the probes' HTTP server on ``port``; False if the port is taken."""
        try:
            server = http.server.ThreadingHTTPServer(("0.0.0.0", port), _handler(self))
        except OSError as exc:  # another process of this kind on this host has it
            log.warning("%s health port %d not opened: %s", self.kind, port, exc)
            return False
        server.daemon_threads = True
        for target, name in ((self._check_forever, "checks"), (server.serve_forever, "server")):
            threading.Thread(target=target, name=f"mutt-health-{name}", daemon=True).start()
        log.info("%s probes on port %d (%s, %s)", self.kind, port, LIVE_PATH, READY_PATH)
        return True


def _handler(health: Health) -> type[http.server.BaseHTTPRequestHandler]:
    class ProbeHandler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server calls it by this name
            path = self.path.split("?", 1)[0]
            if path == LIVE_PATH:
                ok, body = health.liveness()
            elif path == READY_PATH:
                ok, body = health.readiness()
            else:
                self.send_error(404)
                return
            payload = json.dumps(body).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a probe every few seconds is not news

    return ProbeHandler


class WorkerProbes(bootsteps.StartStopStep):
    """Consumer bootstep: serves the worker's probes and takes over SIGHUP (module docstrings).

    Started each time the consumer has connected to the broker, stopped when it loses it.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.health: Health | None = None
        self.tref: Any = None

    def start(self, parent: Any) -> None:
        if self.health is None:
            runtime = getattr(parent.app.Task, "runtime", None)
            if runtime is None:
                return  # an app not built by a Runtime (mutt_app.runtime): nothing to probe
            self.health = self._first_start(parent, runtime)
        self.health.broker_connected = True
        self.health.tick()
        self.tref = parent.timer.call_repeatedly(TICK_SECONDS, self.health.tick, priority=10)

    def _first_start(self, parent: Any, runtime: Runtime) -> Health:
        probe = Runtime(runtime.settings, PROBE)
        kind = worker_kind(parent.app.amqp.queues.consume_from or ())
        health = Health(kind, probe, consumer=True)
        port = health_port(runtime, kind)
        if port:
            health.serve(port)
        if runs_tasks_in_loop(parent):
            health.tasks = TASK_IN_LOOP.watch()
            # Its own pool process (mutt_app.worker.reload): the tasks' runtime reloads before the
            # next task, so the SIGHUP reloads only the probe at once.
            reload.install(lambda: (probe,), what=f"{kind} worker")
        else:
            reload.install(lambda: (runtime, probe), what=f"{kind} worker")
        return health

    def stop(self, parent: Any) -> None:
        if self.health is not None:
            self.health.broker_connected = False
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    shutdown = stop


@beat_init.connect
def _serve_beat_probes(sender: Any, **_: object) -> None:
    runtime = getattr(sender.app.Task, "runtime", None)
    if runtime is None:
        return
    probe = Runtime(runtime.settings, PROBE)
    health = Health(BEAT, probe, consumer=False)
    port = health_port(runtime, BEAT)
    if port:
        health.serve(port)
    # Beat's schedule is settings, read at start; what it caches at runtime is dynamic configuration.
    reload.install(lambda: (runtime,), what="beat")
