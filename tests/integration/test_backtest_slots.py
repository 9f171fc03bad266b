"""The admin UI's backtest shares the web process's BACKTEST_MAX_CONCURRENT slots with the API's
(Flask's test client, real PostgreSQL and Redis): while they are all taken, as by running backtests,
the draft page answers 429 with Retry-After and says why; once one is free it backtests again.
(tests/e2e/test_web_capacity.py causes the API's 429 with real backtests under gunicorn.)
"""

from __future__ import annotations

import html
import re
from contextlib import ExitStack

from flask import Flask
from flask.testing import FlaskClient

from mutt_app.web.capacity import SLOTS
from tests.web import form_token, login


def _new_draft(client: FlaskClient) -> int:
    token = form_token(client, "/admin/rule-drafts/")
    response = client.post(
        "/admin/rule-drafts/new", data={"csrf_token": token, "name": "busy", "reason": "try"}
    )
    found = re.search(r"/admin/rule-drafts/(\d+)/", response.headers["Location"])
    assert found, response.headers
    return int(found.group(1))


def test_the_draft_page_answers_429_while_every_backtest_slot_is_taken(
    admin_app: Flask, admin_client: FlaskClient
) -> None:
    login(admin_client, "alice")
    draft_id = _new_draft(admin_client)
    slots = admin_app.extensions[SLOTS]

    def backtest() -> tuple[int, str | None, str]:
        token = form_token(admin_client, f"/admin/rule-drafts/{draft_id}/")
        answer = admin_client.post(
            f"/admin/rule-drafts/{draft_id}/backtest", data={"csrf_token": token, "hours": "24"}
        )
        text = html.unescape(answer.get_data(as_text=True))
        return answer.status_code, answer.headers.get("Retry-After"), text

    with ExitStack() as running:
        for _ in range(slots.limit):
            running.enter_context(slots.taken())
        status, retry_after, page = backtest()
    assert status == 429
    assert retry_after == "30"  # BACKTEST_TIME_BUDGET_SECONDS: a running backtest ends by then
    assert f"{slots.limit} backtests are running in this web process" in page

    status, _, page = backtest()
    assert status == 200 and "of 0 audited events" in page, page
