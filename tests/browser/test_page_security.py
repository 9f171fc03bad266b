"""The Content-Security-Policy in headless Chromium: the pages work under it and it refuses nothing.

A refused script, style or inline handler only shows in the browser's console (or as a button that
silently does less), so every page is opened and the console checked, and the delete button is
clicked to see its confirmation still asked.
"""

from __future__ import annotations

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.models import AlertRule, DevelopmentHost
from mutt_app.forwarding.deadletters import add_dead_letter
from tests.browser.conftest import csp_refusals, log_in, wait_for_element


def test_every_page_works_under_the_policy(
    browser: WebDriver, base_url: str, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        rule = AlertRule(
            match_type="contains",
            match_string="LINK-3-UPDOWN",
            priority=100,
            prod_handling="Ticket_only",
            dev_handling="Suppress",
            team_assignment="NETO",
        )
        session.add_all([rule, DevelopmentHost(hostname="lab-01")])
        letter = add_dead_letter(
            session, task_name="t", queue="q", payload={"a": 1}, error="boom", backoff_base=60
        )
        session.flush()
        letter_id, rule_id = letter.id, rule.id
    browser.get(f"{base_url}/login")
    assert csp_refusals(browser) == []
    log_in(browser, base_url, "alice")
    for path in (
        "/",
        "/admin/rules/",
        "/admin/rules/new/",
        f"/admin/rules/edit/?id={rule_id}",
        "/admin/hosts/",
        "/admin/event-audit/",
        "/admin/config-audit/",
        "/admin/dlq/",
        f"/admin/dlq/{letter_id}/",
        "/admin/dynamic-config/",
        "/admin/rule-tester/",
        "/admin/heartbeats/",
        "/admin/heartbeats/new/",
        "/admin/rule-drafts/",
        "/admin/maintenance-windows/",
    ):
        browser.get(base_url + path)
        wait_for_element(browser, "body")
        assert csp_refusals(browser) == [], path
    # The dashboard's scripts ran: Chart.js drew into its canvas.
    browser.get(base_url + "/")
    WebDriverWait(browser, 10).until(
        lambda b: b.execute_script("return !!(window.Chart && Chart.getChart('chart-events'))")
    )

    # The row's delete button still asks first (its inline handler is allowed by its hash).
    browser.get(base_url + "/admin/rules/")
    row = browser.find_element(By.CSS_SELECTOR, "table.model-list tbody tr")
    row.find_element(By.NAME, "reason").send_keys("check the confirmation")
    row.find_element(By.CSS_SELECTOR, "button[title='Delete Record']").click()
    try:
        WebDriverWait(browser, 5).until(expected_conditions.alert_is_present())
    except TimeoutException:
        raise AssertionError("no confirmation before the delete") from None
    browser.switch_to.alert.dismiss()
    assert csp_refusals(browser) == []
    with sessions() as session:
        assert session.get(AlertRule, rule_id).is_active  # type: ignore[union-attr]
