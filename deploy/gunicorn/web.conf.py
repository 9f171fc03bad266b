"""Gunicorn settings for the MUTT web UI and REST API (mutt-web.service, the k8s web Deployment).

Run as ``gunicorn --config web.conf.py 'mutt_app.web:create_app()'``, behind nginx
(deploy/nginx/mutt-web.conf), which listens on MUTT's SERVER_PORT_WEBUI and hands each request, once
read whole, to gunicorn on loopback: GUNICORN_WEB_BIND, that file's upstream. GUNICORN_* are
deploy-only knobs.
"""

import os

from prometheus_client import multiprocess

# Loopback only: clients reach gunicorn through nginx, which reads each request whole first; a
# gthread thread waits on a client's slow header or body for as long as it takes to arrive.
bind = os.environ.get("GUNICORN_WEB_BIND", "127.0.0.1:8190")
# API and UI requests wait on PostgreSQL and Redis: a few processes with threads each. Backtests
# take at most BACKTEST_MAX_CONCURRENT (2) of a worker's threads; the others stay free for /health,
# /metrics and the rest (post_worker_init).
workers = int(os.environ.get("GUNICORN_WEB_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_WEB_THREADS", "4"))
worker_class = "gthread"
# A rule test or an audit search may take a few seconds; nothing should take 60. A backtest's
# budget (BACKTEST_TIME_BUDGET_SECONDS) is kept 10 s under it (post_worker_init).
timeout = int(os.environ.get("GUNICORN_WEB_TIMEOUT", "60"))
# systemd's TimeoutStopSec (45 s) and k8s's terminationGracePeriodSeconds (45 s) leave room for this.
graceful_timeout = 30
# Longer than rsyslog's and syslog-ng's idle connection reuse, so they rarely meet a closed socket.
keepalive = 75
# Recycle workers now and then, with jitter so they do not all restart together.
max_requests = 10_000
max_requests_jitter = 1_000
# Heartbeat files on tmpfs: a worker stalled on a slow disk must not be killed as hung.
worker_tmp_dir = "/dev/shm"
# Two gunicorns on one host would share ~/.gunicorn/gunicorn.ctl (gunicorn >= 25.1 only; older
# versions ignore unknown settings in a config file).
control_socket_disable = True
accesslog = "-"  # admin traffic is light, and who changed what is worth a line
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
# Trust X-Forwarded-Proto from nginx on loopback (the client's address is the app's business:
# INGEST_TRUSTED_PROXIES, WEBUI_TRUSTED_PROXIES).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def child_exit(server: object, worker: object) -> None:
    # prometheus_client multiprocess mode: drop a dead worker's live gauges from the merged page.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]


def post_worker_init(worker: object) -> None:
    # The app fits its backtests to this worker: fewer at once than its threads (else it exits
    # with one line, and gunicorn stops), each ending well before the request timeout.
    from mutt_app.web.capacity import fit_to_server

    cfg = worker.cfg  # type: ignore[attr-defined]
    fit_to_server(worker.wsgi, threads=cfg.threads, timeout=cfg.timeout)  # type: ignore[attr-defined]
