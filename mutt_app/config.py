"""MUTT settings: one object, read once from the environment, passed to whatever needs it.

pydantic-settings maps the environment onto :class:`Settings` (variable ``FOO_BAR``, any case, is
field ``foo_bar``); what is MUTT's own is here: defaults, bounds, derived values, one-line errors.
Names follow the v2.5 quick reference (REDIS_HOST, DB_NAME, MOOG_RATE_LIMIT, ...). The URL forms
``REDIS_URL`` and ``DATABASE_URL`` win over the host/port parts when set. With no settings at all MUTT
runs on the *embedded default*: a SQLite file under ``MUTT_DATA_DIR`` and a Redis that ``mutt run``
starts itself.

Secrets (API keys, rotating passwords) may come from the environment or, when ``VAULT_ADDR`` is set,
from Vault; :func:`mutt_app.vault.overlay_secrets` returns a copy of the settings with them filled in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import quote

from celery.schedules import crontab
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mutt_app.api_keys import parse_api_keys
from mutt_app.connection_urls import one_host_per_item, passwords_to_try, with_password

__all__ = ["Settings", "SettingsError", "load_settings"]

VERSION = "2.5.0"

Port = Annotated[int, Field(ge=1, le=65535)]
Positive = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
CommaList = Annotated[tuple[str, ...], NoDecode]
"""Comma-separated in the environment (NoDecode: not JSON, see ``_split_commas``)."""


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Every setting MUTT reads. Field ``foo_bar`` is the environment variable ``FOO_BAR``.

    Read it with :func:`load_settings` (the process environment or a given mapping); built
    directly, it holds the values given and the defaults, whatever the environment says.
    """

    # Defaults are MUTT's own and known good: not validated again (validate_default).
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", str_strip_whitespace=True, validate_default=False
    )

    # --- general ---------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json_enabled: bool = False
    pod_name: str | None = None
    """The ``pod_name`` of JSON log lines (Kubernetes: from the downward API); default the host name."""
    mutt_data_dir: Path = Path("var")
    """Where the embedded default keeps its SQLite file, private Redis and archives."""

    # --- Redis -----------------------------------------------------------------------------
    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: Port = 6379
    redis_db: Annotated[int, Field(ge=0, le=15)] = 0
    redis_password: SecretStr | None = None
    redis_pass_current: SecretStr | None = None
    redis_pass_next: SecretStr | None = None
    redis_tls_enabled: bool = False
    redis_ca_cert_path: Path | None = None
    redis_max_connections: Positive = 20
    redis_sentinel_hosts: Annotated[tuple[tuple[str, int], ...], NoDecode] = ()
    """Sentinels to ask for the master, ``host:port`` separated by commas; set, every Redis client,
    the Celery broker and RedBeat follow the master Sentinel names (REDIS_URL/REDIS_HOST must then
    be unset). REDIS_DB, the Redis passwords and REDIS_TLS_ENABLED apply to the master."""
    redis_sentinel_master: str = "mymaster"
    """The name the Sentinels monitor the master under."""
    redis_sentinel_password: SecretStr | None = None
    """The Sentinels' own password (their ``requirepass``), when they have one."""
    redis_sentinel_tls_enabled: bool = False
    """Talk TLS to the Sentinels (verified against REDIS_CA_CERT_PATH, as the master)."""

    # --- PostgreSQL ------------------------------------------------------------------------
    database_url: str | None = None
    db_host: str | None = None
    db_port: Port = 5432
    db_name: str = "mutt_db"
    db_user: str = "mutt_user"
    db_pass: SecretStr | None = None
    db_pass_current: SecretStr | None = None
    db_pass_next: SecretStr | None = None
    db_tls_enabled: bool = False
    db_tls_ca_cert_path: Path | None = None
    db_pool_min_conn: Annotated[int, Field(ge=0)] = 2
    db_pool_max_conn: Positive = 10

    # --- Vault -----------------------------------------------------------------------------
    vault_addr: str | None = None
    vault_role_id: str | None = None
    vault_secret_id_file: Path = Path("/etc/mutt/secrets/vault_secret_id")
    vault_secrets_path: str = "secret/mutt"
    vault_token_renew_threshold: Positive = 3600
    vault_renew_check_interval: Positive = 300
    vault_ca_cert_path: Path | None = None

    # --- API keys (usually from Vault) -----------------------------------------------------
    ingest_api_key: SecretStr | None = None
    webui_api_key: SecretStr | None = None
    webui_api_keys: SecretStr | None = None
    """Scoped REST API keys, ``name:role:key`` separated by commas (see :mod:`mutt_app.api_keys`);
    when set, the whole list (WEBUI_API_KEY is then not accepted)."""
    moog_api_key: SecretStr | None = None

    # --- ingest ----------------------------------------------------------------------------
    server_port_ingestor: Port = 8080
    max_ingest_queue_size: Positive = 1_000_000
    max_ingest_body_bytes: Positive = 10 * 1024 * 1024
    ingest_trusted_proxies: Annotated[int, Field(ge=0, le=10)] = 0
    """As WEBUI_TRUSTED_PROXIES, for ingest (its key throttle); 1 behind the shipped nginx alone."""
    required_message_fields: CommaList = ("timestamp", "message", "hostname")
    # How far before (a replayed syslog buffer) and after (clock skew) its received_at an event's own
    # timestamp may be; outside, it is audited under received_at with the sender's time in raw.
    event_time_max_age_days: Annotated[int, Field(ge=1, le=366)] = 7
    event_time_max_ahead_minutes: Annotated[int, Field(ge=0, le=1440)] = 15
    classify_batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    """Most events per classify task. A task's fixed cost (broker, task events, ledger, a commit)
    is shared by its events: 500 let 100-event requests pair up (BENCHMARKS.md)."""
    classify_time_budget_seconds: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Seconds one classify task may spend deciding events (also the rule tester's limit). When
    it is spent, the events not yet decided go on in a new task (see mutt_app.tasks.classify), so
    no rule set holds a worker much longer than this; well under the broker visibility timeout."""
    ingest_linger_ms: Annotated[float, Field(ge=0, le=1000)] = 20.0
    """How long an ingest process holds a not-yet-full batch for more requests' events (0: never)."""
    ingest_min_replicas: Annotated[int, Field(ge=0, le=16)] | None = None
    """Replicas that must acknowledge a round's writes (Redis WAIT) before its requests get their
    2xx; fewer: 503 with Retry-After. Default 1 with REDIS_SENTINEL_HOSTS, else 0 (no WAIT)."""
    ingest_replica_timeout_ms: Annotated[int, Field(ge=1, le=10_000)] = 1000
    """How long a round waits for those acknowledgements."""

    # --- Celery broker ---------------------------------------------------------------------
    broker_visibility_timeout: Annotated[int, Field(ge=5)] = 10
    """Seconds a worker may go without renewing its hold on a message before the message is taken
    for a dead worker's and handed out again (mutt_app.redelivery: live workers renew theirs)."""
    broker_restore_interval: Annotated[int, Field(ge=1)] = 2
    """Seconds between each worker's scans for messages whose hold was not renewed."""
    ledger_reconcile_after: Annotated[int, Field(ge=10)] = 600
    """Seconds before an accepted batch with no audit is published again (what the broker lost)."""

    metrics_port_worker: Annotated[int, Field(ge=0, le=65535)] = 8081
    """Port of a worker host's /metrics (0: none). Needs PROMETHEUS_MULTIPROC_DIR under prefork."""

    # --- classification --------------------------------------------------------------------
    alerter_max_retries: Positive = 3
    cache_reload_interval: Positive = 300
    unhandled_prefix: str = "mutt:unhandled"
    unhandled_threshold: Positive = 100
    unhandled_expiry_seconds: Positive = 86_400
    unhandled_max_hosts: Positive = 20_000
    """Hosts counted per UNHANDLED_EXPIRY_SECONDS window; further new hosts wait for the next."""
    unhandled_default_team: str = "NETO"
    dedup_window_seconds: Annotated[int, Field(ge=0, le=86_400)] = 60
    """Seconds during which repeats of a forwarded alert (same host, rule and message template)
    are counted instead of forwarded; 0 turns deduplication off. A rule's own window wins; the
    dynamic key of the same name overrides this at run time."""
    dedup_flush_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 5
    """How often beat sends what closed windows held: dedup repeat counts, storm-budget summaries,
    flapping ends."""
    storm_budget_per_device: Annotated[int, Field(ge=0, le=1_000_000)] = 100
    """Alerts of one device (host) and lane that may reach Moog per storm window; 0: no budget."""
    storm_budget_per_rule: Annotated[int, Field(ge=0, le=1_000_000)] = 500
    """Alerts of one rule and lane that may reach Moog per storm window; 0: no budget."""
    storm_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 60
    """The storm budgets' window; the held alerts of each get one summary when it closes."""
    flap_transitions: Annotated[int, Field(ge=0, le=1000)] = 5
    """Problem/clear transitions of one host and pair that make it flap; 0: no flap detection."""
    flap_window_seconds: Annotated[int, Field(ge=1, le=86_400)] = 600
    """The window those transitions must fall within."""
    flap_quiet_seconds: Annotated[int, Field(ge=1, le=86_400)] = 600
    """How long a flapping pair must stay quiet before its episode ends."""
    heartbeat_check_interval_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    """How often beat checks the heartbeats (hosts that must send an event every N minutes). A
    quiet host is alerted at most this long after its N minutes are up; the shortest heartbeat is
    one minute, so once a minute by default."""
    # The heartbeat check drops from the last-seen set the hosts silent for longer than the longest
    # heartbeat interval plus the margin, then the longest silent past the cap.
    heartbeat_last_seen_margin_seconds: Annotated[int, Field(ge=0, le=30 * 86_400)] = 3600
    heartbeat_last_seen_max_hosts: Annotated[int, Field(ge=1)] = 200_000
    heartbeat_max_quiet_hosts: Annotated[int, Field(ge=1, le=100_000)] = 1000
    """Open quiet alerts one heartbeat may have; past it the other quiet hosts are counted
    (``mutt_heartbeat_quiet_over_cap``), each alerted once an open one clears."""

    # --- Moogsoft --------------------------------------------------------------------------
    moog_webhook_url: str | None = None
    moog_webhook_timeout: PositiveFloat = 10.0
    moog_format: Literal["rest_lam", "cloud"] = "rest_lam"
    """The request body: the REST LAM's ``{"events": [...]}`` batch, or the Moogsoft Cloud Events
    API's JSON array (``dedupe_key``, severity names, ``apiKey`` header); see :mod:`mutt_app.forwarding.moog`."""
    moog_batch_size: Annotated[int, Field(ge=1, le=1000)] = 50
    """Most alerts one forward task carries and one request to Moog holds (dynamic key too)."""
    moog_delivery_history_seconds: Positive = 7 * 86_400
    """How long each alert's delivery attempts are kept (Redis list per alert, see
    :mod:`mutt_app.forwarding.history`)."""
    moog_rate_limit: Positive = 50
    moog_rate_period: PositiveFloat = 1.0
    moog_rate_limit_key: str = "mutt:rate_limit:moog"
    moog_page_reserved_share: Annotated[float, Field(ge=0, le=0.9)] = 0.2
    """Share of each rate-limit window only pages (Page_and_ticket) may use; tickets get the rest."""
    # Celery's per-worker ceiling on forward attempts per second (0: ten times the cluster rate).
    moog_worker_rate_limit: Annotated[float, Field(ge=0)] = 0.0
    moog_max_retries: Annotated[int, Field(ge=0)] = 5
    moog_retry_base_delay: PositiveFloat = 1.0
    moog_retry_max_delay: PositiveFloat = 60.0
    moog_circuit_breaker_threshold: Positive = 5
    moog_circuit_breaker_timeout: Positive = 60
    moog_health_check_enabled: bool = True
    moog_health_timeout: PositiveFloat = 5.0

    # --- web UI ----------------------------------------------------------------------------
    server_port_webui: Port = 8090
    metrics_cache_ttl: Positive = 5
    audit_log_page_size: Annotated[int, Field(ge=1, le=500)] = 50
    backtest_max_rows: Annotated[int, Field(ge=1, le=100_000_000)] = 2_000_000
    """Audited events a rule backtest decides again at most (newest first); past it the answer
    says truncated."""
    backtest_time_budget_seconds: Annotated[float, Field(gt=0, le=50)] = 30.0
    """Seconds a rule backtest may run; then it answers with what it examined, truncated. Kept
    under the web server's 60 s request timeout (deploy/gunicorn/web.conf.py)."""
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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_environment_and_files: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given: :func:`load_settings` chooses the environment it reads, so a
        copy through the model (:mod:`mutt_app.vault`) never picks up the process's variables."""
        return (init_settings,)

    @field_validator("required_message_fields", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("partition_schedule", "retention_schedule")
    @classmethod
    def _crontab_line(cls, value: str) -> str:
        try:
            crontab.from_string(value)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"not a crontab line (minute hour day month weekday): {exc}") from None
        return value

    @field_validator("webui_api_keys")
    @classmethod
    def _scoped_api_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value():
            parse_api_keys(value.get_secret_value())  # refused at start, not at the first request
        return value

    @field_validator("redis_sentinel_hosts", mode="before")
    @classmethod
    def _sentinel_addresses(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        addresses = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ValueError(f"{item!r} is not host:port (e.g. sentinel1:26379)")
            addresses.append((host.strip("[]"), int(port)))
        return tuple(addresses)

    @field_validator("redis_sentinel_master")
    @classmethod
    def _master_name(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a non-empty name without spaces (Sentinel's master name)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator(
        "redis_url",
        "database_url",
        "redis_host",
        "db_host",
        "vault_addr",
        "ingest_min_replicas",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    # --- derived values --------------------------------------------------------------------

    @model_validator(mode="after")
    def _one_way_to_redis(self) -> Settings:
        if self.redis_sentinel_hosts and (self.redis_url or self.redis_host):
            raise ValueError(
                "REDIS_SENTINEL_HOSTS names the Redis master through Sentinel: unset REDIS_URL "
                "and REDIS_HOST (they would name a fixed server)"
            )
        return self

    @property
    def sentinel(self) -> bool:
        """True when Redis is reached through Sentinel (REDIS_SENTINEL_HOSTS is set)."""
        return bool(self.redis_sentinel_hosts)

    @property
    def min_replicas(self) -> int:
        """Replicas that must acknowledge accepted events (INGEST_MIN_REPLICAS or its default)."""
        if self.ingest_min_replicas is not None:
            return self.ingest_min_replicas
        return 1 if self.sentinel else 0

    @property
    def worker_rate_limit(self) -> str:
        """Celery ``rate_limit`` for forward_to_moog in each worker, e.g. ``"500/s"``.

        Every attempt counts against it, deferred ones too, and when it binds Celery holds prefetched
        messages: set to the cluster rate it starved workers to about one task a second in our tests
        (celery/celery#5927). So it is a ceiling well above the limit that Moog sees, which the shared
        limiter in Redis enforces.
        """
        per_second = (
            self.moog_worker_rate_limit or 10 * self.moog_rate_limit / self.moog_rate_period
        )
        return f"{per_second:g}/s"

    @property
    def embedded_redis(self) -> bool:
        """True when no Redis was configured, so ``mutt run`` should start a private one."""
        return self.redis_url is None and self.redis_host is None and not self.sentinel

    @property
    def embedded_database(self) -> bool:
        """True when no database was configured: the embedded default's SQLite file."""
        return self.database_url is None and self.db_host is None

    def redis_passwords(self) -> list[str | None]:
        """Passwords to try in order: the rotating pair from Vault, else REDIS_PASSWORD."""
        return passwords_to_try(self.redis_pass_current, self.redis_pass_next, self.redis_password)

    def db_passwords(self) -> list[str | None]:
        """Passwords to try in order: the rotating pair from Vault, else DB_PASS."""
        return passwords_to_try(self.db_pass_current, self.db_pass_next, self.db_pass)

    def redis_dsn(self, password: str | None = None) -> str:
        """The Redis URL, with ``password`` (when given) in place of any in the URL."""
        if self.redis_url is not None:
            return self.redis_url if password is None else with_password(self.redis_url, password)
        scheme = "rediss" if self.redis_tls_enabled else "redis"
        host = self.redis_host or "127.0.0.1"
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"{scheme}://{auth}{host}:{self.redis_port}/{self.redis_db}"

    def database_dsn(self) -> str:
        """The SQLAlchemy URL, without a password (see :mod:`mutt_app.rotation`)."""
        if self.database_url is not None:
            url = self.database_url
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
            return one_host_per_item(url) if url.startswith("postgresql") else url
        if self.db_host is not None:
            user = quote(self.db_user, safe="")
            return f"postgresql+psycopg2://{user}@{self.db_host}:{self.db_port}/{self.db_name}"
        return f"sqlite:///{(self.mutt_data_dir / 'mutt.db').resolve()}"

    @property
    def archive_path(self) -> Path:
        """Where retention writes its archives (ARCHIVE_DIR, else MUTT_DATA_DIR/archive)."""
        return self.archive_dir or self.mutt_data_dir / "archive"


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default: the process environment).

    Raises :class:`SettingsError` with one line naming the offending variable.
    """
    values = _Environment(os.environ if environ is None else environ)()
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        # A cross-field check has no location: it names its variable in its message.
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:
            raise SettingsError(f"invalid setting {message}") from None
        name = str(first["loc"][0]).upper()
        given = values.get(name.lower())
        shown = (
            ""
            if given is None or "pass" in name.lower() or "key" in name.lower()
            else f"={given!r}"
        )
        raise SettingsError(f"invalid setting {name}{shown}: {message}") from None
