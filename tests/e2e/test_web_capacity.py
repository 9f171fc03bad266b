"""Backtests cannot starve the web app: gunicorn with the shipped config
(deploy/gunicorn/web.conf.py, two workers of four threads), real PostgreSQL.

The backtests are made slow for real: a transaction holds an exclusive lock on the audit table, so
each backtest's scan waits on the database until its time budget cancels it (statement_timeout), as
a busy database would make it wait. Ten at once: each worker runs BACKTEST_MAX_CONCURRENT (2) and
answers the others 429 with Retry-After at once, /health and /metrics keep answering within a second
meanwhile, and the budget (50 s asked) is lowered to 10 s under the server's request timeout
(GUNICORN_WEB_TIMEOUT, 16 s here). A cap that would take every thread of a worker stops gunicorn at
start with one line.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import text

from tests.e2e.conftest import StackFactory
from tests.e2e.stack import WEB_API_KEY

AUTH = {"X-API-Key": WEB_API_KEY}
DRAFT = {
    "create": [
        {
            "match_string": "disk",
            "match_type": "contains",
            "priority": 300,
            "prod_handling": "Email_only",
            "dev_handling": "Log_only",
            "team_assignment": "UNIX",
        }
    ]
}
WORKERS, CAP, REQUESTS = 2, 2, 10
TIMEOUT, BUDGET = 16, 6  # the server's request timeout, and the budget 10 s under it


def _backtest(url: str) -> requests.Response:
    body = {"hours": 24, "draft": DRAFT}
    return requests.post(f"{url}/api/v2/rules/backtest", json=body, headers=AUTH, timeout=60)


def _sample(page: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", page, re.M)
    return float(match.group(1)) if match else 0.0


def test_backtests_over_the_cap_get_429_and_health_answers_while_the_others_run(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(BACKTEST_TIME_BUDGET_SECONDS="50", BACKTEST_MAX_CONCURRENT=str(CAP))
    stack.start_shipped_web(workers=WORKERS, threads=4, GUNICORN_WEB_TIMEOUT=str(TIMEOUT))
    log = stack.processes["web"].log_path
    lowered = f"BACKTEST_TIME_BUDGET_SECONDS lowered from 50 to {BUDGET} s"
    assert lowered in log.read_text(errors="replace"), stack.logs()

    with stack.engine.connect() as lock, ThreadPoolExecutor(REQUESTS) as pool:
        lock.execute(text("LOCK TABLE event_audit_log IN ACCESS EXCLUSIVE MODE"))
        calls: list[Future[requests.Response]] = [
            pool.submit(_backtest, stack.web_url) for _ in range(REQUESTS)
        ]
        # At most WORKERS x CAP run; the others are refused at once, not queued.
        deadline = time.monotonic() + BUDGET - 1
        while sum(c.done() for c in calls) < REQUESTS - WORKERS * CAP:
            assert time.monotonic() < deadline, "the backtests over the cap were not refused"
            time.sleep(0.05)
        refused = [c.result() for c in calls if c.done()]
        assert {r.status_code for r in refused} == {429}, [r.text for r in refused]
        assert {r.headers["Retry-After"] for r in refused} == {str(BUDGET)}
        assert "backtests are running" in refused[0].json()["error"]

        # The others hold their slots until the budget ends: /health and /metrics answer meanwhile.
        def one_ran() -> bool:
            return any(c.done() and c.result().status_code != 429 for c in calls)

        probes = 0
        while not one_ran():
            for path in ("/health", "/metrics"):
                try:
                    answer = requests.get(f"{stack.web_url}{path}", timeout=1)
                except requests.Timeout:
                    pytest.fail(f"{path} did not answer within a second\n{stack.logs()}")
                assert answer.status_code == 200, answer.text
            probes += 1
            time.sleep(0.1)
        assert probes >= 3, "the backtests ended before /health was probed"
        answers = [c.result() for c in calls]
        lock.rollback()

    ran = [a for a in answers if a.status_code != 429]
    assert CAP <= len(ran) <= WORKERS * CAP, [a.status_code for a in answers]
    for answer in ran:
        assert answer.status_code == 200, answer.text
        # Stopped by the lowered budget, well before the server's timeout.
        assert answer.json()["truncated_by"] == "time"
        assert answer.json()["seconds"] < TIMEOUT
    page = requests.get(f"{stack.web_url}/metrics", timeout=10).text
    busy = _sample(page, "mutt_rule_backtests_total", 'outcome="busy"')
    assert busy == REQUESTS - len(ran), page


def test_a_cap_that_takes_every_thread_stops_gunicorn_at_start_with_one_line(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(BACKTEST_MAX_CONCURRENT="4")
    with pytest.raises(RuntimeError, match="did not start"):
        stack.start_shipped_web(workers=1, threads=4)
    web = stack.processes["web"]
    assert web.popen is not None and web.popen.wait(30) == 4  # gunicorn's "App failed to load"
    lines = [line for line in web.tail(None).splitlines() if line.startswith("mutt: ")]
    assert lines == [
        "mutt: BACKTEST_MAX_CONCURRENT=4 would let backtests take every one of a worker's 4"
        " threads (GUNICORN_WEB_THREADS), and /health would wait behind them; lower it, or give"
        " the workers more threads"
    ]
