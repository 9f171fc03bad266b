"""A running MUTT for end-to-end tests: real ingest, Celery worker and Moog sink processes.

Each part is a separate OS process started the way production starts it (gunicorn, ``celery worker``,
``mutt moog-sink``), pointed at the test's own PostgreSQL database and Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import requests
from sqlalchemy import Engine, func, select

from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine
from mutt_app.db.models import EventAuditLog
from mutt_app.devtools.parts import INGEST_WORKER
from mutt_app.forwarding.lanes import QUEUES as FORWARD_LANES
from mutt_app.worker.shape import CLASSIFY_QUEUES
from tests.nginx_server import main_config, nginx_argv, nginx_binary, site_text
from tests.services import free_port, wait_for

WEB_API_KEY = "e2e-web-api-key"
INGEST_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "gunicorn" / "ingest.conf.py"
WEB_CONFIG = INGEST_CONFIG.with_name("web.conf.py")
# What a forward worker consumes, as `mutt run` and the deploy kit start it: both lanes.
FORWARD_QUEUES = ",".join(FORWARD_LANES)


class Process:
    """One child process with its output in a log file (read back when a test fails)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], logdir: Path) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.log_path = logdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed when the process is reaped
        self.popen = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash (or the OOM killer) would."""
        if self.popen is not None and self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self) -> None:
        """Ask the whole process group to stop (SIGTERM), without waiting."""
        if self.popen is not None and self.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM, then SIGKILL whatever has not exited within ``timeout`` seconds."""
        if self.popen is None or not self.alive:
            return
        self.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int | None = 40) -> str:
        """The last ``lines`` lines of the process's log (None: all of it)."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text if lines is None else text[-lines:])


@dataclass(frozen=True)
class _Starting:
    """A part started and not yet ready: what it is, and how to tell that it is."""

    name: str
    process: Process
    ready: Callable[[], bool]
    what: str


class Stack:
    """Ingest and web (gunicorn), worker(s) (celery) and a Moog sink, sharing one environment."""

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.logdir = logdir
        self.sink_port = free_port()
        self.ingest_port = free_port()
        self.metrics_port = free_port()
        self.web_port = free_port()
        # Each kind's probes (mutt_app.worker.health); a second worker of a kind finds its port taken.
        self.health_ports = {kind: free_port() for kind in ("classify", "forward", "beat")}
        samples = logdir / "prometheus"
        samples.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "MOOG_WEBHOOK_URL": f"http://127.0.0.1:{self.sink_port}/webhook",
            "PYTHONUNBUFFERED": "1",
            # As `mutt run` does: the workers' samples merged, served by the first worker
            # (the ingest app gets a directory of its own).
            "PROMETHEUS_MULTIPROC_DIR": str(samples),
            "METRICS_PORT_WORKER": str(self.metrics_port),
            "HEALTH_PORT_ALERTER": str(self.health_ports["classify"]),
            "HEALTH_PORT_MOOG": str(self.health_ports["forward"]),
            "HEALTH_PORT_REMEDIATION": str(self.health_ports["beat"]),
            # Most tests post without a key, as `mutt run` lets them; a test of the key sets one.
            "INGEST_ALLOW_OPEN": "true",
            **env,
        }
        self.processes: dict[str, Process] = {}
        self.proxy_ports: dict[str, int] = {}
        self.proxy_logs: dict[str, Path] = {}
        self._engine: Engine | None = None
        self._starting: list[_Starting] | None = None

    @contextlib.contextmanager
    def together(self) -> Iterator[Stack]:
        """Start the parts asked for in the block at once and wait, when it ends, until every one
        is ready (as each ``start_*`` alone waits for its own): they do not need each other to
        start, and one after the other each test waited out every start in turn. Two workers of
        one kind may race for their kind's probe port: start them in turn where a test probes. A
        block inside another joins it."""
        if self._starting is not None:
            yield self
            return
        self._starting = []
        try:
            yield self
            starting = self._starting or []
        finally:
            self._starting = None
        self._wait_started(starting)

    # --- parts ------------------------------------------------------------------------------------

    def start_sink(self) -> Stack:
        argv = [sys.executable, "-m", "mutt_app.devtools", "moog-sink"]
        argv += ["--port", str(self.sink_port)]
        self._start("sink", argv, f"http://127.0.0.1:{self.sink_port}/health")
        return self

    def start_ingest(self) -> Stack:
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.ingest_port}",
            "--workers", "1", *INGEST_WORKER,  # the worker class `mutt run` and the deploy kit use
            "mutt_app.web:create_ingest_app()",
        ]  # fmt: skip
        samples = self.logdir / "prometheus-ingest"
        samples.mkdir(exist_ok=True)
        env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(samples)}
        self._start("ingest", argv, f"http://127.0.0.1:{self.ingest_port}/health", env)
        return self

    def start_shipped_ingest(
        self,
        workers: int = 1,
        connections: int | None = None,
        *,
        ready: Callable[[], bool] | None = None,
        **env: str,
    ) -> Stack:
        """Ingest under gunicorn with the shipped config (deploy/gunicorn/ingest.conf.py), bound to
        this stack's ingest port (GUNICORN_INGEST_BIND), ``workers`` x ``connections`` (None: the
        config's own default), and ``env``; started once ``ready()`` (default: its plain-HTTP
        /health answers)."""
        argv = [sys.executable, "-m", "gunicorn", "--config", str(INGEST_CONFIG),
                "mutt_app.web:create_ingest_app()"]  # fmt: skip
        samples = self.logdir / "prometheus-ingest"
        samples.mkdir(exist_ok=True)
        run_env = {
            **self.env,
            "GUNICORN_INGEST_BIND": f"127.0.0.1:{self.ingest_port}",
            "GUNICORN_INGEST_WORKERS": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": str(samples),
            **env,
        }
        if connections is not None:
            run_env["GUNICORN_INGEST_CONNECTIONS"] = str(connections)
        run_env.pop("XDG_RUNTIME_DIR", None)  # gunicorn would put its control socket there first
        health = f"http://127.0.0.1:{self.ingest_port}/health"
        self._start("ingest", argv, health, run_env, ready)
        return self

    def start_proxy(
        self,
        part: str = "ingest",
        *,
        edit: Callable[[str], str] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> Stack:
        """nginx with the shipped site of ``part`` (deploy/nginx/mutt-<part>.conf, "ingest" or
        "web") in front of it, as the deploy kit runs it: on ``proxy_ports[part]``, its access log
        at ``proxy_logs[part]``. ``edit`` changes the site's text as an operator would (its TLS
        lines), ``ready`` replaces the plain-HTTP /health check."""
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (.ci/bootstrap installs it)")
        port = self.proxy_ports[part] = free_port()
        root = self.logdir / f"nginx-{part}"
        upstream = f"127.0.0.1:{self.ingest_port if part == 'ingest' else self.web_port}"
        site = site_text(f"mutt-{part}", root / "logs", listen_port=port, upstream=upstream)
        self.proxy_logs[part] = root / "logs" / "access.log"
        conf = main_config(root, edit(site) if edit else site)
        health = f"http://127.0.0.1:{port}/health"
        self._start(f"nginx-{part}", nginx_argv(binary, conf), health, ready=ready)
        return self

    @property
    def proxy_url(self) -> str:
        """The ingest endpoint through nginx (start_proxy)."""
        return f"http://127.0.0.1:{self.proxy_ports['ingest']}/api/v2/ingest"

    def start_web(self) -> Stack:
        """The web app (admin UI and API) under gunicorn, as mutt-web.service runs it."""
        argv = [
            sys.executable, "-m", "gunicorn",
            "--bind", f"127.0.0.1:{self.web_port}",
            "--workers", "1", "--threads", "4",
            "mutt_app.web:create_app()",
        ]  # fmt: skip
        samples = self.logdir / "prometheus-web"
        samples.mkdir(exist_ok=True)
        env = {
            **self.env,
            "PROMETHEUS_MULTIPROC_DIR": str(samples),
            "WEBUI_COOKIE_SECURE": "false",
            "WEBUI_API_KEY": self.env.get("WEBUI_API_KEY", WEB_API_KEY),
        }
        self._start("web", argv, f"http://127.0.0.1:{self.web_port}/health", env)
        return self

    def start_shipped_web(self, workers: int = 2, threads: int = 4, **env: str) -> Stack:
        """The web app under gunicorn with the shipped config (deploy/gunicorn/web.conf.py), bound
        to this stack's web port (GUNICORN_WEB_BIND), ``workers`` x ``threads``, and ``env``."""
        argv = [sys.executable, "-m", "gunicorn", "--config", str(WEB_CONFIG),
                "mutt_app.web:create_app()"]  # fmt: skip
        samples = self.logdir / "prometheus-web"
        samples.mkdir(exist_ok=True)
        run_env = {
            **self.env,
            "GUNICORN_WEB_BIND": f"127.0.0.1:{self.web_port}",
            "GUNICORN_WEB_WORKERS": str(workers),
            "GUNICORN_WEB_THREADS": str(threads),
            "PROMETHEUS_MULTIPROC_DIR": str(samples),
            "WEBUI_COOKIE_SECURE": "false",
            "WEBUI_API_KEY": self.env.get("WEBUI_API_KEY", WEB_API_KEY),
            **env,
        }
        run_env.pop("XDG_RUNTIME_DIR", None)  # gunicorn would put its control socket there first
        self._start("web", argv, f"http://127.0.0.1:{self.web_port}/health", run_env)
        return self

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start_worker(
        self,
        name: str = "worker",
        queues: str = f"mutt.classify,{FORWARD_QUEUES},mutt.maintenance",
        concurrency: int = 2,
        pool: str = "prefork",
    ) -> Process:
        argv = [
            sys.executable, "-m", "celery", "-A", "mutt_app", "worker",
            "-Q", queues, "-c", str(concurrency), "-P", pool, "-n", f"{name}-{os.getpid()}@%h",
            "--without-gossip", "--without-mingle", "-l", "INFO",
        ]  # fmt: skip
        process = Process(name, argv, self.env, self.logdir).start()
        self.processes[name] = process
        self._wait_started(
            [
                _Starting(
                    name,
                    process,
                    lambda: "ready" in process.log_path.read_text(errors="replace"),
                    f"celery worker {name}",
                )
            ]
        )
        return process

    def start_classify_worker(self, name: str = "classify") -> Process:
        """One classify process as MUTT ships it (mutt_app.worker.shape): solo pool, classify and
        maintenance queues."""
        return self.start_worker(name, queues=CLASSIFY_QUEUES, concurrency=1, pool="solo")

    def start_beat(self, name: str = "beat") -> Process:
        argv = [
            sys.executable, "-m", "celery", "-A", "mutt_app", "beat", "-l", "INFO",
            "-s", str(self.logdir / f"{name}-schedule"),
        ]  # fmt: skip
        process = Process(name, argv, self.env, self.logdir).start()
        self.processes[name] = process
        return process

    def _start(
        self,
        name: str,
        argv: list[str],
        health_url: str,
        env: dict[str, str] | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        process = Process(name, argv, env or self.env, self.logdir).start()
        self.processes[name] = process
        is_ready = ready or (lambda: answers(health_url))
        self._wait_started([_Starting(name, process, is_ready, f"{name} at {health_url}")])

    def _wait_started(self, parts: list[_Starting], timeout: float = 60) -> None:
        """Wait until each of ``parts`` is ready (inside :meth:`together`: leave that to the end of
        the block); a part that exits, or is not ready within ``timeout``, fails with its log."""
        if self._starting is not None:
            self._starting.extend(parts)
            return
        left = list(parts)
        deadline = time.monotonic() + timeout
        while left:
            for part in list(left):
                if not part.process.alive:
                    raise RuntimeError(f"{part.what} did not start (it exited):\n"
                                       f"{part.process.tail()}")  # fmt: skip
                with contextlib.suppress(Exception):
                    if part.ready():
                        left.remove(part)
            if left and time.monotonic() > deadline:
                tails = "\n".join(f"--- {p.name} ---\n{p.process.tail()}" for p in left)
                raise RuntimeError(f"did not start within {timeout} s:\n{tails}")
            if left:
                time.sleep(0.1)

    def stop(self, *, hard: bool = False) -> None:
        """Stop every part at once (SIGTERM, then SIGKILL after 15 s); ``hard``: SIGKILL now."""
        # Every part shuts down at once: one after the other, each celery worker's warm shutdown
        # added seconds to every test's teardown.
        processes = list(self.processes.values())
        for process in processes:
            if hard:
                process.kill()
            else:
                process.terminate()
        for process in processes:
            process.stop()
        if self._engine is not None:
            self._engine.dispose()

    def logs(self, lines: int | None = 40) -> str:
        """Each process's last ``lines`` log lines (None: whole logs), under its name."""
        return "\n".join(f"--- {n} ---\n{p.tail(lines)}" for n, p in self.processes.items())

    # --- talking to it ----------------------------------------------------------------------------

    @property
    def ingest_url(self) -> str:
        return f"http://127.0.0.1:{self.ingest_port}/api/v2/ingest"

    def post(self, body: bytes | str, **headers: str) -> requests.Response:
        data = body.encode() if isinstance(body, str) else body
        return requests.post(self.ingest_url, data=data, headers=headers, timeout=30)

    def post_events(self, events: list[dict]) -> None:
        """Post ``events`` as one JSON array, which ingest must accept."""
        response = self.post(orjson.dumps(events), **{"Content-Type": "application/json"})
        assert response.status_code == 200, response.text

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            # As MUTT builds it: a multi-host DATABASE_URL works, and the pool outlives a
            # database restart or failover.
            self._engine = make_engine(load_settings({"DATABASE_URL": self.env["DATABASE_URL"]}))
        return self._engine

    def audited(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(EventAuditLog)).scalar_one()

    def audit_rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(EventAuditLog)).all())

    def wait_audited(self, count: int, timeout: float = 60) -> None:
        try:
            wait_for(lambda: self.audited() >= count, timeout, f"{count} audit rows", interval=0.2)
        except TimeoutError as exc:
            raise AssertionError(
                f"only {self.audited()} of {count} audited\n{self.logs()}"
            ) from exc

    def sink_stats(self) -> dict[str, Any]:
        """The sink's counters: accepted, and rejected by status."""
        return requests.get(f"http://127.0.0.1:{self.sink_port}/_stats", timeout=5).json()

    def sink_events(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.sink_port}/events"
        return requests.get(url, timeout=5).json()["events"]

    def wait_sink(self, count: int, timeout: float = 60) -> list[dict[str, Any]]:
        try:
            wait_for(
                lambda: len(self.sink_events()) >= count, timeout, f"{count} alerts at the sink"
            )
        except TimeoutError as exc:
            got = len(self.sink_events())
            raise AssertionError(f"sink has {got} of {count} alerts\n{self.logs()}") from exc
        return self.sink_events()

    def worker_metrics(self) -> dict[str, float]:
        """The workers' /metrics page as {"name{labels}": value}."""
        page = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        samples = {}
        for line in page.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def probe(self, kind: str, path: str = "/ready") -> requests.Response:
        """Ask the probes of ``kind`` ("classify", "forward" or "beat") for ``path``."""
        return requests.get(f"http://127.0.0.1:{self.health_ports[kind]}{path}", timeout=5)

    def settle(self, seconds: float = 1.0) -> None:
        """Give in-flight work a moment, for checks that nothing *more* arrives."""
        time.sleep(seconds)


StackFactory = Callable[..., Stack]
"""The ``make_stack`` fixture: builds a :class:`Stack` with extra environment (tests/conftest.py)."""


def answers(url: str) -> bool:
    """Whether ``url`` answers a GET with a success status within a second."""
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False
