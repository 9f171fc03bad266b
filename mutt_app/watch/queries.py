"""How the dashboard's panels query the audit log: a time bound, a statement timeout, a timer.

Shared by :mod:`mutt_app.watch.dashboard` and :mod:`mutt_app.watch.unhandled` (the unhandled-
templates panel), so that neither imports the other.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import ColumnElement, text
from sqlalchemy.orm import Session

from mutt_app import metrics
from mutt_app.db.models import EventAuditLog

__all__ = ["QUERY_TIMEOUT_MS", "bounded", "in_window", "timed_query"]

QUERY_TIMEOUT_MS = 5000


@contextmanager
def timed_query(operation: str) -> Iterator[None]:
    """Time the block into the dashboard's query histogram under ``operation``."""
    # The quick reference names this histogram in milliseconds.
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.WEBUI_DB_QUERY_LATENCY.labels(operation).observe(elapsed_ms)


def bounded(session: Session) -> None:
    """Give the session's transaction the dashboard's statement timeout (PostgreSQL)."""
    # A dashboard query that runs long is cancelled rather than left to compete with the workers.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL statement_timeout = {QUERY_TIMEOUT_MS}"))


def in_window(start: datetime, end: datetime) -> ColumnElement[bool]:
    """Audited events whose timestamp is in (start, end]."""
    # Both bounds on the partition key: pruning plus an index range scan, never the whole table.
    return (EventAuditLog.event_timestamp > start) & (EventAuditLog.event_timestamp <= end)
