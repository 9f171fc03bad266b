"""Rule drafts in headless Chromium: an admin writes a draft, backtests it on a known audit, reads
the changed decisions, and publishes it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.models import AlertRule, RuleDraft
from tests.browser.conftest import csp_refusals, log_in, wait_for_element
from tests.factories import RULES, audit_event

Shoot = Callable[[str], Path]


def _history(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions.begin() as session:
        rows = {name: AlertRule(**fields) for name, fields in RULES.items()}
        session.add_all(rows.values())
        session.flush()
        ids = {name: row.id for name, row in rows.items()}
        for n in range(12):
            audit_event(
                session,
                f"edge-{n}",
                f"Interface Gi0/{n} changed state to down",
                ids["interface"],
                "Page_and_ticket",
                age=timedelta(minutes=n + 1),
            )
        for n in range(4):
            audit_event(
                session, f"core-{n}", f"BGP neighbor 10.0.{n}.1 down", ids["bgp"], "Ticket_only"
            )
        audit_event(session, "core-9", "disk /var 97% full", None, "Log_only")
        audit_event(session, "core-8", "CRITICAL PSU 2 failed", ids["critical"], "Page_and_ticket")
        return ids


def test_an_admin_backtests_a_draft_then_publishes_it(
    browser: WebDriver, base_url: str, sessions: sessionmaker[Session], screenshot: Shoot
) -> None:
    ids = _history(sessions)
    log_in(browser, base_url, "alice")
    browser.get(f"{base_url}/admin/rule-drafts/")
    form = browser.find_element(By.ID, "new-draft-form")
    form.find_element(By.NAME, "name").send_keys("Quieter interface pages")
    form.find_element(By.NAME, "reason").send_keys("INC-77: pages for access ports")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    editor = wait_for_element(browser, "#draft-form textarea")
    document = {
        "create": [
            {
                "match_string": "disk",
                "match_type": "contains",
                "priority": 300,
                "prod_handling": "Ticket_only",
                "dev_handling": "Log_only",
                "team_assignment": "UNIX",
            }
        ],
        "update": [{"id": ids["interface"], "prod_handling": "Ticket_only"}],
        "deactivate": [ids["bgp"]],
    }
    editor.clear()
    editor.send_keys(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    browser.find_element(By.CSS_SELECTOR, "#draft-form input[name=reason]").send_keys(
        "INC-77: tickets, not pages"
    )
    browser.find_element(By.CSS_SELECTOR, "#draft-form button[type=submit]").click()
    assert "Draft saved" in wait_for_element(browser, ".alert-success").text
    browser.find_element(By.CSS_SELECTOR, "#backtest-form button[type=submit]").click()

    summary = wait_for_element(browser, "#backtest-summary").text
    assert summary.startswith("17 of 18 audited events")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#backtest-changes tbody tr")]
    assert len(rows) == 3
    assert rows[0].startswith(
        f"12 #{ids['interface']} #{ids['interface']} Page_and_ticket Ticket_only"
    )
    assert rows[1].startswith(f"4 #{ids['bgp']} none Ticket_only Log_only")
    assert rows[2].startswith("1 none new rule 1 disk Log_only Ticket_only")
    screenshot("rule-backtest")
    assert csp_refusals(browser) == []  # the pages work under the Content-Security-Policy

    browser.find_element(By.CSS_SELECTOR, "#publish-form input[name=reason]").send_keys(
        "INC-77: backtested, 17 changes as expected"
    )
    browser.find_element(By.CSS_SELECTOR, "#publish-form button[type=submit]").click()
    assert "Published" in wait_for_element(browser, "#draft-published").text
    with sessions() as session:
        assert session.get(AlertRule, ids["bgp"]).is_active is False
        assert session.get(AlertRule, ids["interface"]).prod_handling == "Ticket_only"
        (draft,) = session.query(RuleDraft).all()
        assert draft.published_by == "alice"
