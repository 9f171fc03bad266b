"""Logging: readable lines by default, one JSON object per line with LOG_JSON_ENABLED.

A JSON line has the spec's fields: ``timestamp`` (ISO 8601, UTC), ``level``, ``message``, ``logger``,
``module``, ``function``, ``line``, ``thread``, ``service``, ``version``, ``pod_name``,
``correlation_id``, ``task_id``, ``trace_id`` and ``span_id`` (null when there is none), plus whatever
a call adds with ``extra={...}`` (e.g. ``batch_id``, ``correlation_ids``).

``correlation_id`` comes from :func:`log_context`, which the ingest endpoint and the classify and
forward tasks enter with the ids of the events they handle, so one event's lines can be followed from
ingest through classify to forward. ``task_id`` is the running Celery task's id, read from Celery for
every record logged inside a task (prefork and thread pools alike). ``trace_id`` and ``span_id`` are
the current span's, with OTEL_ENABLED: OpenTelemetry's logging instrumentation stamps them on each
record (:mod:`mutt_app.tracing`), and a line can be looked up by its trace.

No secret reaches a log: the final text of every record (message, traceback, extra fields) is masked
for the configured secrets (API keys, passwords), Vault tokens and passwords inside URLs.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from mutt_app.api_keys import parse_api_keys
from mutt_app.config import VERSION, Settings

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(service)s %(name)s: %(message)s"
JSON_FIELDS = (
    "%(levelname)s %(message)s %(name)s %(module)s %(funcName)s %(lineno)d %(threadName)s "
    "%(service)s %(version)s %(pod_name)s %(correlation_id)s %(task_id)s %(trace_id)s %(span_id)s"
)
# What OpenTelemetry's logging instrumentation stamps on a record, shown as trace_id and span_id.
OTEL_RECORD_FIELDS = ("otelTraceID", "otelSpanID", "otelTraceSampled", "otelServiceName")
JSON_RENAMES = {
    "levelname": "level",
    "name": "logger",
    "funcName": "function",
    "lineno": "line",
    "threadName": "thread",
}
MASK = "***"
# A body's or batch's correlation ids are listed in full up to this many (CLASSIFY_BATCH_SIZE's
# default), so each event of a batch can be found by its id.
MAX_LISTED_IDS: int = Settings.model_fields["classify_batch_size"].default

_SECRET_FIELDS = (
    "ingest_api_key",
    "webui_api_key",
    "webui_api_keys",
    "moog_api_key",
    "redis_password",
    "redis_pass_current",
    "redis_pass_next",
    "redis_sentinel_password",
    "db_pass",
    "db_pass_current",
    "db_pass_next",
    "webui_secret_key",
)
_PATTERNS = (
    # Vault tokens: service, batch and recovery tokens (hvs./hvb./hvr.) and the legacy s./b. form.
    (re.compile(r"\b(?:hv[sbr]|[sb])\.[A-Za-z0-9_-]{20,}"), MASK),
    # The password of a URL's user info: scheme://user:password@host.
    (
        re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s\"']*:)[^@\s\"']+@"),
        rf"\g<head>{MASK}@",
    ),
)

_context: ContextVar[dict[str, Any]] = ContextVar("mutt_log_context", default={})  # noqa: B039 - never mutated


def secret_values(settings: Settings) -> list[str]:
    """The configured secrets, longest first (so a secret containing another is masked whole)."""
    values = []
    for name in _SECRET_FIELDS:
        secret = getattr(settings, name)
        if secret is not None and len(secret.get_secret_value()) >= 4:
            values.append(secret.get_secret_value())
    if settings.webui_api_keys is not None and settings.webui_api_keys.get_secret_value():
        # Each scoped key on its own too: a log line may carry one key, never the whole list.
        values += [key.secret for key in parse_api_keys(settings.webui_api_keys.get_secret_value())]
    return sorted(set(values), key=len, reverse=True)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` (None values skipped) to every record logged inside the block."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


def correlation(ids: Sequence[object]) -> dict[str, Any]:
    """Log fields for the events ``ids``: ``correlation_id`` for one, ``correlation_ids`` for many."""
    ids = [str(i) for i in ids if i]
    if len(ids) == 1:
        return {"correlation_id": ids[0]}
    if not ids:
        return {}
    if len(ids) <= MAX_LISTED_IDS:
        return {"correlation_ids": ids}
    return {"correlation_ids": [*ids[:MAX_LISTED_IDS], f"... {len(ids)} in all"]}


def _current_task_id() -> str | None:
    from celery import current_task

    request = getattr(current_task, "request", None) if current_task else None
    return getattr(request, "id", None)


class ContextFilter(logging.Filter):
    """Stamps service, version, pod, the log context and the Celery task id on every record."""

    def __init__(self, service: str, pod_name: str) -> None:
        super().__init__()
        self.service = service
        self.pod_name = pod_name

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = getattr(record, "service", self.service)
        record.version = VERSION
        record.pod_name = self.pod_name
        context = _context.get()
        for key, value in context.items():
            if not hasattr(record, key):
                setattr(record, key, value)
        if not hasattr(record, "correlation_id"):
            record.correlation_id = None
        if not hasattr(record, "task_id"):
            record.task_id = _current_task_id()
        # "0": the instrumentation's word for no span.
        record.trace_id = _otel_id(record, "otelTraceID")
        record.span_id = _otel_id(record, "otelSpanID")
        return True


def _otel_id(record: logging.LogRecord, field: str) -> str | None:
    value = getattr(record, field, None)
    return None if value in (None, "0") else value


class PlainFormatter(logging.Formatter):
    """Readable lines; the ids, when there are any, follow the message in brackets."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        shown = [
            f"{key}={value}"
            for key in ("correlation_id", "task_id")
            if (value := getattr(record, key, None))
        ]
        return f"{line} [{' '.join(shown)}]" if shown else line


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then masks secrets in the finished line, traceback included."""

    def __init__(self, inner: logging.Formatter, secrets: Sequence[str]) -> None:
        super().__init__()
        self.inner = inner
        # A secret with quotes or backslashes appears escaped in a JSON line: mask both spellings.
        spellings = {
            spelling
            for secret in secrets
            for spelling in (
                secret,
                json.dumps(secret)[1:-1],
                json.dumps(secret, ensure_ascii=False)[1:-1],
            )
        }
        self.secrets = sorted(spellings, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(self.inner.format(record))

    def redact(self, text: str) -> str:
        """``text`` with every known secret, Vault token and URL password replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def make_formatter(settings: Settings) -> RedactingFormatter:
    """The formatter for ``settings``: JSON lines or plain text, always redacting."""
    inner: logging.Formatter
    if settings.log_json_enabled:
        inner = JsonFormatter(
            JSON_FIELDS,
            rename_fields=JSON_RENAMES,
            timestamp=True,
            json_ensure_ascii=False,
            reserved_attrs=[*RESERVED_ATTRS, *OTEL_RECORD_FIELDS],
        )
    else:
        inner = PlainFormatter(PLAIN_FORMAT)
    return RedactingFormatter(inner, secret_values(settings))


# Loggers of libraries whose INFO lines are routine chatter: Alembic 1.17+ lists every built-in
# autogenerate plugin on each command, which buries the migration's own lines in `mutt db upgrade`.
QUIET_LOGGERS = ("alembic.runtime.plugins",)


def configure_logging(settings: Settings, *, service: str) -> None:
    """Configure the root logger for ``service`` (idempotent: replaces MUTT's earlier handler)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("mutt")
    handler.setFormatter(make_formatter(settings))
    handler.addFilter(ContextFilter(service, settings.pod_name or socket.gethostname()))
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "mutt"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
