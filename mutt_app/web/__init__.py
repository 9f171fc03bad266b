"""MUTT's web applications (Flask app factories).

- ``create_ingest_app``: the ingest endpoint (port SERVER_PORT_INGESTOR, 8080);
- ``create_app``: the admin UI and REST API (port SERVER_PORT_WEBUI, 8090).

Both take a Settings object; without one they read the environment (and Vault) once.
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from mutt_app import tracing
from mutt_app.config import Settings, SettingsError, load_settings
from mutt_app.logs import configure_logging
from mutt_app.vault import VaultError, settings_for_service
from mutt_app.web.admin import register_admin
from mutt_app.web.api import register_api
from mutt_app.web.auth import init_auth
from mutt_app.web.capacity import install_slots
from mutt_app.web.context import install
from mutt_app.web.headers import init_security_headers
from mutt_app.web.health import bp as health_bp
from mutt_app.web.health import metrics_bp
from mutt_app.web.ingest.endpoint import Ingestor
from mutt_app.web.ingest.endpoint import bp as ingest_bp
from mutt_app.web.startup import check_ingest_key, refuse_to_start


def resolve_settings(settings: Settings | None) -> Settings:
    """``settings``, or the environment's (with Vault secrets, kept fresh, when VAULT_ADDR is set).

    A bad setting or an unreachable Vault stops the process (and gunicorn) with one line naming
    the problem (:func:`~mutt_app.web.startup.refuse_to_start`).
    """
    if settings is not None:
        return settings
    try:
        return settings_for_service(load_settings())
    except (SettingsError, VaultError) as exc:
        refuse_to_start(str(exc))


def trust_forwarded_for(app: Flask, proxies: int) -> None:
    """Take the client's address (``request.remote_addr``, what the per-address throttles count)
    from X-Forwarded-For as appended by ``proxies`` trusted reverse proxies; 0: the connection's."""
    if proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)  # type: ignore[method-assign]


def create_ingest_app(settings: Settings | None = None) -> Flask:
    """The ingest endpoint: POST /api/v2/ingest, GET /health, GET /metrics.

    Refuses to start without INGEST_API_KEY unless INGEST_ALLOW_OPEN is true.
    """
    settings = resolve_settings(settings)
    configure_logging(settings, service="mutt-ingest")
    check_ingest_key(settings)
    app = Flask("mutt_app.web.ingest.endpoint")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_ingest_body_bytes
    runtime = install(app, settings)
    app.extensions["mutt_ingest"] = Ingestor(runtime)
    trust_forwarded_for(app, settings.ingest_trusted_proxies)
    tracing.start(settings, "mutt-ingest", flask_app=app, celery_app=lambda: runtime.celery)
    app.register_blueprint(ingest_bp)
    app.register_blueprint(metrics_bp)
    return app


def create_app(settings: Settings | None = None) -> Flask:
    """The admin UI (log-in at /login, dashboard at /), REST API (/api/v2, alias /api/v1), health, metrics."""
    settings = resolve_settings(settings)
    configure_logging(settings, service="mutt-web")
    app = Flask("mutt_app.web")
    runtime = install(app, settings)
    install_slots(app, settings)  # BACKTEST_MAX_CONCURRENT per process (mutt_app.web.capacity)
    tracing.start(settings, "mutt-web", flask_app=app, celery_app=lambda: runtime.celery)
    init_security_headers(app)  # CSP, X-Frame-Options, nosniff, Referrer-Policy on every answer
    trust_forwarded_for(app, settings.webui_trusted_proxies)
    app.register_blueprint(health_bp)
    app.register_blueprint(metrics_bp)
    # The API makes its engine and Redis client on first use (app.extensions), like /health.
    register_api(app)
    # People log in (sessions, CSRF) for the admin UI; the API keeps its X-API-Key.
    init_auth(app, settings)
    register_admin(app)
    return app
