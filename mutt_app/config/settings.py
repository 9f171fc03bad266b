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
from typing import Literal

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from mutt_app.config.connections import ConnectionSettings
from mutt_app.config.delivery import DeliverySettings
from mutt_app.config.operations import OperationsSettings
from mutt_app.config.pipeline import PipelineSettings

__all__ = ["VERSION", "Settings", "SettingsError", "load_settings"]

VERSION = "2.5.0"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message is one line naming the variable."""


class Settings(
    ConnectionSettings, PipelineSettings, DeliverySettings, OperationsSettings, BaseSettings
):
    """Every setting MUTT reads. Field ``foo_bar`` is the environment variable ``FOO_BAR``.

    The fields are grouped by what they configure (one module each in this package); this class
    adds the general ones, reads the environment and checks what spans groups.

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
    otel_enabled: bool = False
    """OpenTelemetry traces over OTLP/HTTP (:mod:`mutt_app.tracing`); the collector and the rest are
    the SDK's standard OTEL_* variables, which it reads itself."""

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

    # --- what spans groups -----------------------------------------------------------------

    @model_validator(mode="after")
    def _one_way_to_redis(self) -> Settings:
        if self.redis_sentinel_hosts and (self.redis_url or self.redis_host):
            raise ValueError(
                "REDIS_SENTINEL_HOSTS names the Redis master through Sentinel: unset REDIS_URL "
                "and REDIS_HOST (they would name a fixed server)"
            )
        return self

    @property
    def min_replicas(self) -> int:
        """Replicas that must acknowledge accepted events (INGEST_MIN_REPLICAS or its default)."""
        if self.ingest_min_replicas is not None:
            return self.ingest_min_replicas
        return 1 if self.sentinel else 0


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
