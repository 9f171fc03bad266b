"""Logging: readable lines by default, one JSON object per line with LOG_JSON_ENABLED.

Every record carries the service name and version; ``correlation_id`` and ``task_id`` are added by the
code that knows them (``extra={...}``). A filter masks the configured secrets wherever they would
appear, so a secret never reaches a log even by accident.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from mutt_app.config import VERSION, Settings

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(service)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"

_SECRET_FIELDS = (
    "ingest_api_key",
    "webui_api_key",
    "webui_api_keys",
    "moog_api_key",
    "redis_password",
    "redis_pass_current",
    "redis_pass_next",
    "db_pass",
    "db_pass_current",
    "db_pass_next",
)


def secret_values(settings: Settings) -> list[str]:
    """The configured secrets, longest first (so a secret containing another is masked whole)."""
    values = []
    for name in _SECRET_FIELDS:
        secret = getattr(settings, name)
        if secret is not None and len(secret.get_secret_value()) >= 4:
            values.append(secret.get_secret_value())
    if settings.webui_api_keys is not None and settings.webui_api_keys.get_secret_value():
        from mutt_app.api_keys import parse_api_keys

        # Each scoped key on its own too: a log line may carry one key, never the whole list.
        values += [key.secret for key in parse_api_keys(settings.webui_api_keys.get_secret_value())]
    return sorted(set(values), key=len, reverse=True)


class ContextFilter(logging.Filter):
    """Stamps service and version on every record and masks secrets in its message."""

    def __init__(self, service: str, secrets: list[str]) -> None:
        super().__init__()
        self.service = service
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = getattr(record, "service", self.service)
        record.version = VERSION
        if self.secrets:
            message = record.getMessage()
            masked = message
            for secret in self.secrets:
                masked = masked.replace(secret, "***")
            if masked != message:
                record.msg, record.args = masked, None
        return True


def configure_logging(settings: Settings, *, service: str) -> None:
    """Configure the root logger for ``service`` (idempotent: replaces MUTT's earlier handler)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("mutt")
    if settings.log_json_enabled:
        handler.setFormatter(
            JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "asctime": "timestamp"})
        )
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(ContextFilter(service, secret_values(settings)))
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "mutt"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
