"""Settings for what MUTT connects to: Redis (direct or through Sentinel), PostgreSQL, Vault, and
the API keys (usually from Vault)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from mutt_app.api_keys import parse_api_keys
from mutt_app.config.types import Port, Positive
from mutt_app.connection_urls import one_host_per_item, passwords_to_try, with_password


class ConnectionSettings(BaseModel):
    """Where Redis, PostgreSQL and Vault are, how to reach them, and the API keys."""

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

    @property
    def sentinel(self) -> bool:
        """True when Redis is reached through Sentinel (REDIS_SENTINEL_HOSTS is set)."""
        return bool(self.redis_sentinel_hosts)

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
