"""What slow requests may take of a web process: its backtest slots, and their fit to its server.

A rule backtest holds a gunicorn thread for up to BACKTEST_TIME_BUDGET_SECONDS. Ten of them at
once held every thread of the web app, and /health (which load balancers and Kubernetes probe)
queued behind them for minutes. So each web process runs at most BACKTEST_MAX_CONCURRENT backtests
(:class:`BacktestSlots`); one more is answered 429 with Retry-After at once, and the threads above
the cap stay free for /health, /metrics and the rest.

The cap is per process, not counted in Redis across the deployment: what it protects is the
process's own threads, which a count shared by every process cannot promise (gunicorn hands
requests to whichever worker accepts first, so a shared cap of N may put all N on one worker,
and it needs a lease that outlives a killed worker). The database's side is bounded by each
backtest's rows and time budgets and its statement_timeout (:mod:`mutt_app.rules.backtest`).

Under gunicorn with deploy/gunicorn/web.conf.py, each worker checks at start that the cap leaves a
thread free and that the time budget ends well before the server's request timeout
(:func:`fit_to_server`): the first refuses to start, the second lowers the budget and says so.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, current_app

from mutt_app import metrics
from mutt_app.config import Settings
from mutt_app.web.context import EXTENSION
from mutt_app.web.startup import refuse_to_start

log = logging.getLogger(__name__)

SLOTS = "mutt_backtest_slots"
TIMEOUT_MARGIN_SECONDS = 10.0
"""How long before the server's request timeout a backtest's budget ends: room for compiling the
draft before the scan and writing the answer after it."""


class BacktestsBusy(Exception):
    """Every backtest slot of this process is taken; ``retry_after`` seconds frees one."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"{limit} backtests are running in this web process; retry later")
        self.retry_after = retry_after


class BacktestSlots:
    """At most ``limit`` backtests at once in this process; more raise :class:`BacktestsBusy`."""

    def __init__(self, limit: int, budget_seconds: float) -> None:
        self.limit = limit
        self.budget_seconds = budget_seconds
        self._slots = threading.BoundedSemaphore(limit)

    @contextmanager
    def taken(self) -> Iterator[None]:
        """Hold one slot while the block runs; :class:`BacktestsBusy` at once if none is free."""
        if not self._slots.acquire(blocking=False):
            metrics.RULE_BACKTESTS.labels("busy").inc()
            log.info("backtest refused (429): %d running in this web process", self.limit)
            # A running backtest ends within its budget, which frees its slot.
            raise BacktestsBusy(self.limit, max(1, math.ceil(self.budget_seconds)))
        try:
            yield
        finally:
            self._slots.release()


def install_slots(app: Flask, settings: Settings) -> None:
    """Give ``app`` its BACKTEST_MAX_CONCURRENT backtest slots."""
    app.extensions[SLOTS] = BacktestSlots(
        settings.backtest_max_concurrent, settings.backtest_time_budget_seconds
    )


def backtest_slots() -> BacktestSlots:
    """The current app's backtest slots."""
    return current_app.extensions[SLOTS]


def fit_to_server(app: Flask, *, threads: int, timeout: float) -> None:
    """Fit ``app``'s backtests to a gunicorn worker of ``threads`` threads whose requests time out
    after ``timeout`` seconds (the shipped config's ``post_worker_init`` calls it).

    A cap that leaves no thread free refuses to start (one line, exit status 4); a budget that
    would run into the timeout is lowered to TIMEOUT_MARGIN_SECONDS under it, with a WARNING.
    """
    runtime = app.extensions[EXTENSION]
    settings: Settings = runtime.settings
    if settings.backtest_max_concurrent >= threads:
        refuse_to_start(
            f"BACKTEST_MAX_CONCURRENT={settings.backtest_max_concurrent} would let backtests take"
            f" every one of a worker's {threads} threads (GUNICORN_WEB_THREADS), and /health would"
            " wait behind them; lower it, or give the workers more threads"
        )
    ceiling = timeout - TIMEOUT_MARGIN_SECONDS
    if ceiling <= 0:
        refuse_to_start(
            f"the web server's request timeout ({timeout:g} s) leaves no time for a backtest;"
            f" it must be over {TIMEOUT_MARGIN_SECONDS:g} s"
        )
    budget = settings.backtest_time_budget_seconds
    if budget > ceiling:
        log.warning(
            "BACKTEST_TIME_BUDGET_SECONDS lowered from %g to %g s: %g s under the web server's"
            " %g s request timeout",
            budget,
            ceiling,
            TIMEOUT_MARGIN_SECONDS,
            timeout,
        )
        runtime.settings = settings.model_copy(update={"backtest_time_budget_seconds": ceiling})
        install_slots(app, runtime.settings)
