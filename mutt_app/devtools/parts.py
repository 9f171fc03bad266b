"""The parts of ``mutt run``'s stack (a private Redis, the local Moog sink, ingest, web, worker,
forwarder, beat, Flower), planned from the settings by :func:`plan_parts`, a pure function.
"""

from __future__ import annotations

import importlib.metadata
import os
import ssl
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from mutt_app.config import Settings
from mutt_app.devtools.embedded_redis import (
    HA_MASTER_NAME,
    HA_PARTS,
    HA_REPLICAS,
    ha_parts,
    redis_part,
)
from mutt_app.devtools.supervisor import Part
from mutt_app.forwarding import lanes
from mutt_app.worker.shape import classify_worker_argv

PART_NAMES = ("redis", "moog-sink", "ingest", "web", "worker", "forwarder", "beat", "flower")
# Parts that read or write the database: only these make `mutt run` migrate or check it first.
DB_PARTS = frozenset({"ingest", "web", "worker", "forwarder", "beat"})


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

    ``ha_ports`` (``mutt run --ha``: one port per HA_PARTS, the replicas' then the Sentinels') makes
    the ``redis`` part a primary with two replicas and three Sentinels (:func:`write_sentinel_configs` writes their
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
        shared["REDIS_SENTINEL_HOSTS"] = ",".join(
            f"127.0.0.1:{p}" for p in ha_ports[len(HA_REPLICAS) :]
        )
        shared["REDIS_SENTINEL_MASTER"] = HA_MASTER_NAME
    elif "redis" in selected:
        shared["REDIS_URL"] = redis_url
    redis_needs = ("redis", *HA_PARTS) if ha else ("redis",)
    if "moog-sink" in selected:
        shared["MOOG_WEBHOOK_URL"] = sink_url

    data_dir = settings.mutt_data_dir.resolve()
    celery = [python, "-m", "celery", "-A", "mutt_app"]
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
    builders: dict[str, Callable[[], Part | list[Part]]] = {
        "redis": lambda: redis_part(data_dir, redis_url, redis_binary, shared),
        "moog-sink": lambda: _sink_part(sink_url, python, shared),
        "ingest": lambda: _gunicorn_part(
            "ingest",
            "create_ingest_app",
            ingest_port,
            "/api/v2/ingest",
            python,
            # The local stack takes posts without a key (INGEST_API_KEY still applies when set);
            # an explicit INGEST_ALLOW_OPEN in the environment wins.
            {
                **_with_samples("ingest"),
                "INGEST_ALLOW_OPEN": os.environ.get("INGEST_ALLOW_OPEN", "true"),
            },
            # Requests wait on the publisher's linger and on Redis, not on the CPU: a greenlet each
            # lets one process gather many requests into each classify task.
            worker=INGEST_WORKER,
            tls=_ingest_tls_options(settings),
        ),
        "web": lambda: _gunicorn_part(
            "web", "create_app", web_port, "/", python, {**_with_samples("web"), **web_cookie}
        ),
        # The classify worker: CLASSIFY_PROCESSES solo-pool processes, "worker", "worker-2", ...
        "worker": lambda: [
            Part(name, classify_worker_argv(celery, n), workers_env, needs=redis_needs)
            for n, name in enumerate(worker_part_names(), start=1)
        ],
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
        built = builders[name]()
        parts += built if isinstance(built, list) else [built]
        if name == "redis" and ha:
            # The replica's first full sync starts at once (Redis waits 5 s by default), so ingest,
            # which needs its acknowledgement, answers 2xx from its start.
            primary = parts[-1]
            parts[-1] = replace(primary, argv=[*primary.argv, "--repl-diskless-sync-delay", "0"])
            parts += ha_parts(data_dir, redis_binary, redis_url, ha_ports, shared)
    # Ingest and web need Redis too: with --ha, its replicas and Sentinels as well.
    return [
        replace(part, needs=redis_needs)
        if part.needs == ("redis",) and part.name not in HA_PARTS
        else part
        for part in parts
    ]


METRICS_GROUPS = ("ingest", "web", "workers")
# The classify worker's processes (mutt_app.worker.shape), as the "worker" part.
CLASSIFY_PROCESSES = 2


def worker_part_names() -> list[str]:
    """The part names of the classify worker's processes: ``worker``, ``worker-2``, ..."""
    return ["worker" if n == 1 else f"worker-{n}" for n in range(1, CLASSIFY_PROCESSES + 1)]


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


def _sink_part(url: str, python: str, env: Mapping[str, str]) -> Part:
    parts = urlsplit(url)
    port = parts.port or 80
    argv = [
        python,
        "-m",
        "mutt_app.devtools",
        "moog-sink",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return Part("moog-sink", argv, env, port=port, url=f"http://127.0.0.1:{port}/events")


# Ingest's worker class, as deploy/gunicorn/ingest.conf.py sets it: each request is a greenlet while
# it waits for its publishing round (up to INGEST_LINGER_MS and a Redis round trip).
INGEST_WORKER = ("--worker-class", "gevent", "--worker-connections", "1000")
# The web app's: a thread per request (its backtests and PostgreSQL queries block).
WEB_WORKER = ("--threads", "4")


def _ingest_tls_options(settings: Settings) -> list[str]:
    """gunicorn's options for INGEST_TLS_* (none without them), as deploy/gunicorn/ingest.conf.py
    sets them: HTTPS, and with a client CA a certificate required of every sender."""
    if settings.ingest_tls_cert_path is None or settings.ingest_tls_key_path is None:
        return []
    options = ["--certfile", str(settings.ingest_tls_cert_path)]
    options += ["--keyfile", str(settings.ingest_tls_key_path)]
    if settings.ingest_tls_client_ca_path is not None:
        options += ["--ca-certs", str(settings.ingest_tls_client_ca_path)]
        options += ["--cert-reqs", str(int(ssl.CERT_REQUIRED))]
    return options


def _gunicorn_part(
    name: str,
    factory: str,
    port: int,
    path: str,
    python: str,
    env: Mapping[str, str],
    worker: Sequence[str] = WEB_WORKER,
    tls: Sequence[str] = (),
) -> Part:
    argv = [
        python, "-m", "gunicorn",
        "--bind", f"0.0.0.0:{port}",
        "--workers", "2", *worker,
        # Under the supervisor's 10 s stop deadline, so requests in flight can finish.
        "--graceful-timeout", "8",
        *tls,
    ]  # fmt: skip
    if _gunicorn_version() >= (25, 1):
        # Both gunicorns would otherwise share one control socket (~/.gunicorn/gunicorn.ctl).
        argv.append("--no-control-socket")
    argv.append(f"mutt_app.web:{factory}()")
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{port}{path}"
    return Part(name, argv, env, port=port, needs=("redis",), url=url)


def _gunicorn_version() -> tuple[int, int]:
    try:
        major, minor = importlib.metadata.version("gunicorn").split(".")[:2]
        return int(major), int(minor)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return (0, 0)
