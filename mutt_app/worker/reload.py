"""SIGHUP: a worker reloads its rules and its dynamic configuration now, without a restart.

Celery's own SIGHUP handler (installed when the worker has no terminal) restarts the whole worker:
a warm shutdown, then ``exec`` of the same command line. MUTT replaces it: ``systemctl reload``
(``ExecReload=/bin/kill -HUP $MAINPID``) asks for what the seeds call a cache reload. The rules and
dynamic configuration already reach every worker within seconds of a change made through MUTT (the
rules version in Redis, the 5-second config cache); SIGHUP is for what bypasses those (a rule edited
in SQL, a config key set in Redis by hand) and for an operator who wants the reload now and logged.

Under prefork the parent holds no task state, and its pool processes cannot take a signal of their
own (billiard makes SIGHUP end them). So the parent counts reload requests in a page of memory it
shares with every pool process it forks (:data:`REQUESTS`), and each pool process, before its next
task, reloads its caches if the count moved: no task that starts after the parent logged the
SIGHUP runs with the old rules. A solo-pool worker (classify) is its own pool process (Celery's
solo pool sends ``worker_process_init`` in it): it reloads its probe at once and its tasks' caches
before the next task, the same way. A threads-pool worker (forward) reloads in its one process, at
once.
The work runs on a thread of its own, never in the signal handler: a handler runs between two
bytecodes of the main thread, which may hold the rule cache's lock or the logging lock then.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

from celery import current_app
from celery.signals import task_prerun, worker_process_init

from mutt_app.rules.cache import RuleCache
from mutt_app.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["REQUESTS", "ReloadRequests", "install", "reload_runtime"]


def reload_runtime(runtime: Runtime) -> str:
    """Reload what ``runtime`` caches: its rules and its dynamic configuration, if it read them.

    Returns what was reloaded, for the log line. A rule set that fails to load keeps the old one
    (:meth:`RuleCache.current`), so a reload never leaves a worker without rules.
    """
    done = []
    rules = runtime.built(RuleCache.of)
    if rules is not None:
        snapshot = rules.reload()
        done.append(f"rules version {snapshot.version} ({len(snapshot.ruleset)} active rules)")
    if "dynamic_config" in vars(runtime):  # built: something read it (a cached_property)
        dropped = runtime.dynamic_config.forget_all()
        done.append(f"dynamic configuration ({dropped} cached values dropped)")
    return " and ".join(done)


class ReloadRequests:
    """How many reloads were asked of this worker: a counter in memory shared across fork."""

    def __init__(self) -> None:
        # Anonymous and MAP_SHARED: a pool process forked later reads what the parent writes.
        self._page = mmap.mmap(-1, 8)
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Reloads asked so far."""
        return int(struct.unpack_from("Q", self._page)[0])

    def ask(self) -> int:
        """Count one more reload (only the process that took the SIGHUP writes); the new count."""
        with self._lock:
            count = self.count + 1
            struct.pack_into("Q", self._page, 0, count)
            return count


# Made when Celery imports this module, in the worker's parent before it forks its pool.
REQUESTS = ReloadRequests()


def install(runtimes: Callable[[], Iterable[Runtime]], what: str = "worker") -> None:
    """Make SIGHUP reload each of ``runtimes()`` now, and every pool process before its next task.

    Call it from the main thread (Python delivers signals there). It replaces whatever handler was
    there, Celery's restart handler included.
    """

    def reload() -> None:
        count = REQUESTS.ask()
        log.info(
            "SIGHUP: %s %d reloading rules and dynamic configuration (reload %d)",
            what, os.getpid(), count,
        )  # fmt: skip
        _reload_logged(runtimes(), what)

    def on_sighup(_signum: int, _frame: Any) -> None:
        threading.Thread(target=reload, name="mutt-sighup-reload", daemon=True).start()

    if threading.current_thread() is not threading.main_thread():
        # A worker or beat run inside another program's thread: its signals are that program's.
        log.info("%s runs off the main thread: SIGHUP left as it was", what)
        return
    signal.signal(signal.SIGHUP, on_sighup)


def _reload_logged(runtimes: Iterable[Runtime], what: str) -> None:
    done = []
    for runtime in runtimes:
        try:
            done.append(reload_runtime(runtime))
        except Exception:
            log.exception("SIGHUP: %s %d could not reload", what, os.getpid())
    # Nothing built yet: the first task will load everything fresh anyway.
    summary = "; ".join(d for d in done if d) or "nothing (no rules or configuration read yet)"
    log.info("SIGHUP: %s %d reloaded %s", what, os.getpid(), summary)


@worker_process_init.connect
def _reload_in_pool_process(**_: object) -> None:
    # A pool process starts with empty caches: only requests made after its start concern it.
    runtime = getattr(current_app.Task, "runtime", None)
    if runtime is None:
        return
    seen = REQUESTS.count

    def before_task(**_: object) -> None:
        nonlocal seen
        count = REQUESTS.count
        if count != seen:
            seen = count
            _reload_logged((runtime,), "pool process")

    # Connected here, in the pool process only: the parent reloads on the SIGHUP itself.
    task_prerun.connect(before_task, weak=False)
