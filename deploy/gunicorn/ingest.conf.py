"""Gunicorn settings for the MUTT ingest endpoint (mutt-ingest.service, the k8s ingest Deployment).

Run as ``gunicorn --config ingest.conf.py 'mutt_app.web:create_ingest_app()'``, behind nginx
(deploy/nginx/mutt-ingest.conf), which listens on MUTT's SERVER_PORT_INGESTOR and hands each request, once
read whole, to gunicorn on loopback: GUNICORN_INGEST_BIND, that file's upstream. GUNICORN_* are
deploy-only knobs.

TLS: behind nginx it ends there (the TLS lines of deploy/nginx/mutt-ingest.conf). Where gunicorn
faces the senders itself (GUNICORN_INGEST_BIND on a public address, no nginx), MUTT's
INGEST_TLS_CERT_PATH / INGEST_TLS_KEY_PATH make it serve HTTPS, and INGEST_TLS_CLIENT_CA_PATH makes it
require a client certificate signed by that CA.
"""

import os
import ssl

from prometheus_client import multiprocess

from mutt_app.config import load_settings

# Loopback only: clients reach gunicorn through nginx, which reads each request whole first; a
# connection holds one of a worker's worker_connections for as long as its request takes to arrive.
bind = os.environ.get("GUNICORN_INGEST_BIND", "127.0.0.1:8180")

# Read through MUTT's settings, so a half-set pair stops gunicorn with the one-line error every
# MUTT process gives (a certificate without its key would otherwise fail only at the first client).
_settings = load_settings()
if _settings.ingest_tls_cert_path is not None and _settings.ingest_tls_key_path is not None:
    certfile = str(_settings.ingest_tls_cert_path)
    keyfile = str(_settings.ingest_tls_key_path)
if _settings.ingest_tls_client_ca_path is not None:
    # Senders without a certificate from this CA fail the handshake: no request of theirs is read.
    ca_certs = str(_settings.ingest_tls_client_ca_path)
    cert_reqs = ssl.CERT_REQUIRED
# Ingest is short requests that mostly wait on Redis and on the publisher's linger
# (INGEST_LINGER_MS): a few processes, each serving its connections from greenlets (gevent), so that
# each process gathers many requests' events into each classify task. A greenlet per request costs
# less CPU than gthread's hand-off from its polling thread to a pool thread and back, and so more
# requests share each publishing round (BENCHMARKS.md, "Single-event requests under gevent").
# The app does no blocking work gevent cannot switch away from: its only I/O is Redis (ingest never
# touches PostgreSQL), and gevent's monkey-patching, done by the worker before the app is loaded,
# makes the publishing thread (mutt_app.web.ingest.publisher) a greenlet too.
workers = int(os.environ.get("GUNICORN_INGEST_WORKERS", "4"))
worker_class = "gevent"
# Requests in progress per worker, each a greenlet; gunicorn's default.
worker_connections = int(os.environ.get("GUNICORN_INGEST_CONNECTIONS", "1000"))
# A 10 MiB gzip body from a far syslog relay may take a while to arrive; nothing here takes 60 s.
timeout = 60
# systemd's TimeoutStopSec (45 s) and k8s's terminationGracePeriodSeconds (45 s) leave room for this.
graceful_timeout = 30
# Longer than rsyslog's and syslog-ng's idle connection reuse, so they rarely meet a closed socket.
keepalive = 75
# Recycle workers now and then, with jitter so they do not all restart together.
max_requests = 100_000
max_requests_jitter = 10_000
# Heartbeat files on tmpfs: a worker stalled on a slow disk must not be killed as hung.
worker_tmp_dir = "/dev/shm"
# Two gunicorns on one host would share ~/.gunicorn/gunicorn.ctl (gunicorn >= 25.1 only; older
# versions ignore unknown settings in a config file).
control_socket_disable = True
accesslog = None  # the ingest rate would flood the journal; mutt_ingest_* metrics count requests
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
# Trust X-Forwarded-Proto from nginx on loopback (the client's address is the app's business:
# INGEST_TRUSTED_PROXIES, WEBUI_TRUSTED_PROXIES).
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def child_exit(server: object, worker: object) -> None:
    # prometheus_client multiprocess mode: drop a dead worker's live gauges from the merged page.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
