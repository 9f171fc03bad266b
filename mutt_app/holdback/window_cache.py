"""Each worker's compiled maintenance windows, reloaded with the rules.

A window change bumps the rules version like a rule change does (:mod:`mutt_app.rules.cache`). The
windows used to ride in the rule snapshot; they are a hold-back stage, and the rules sit below
holdback, so they are loaded here instead, keyed on the snapshot the rule cache hands out: when the
rule cache has loaded a new snapshot (the version moved, or CACHE_RELOAD_INTERVAL passed), the
windows are read again. So a window change still applies within seconds on every worker, at no
extra Redis round trip per task, and a failed rule reload (which keeps the old snapshot) does not
also make the windows reload and fail.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app import metrics
from mutt_app.db.models import WINDOW_ACTIONS, MaintenanceWindow
from mutt_app.holdback.schedule import Schedule, WindowError, schedule_of
from mutt_app.holdback.window_fields import Scope
from mutt_app.rules.snapshot import RuleSnapshot
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

SUPPRESS = WINDOW_ACTIONS[0]


@dataclass(frozen=True)
class CompiledWindow:
    """A window as workers use it (loaded with each rules version, below)."""

    id: int
    name: str
    action: str
    summary_alert: bool
    scope: Scope
    schedule: Schedule


def compile_windows(rows: Iterable[MaintenanceWindow]) -> tuple[CompiledWindow, ...]:
    """The stored windows, suppressing ones first, then by id; a window that no longer compiles
    (a time zone gone from the system's tz database) is logged and skipped."""
    compiled = []
    for row in rows:
        try:
            compiled.append(
                CompiledWindow(
                    row.id,
                    row.name,
                    row.action,
                    row.summary_alert,
                    Scope.of(row.hosts, row.teams, row.rule_ids, row.oid_prefixes),
                    schedule_of(row),
                )
            )
        except WindowError as exc:
            log.error("maintenance window %s skipped: %s", row.id, exc)
    return tuple(sorted(compiled, key=lambda w: (w.action != SUPPRESS, w.id)))


def load_windows(session: Session) -> tuple[CompiledWindow, ...]:
    """Read and compile every stored maintenance window (:func:`compile_windows`)."""
    return compile_windows(session.scalars(select(MaintenanceWindow)))


class WindowCache:
    """The compiled windows of one process (``runtime.component(WindowCache.of)``)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        # One reference, swapped whole, so a reader never pairs one snapshot with other windows.
        self._loaded: tuple[RuleSnapshot, tuple[CompiledWindow, ...]] | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, runtime: Runtime) -> WindowCache:
        """The window cache of ``runtime`` (a Runtime component)."""
        return cls(runtime.sessions)

    def current(self, rules: RuleSnapshot) -> tuple[CompiledWindow, ...]:
        """The windows to apply along with ``rules`` (the rule cache's current snapshot).

        Read again whenever ``rules`` is not the snapshot they were last read with. If that fails
        but older windows exist, they are kept (and the failure counted as a rule reload failure,
        as when windows and rules were one load) and the read is tried again at the next task.
        """
        loaded = self._loaded
        if loaded is not None and loaded[0] is rules:
            return loaded[1]
        with self._lock:
            loaded = self._loaded
            if loaded is not None and loaded[0] is rules:  # another thread reloaded meanwhile
                return loaded[1]
            try:
                with self.sessions() as session:
                    windows = load_windows(session)
            except Exception:
                metrics.RULE_RELOAD_FAILURES.inc()
                if loaded is None:
                    raise
                log.exception(
                    "maintenance window reload failed; keeping those of rules version %s",
                    loaded[0].version,
                )
                return loaded[1]
            self._loaded = (rules, windows)
            return windows
