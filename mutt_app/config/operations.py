"""Settings for operating MUTT: the web UI and Flower, remediation of dead letters, retention and
partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from celery.schedules import crontab
from pydantic import BaseModel, Field, SecretStr, field_validator

from mutt_app.config.types import Port, Positive


class OperationsSettings(BaseModel):
    """The web UI, Flower, remediation, retention and partitions."""

    # --- web UI ----------------------------------------------------------------------------
    server_port_webui: Port = 8090
    metrics_cache_ttl: Positive = 5
    audit_log_page_size: Annotated[int, Field(ge=1, le=500)] = 50
    backtest_max_rows: Annotated[int, Field(ge=1, le=100_000_000)] = 2_000_000
    """Audited events a rule backtest decides again at most (newest first); past it the answer
    says truncated."""
    backtest_time_budget_seconds: Annotated[float, Field(gt=0, le=50)] = 30.0
    """Seconds a rule backtest may run; then it answers with what it examined, truncated. Under
    gunicorn with deploy/gunicorn/web.conf.py it is lowered, if need be, to 10 s under the
    server's request timeout (:mod:`mutt_app.web.capacity`)."""
    backtest_max_concurrent: Annotated[int, Field(ge=1, le=64)] = 2
    """Rule backtests one web process runs at once (the API's and the admin UI's); one more is
    answered 429 with Retry-After. Under the shipped gunicorn config it must stay below the
    threads of a worker (GUNICORN_WEB_THREADS, 4), which keeps threads free for /health, /metrics
    and the rest; the web app refuses to start otherwise."""
    unhandled_templates_hours: Annotated[int, Field(ge=1, le=168)] = 24
    """Hours of unmatched events the dashboard's unhandled-templates panel groups (the API's
    default ``hours``)."""
    unhandled_templates_max_rows: Annotated[int, Field(ge=100, le=1_000_000)] = 20_000
    """Most unmatched events (the newest) one unhandled-templates answer reads; past it the answer
    says ``truncated`` and counts only those."""
    prometheus_url: str = "http://localhost:9090"
    webui_secret_key: SecretStr | None = None
    """Signs the web UI's session cookies. Unset: one is generated once and kept in
    MUTT_DATA_DIR/webui_secret_key, so sessions survive restarts (every web process of a
    deployment must then share that directory, or set this)."""
    webui_cookie_secure: bool = True
    """Send the session cookie only over HTTPS; ``mutt run``'s plain-HTTP local stack sets it false."""
    webui_login_max_failures: Annotated[int, Field(ge=1, le=100)] = 5
    """Failed log-ins for one account from one client IP that refuse it from that IP ..."""
    webui_login_lockout_seconds: Annotated[int, Field(ge=1)] = 300
    """... while they fall within this moving window (seconds)."""
    webui_auth_ip_max_failures: Annotated[int, Field(ge=1)] = 20
    """Failed log-ins (and, counted apart, bad API keys and bad ingest keys) from one client IP that
    make it wait ..."""
    webui_auth_ip_window_seconds: Annotated[int, Field(ge=1)] = 300
    """... until fewer than that many fall within this moving window."""
    webui_trusted_proxies: Annotated[int, Field(ge=0, le=10)] = 0
    """Reverse proxies in front of the web app whose X-Forwarded-For names the client (0: none; the
    connection's address is the client's). Behind a proxy, set it, or every client shares one
    address for the per-IP throttle."""
    flower_port: Port = 5555
    classify_task_events: bool = True
    """Send Flower's task events for classify_event. Off, Flower lists only the other tasks (the
    deliveries to Moog, maintenance); the audit log, the metrics and the dead-letter queue still show
    every classify outcome. It declutters Flower; it saves no CPU worth measuring (BENCHMARKS.md,
    third round)."""
    flower_url: str | None = None
    """Flower's address for the admin menu's link; unset: FLOWER_PORT on the host serving the UI."""
    flower_basic_auth: SecretStr | None = None
    """Flower's login, user:password (comma-separated for several). Flower reads it from the
    environment itself; ``mutt flower`` refuses to start Flower while a password is the shipped
    placeholder."""
    moog_sink_port: Port = 8099

    # --- remediation -----------------------------------------------------------------------
    remediation_interval_seconds: Positive = 60
    remediation_max_retries: Annotated[int, Field(ge=0)] = 3
    remediation_backoff_base: Positive = 60
    dlq_batch_size: Positive = 100

    # --- retention and partitions ----------------------------------------------------------
    event_retention_days: Positive = 90
    partition_precreate_months: Annotated[int, Field(ge=0, le=120)] = 3
    archive_dir: Path | None = None
    dlq_retention_days: Positive = 30
    """Dead letters that last failed longer ago than this are archived and deleted."""
    poison_retention_days: Positive = 90
    """Poison items older than this (since they were poisoned) are archived and deleted."""
    partition_schedule: str = "17 0 * * *"
    """When beat runs create_partitions: a crontab line (minute hour day month weekday, UTC)."""
    retention_schedule: str = "37 1 * * *"
    """When beat runs retention: a crontab line (UTC)."""

    @field_validator("partition_schedule", "retention_schedule")
    @classmethod
    def _crontab_line(cls, value: str) -> str:
        try:
            crontab.from_string(value)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"not a crontab line (minute hour day month weekday): {exc}") from None
        return value

    @property
    def archive_path(self) -> Path:
        """Where retention writes its archives (ARCHIVE_DIR, else MUTT_DATA_DIR/archive)."""
        return self.archive_dir or self.mutt_data_dir / "archive"
