"""The maintenance windows page in headless Chromium: preview the next occurrences of a recurring
window, add it, see it listed with its occurrences next to one open now, end the open one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.db.models import ConfigAuditLog, MaintenanceWindow
from tests.browser.conftest import log_in, type_into, wait_for_element

Shoot = Callable[[str], Path]
PAGE = "/admin/maintenance-windows/"


def _row(browser: WebDriver, name: str):  # type: ignore[no-untyped-def]
    return browser.find_element(By.CSS_SELECTOR, f"tr[data-window='{name}']")


def test_an_admin_previews_adds_and_ends_maintenance_windows(
    browser: WebDriver, base_url: str, sessions: sessionmaker[Session], screenshot: Shoot
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    with sessions.begin() as session:
        session.add(
            MaintenanceWindow(name="core upgrade", starts_at=now - timedelta(minutes=20),
                              ends_at=now + timedelta(hours=2), hosts=["core-sw-*"], teams=[],
                              rule_ids=[], oid_prefixes=[], action="suppress", summary_alert=True)
        )  # fmt: skip
    log_in(browser, base_url, "alice")
    browser.get(f"{base_url}{PAGE}")
    assert "open" in _row(browser, "core upgrade").find_element(By.CLASS_NAME, "window-state").text

    type_into(browser, "w-name", "weekly patching")
    type_into(browser, "w-timezone", "Europe/Berlin")
    type_into(browser, "w-starts", "2026-03-01T02:00")
    type_into(browser, "w-duration", "120")
    type_into(browser, "w-rrule", "FREQ=WEEKLY;BYDAY=SU")
    type_into(browser, "w-teams", "DBA")
    browser.find_element(By.ID, "w-action").send_keys("downgrade")
    browser.find_element(By.ID, "window-preview-button").click()
    preview = wait_for_element(browser, "#window-preview").text
    lines = [line for line in preview.splitlines()[1:] if line.strip()]
    assert len(lines) == 5, preview
    # Sundays at 02:00 Berlin: 01:00 UTC in winter, 00:00 UTC in summer.
    assert all(("T01:00:00+00:00" in line) or ("T00:00:00+00:00" in line) for line in lines)
    with sessions() as session:  # a preview saves nothing
        assert session.scalars(select(MaintenanceWindow.name)).all() == ["core upgrade"]

    type_into(browser, "w-name", "weekly patching")  # the form kept its values; the name is retyped
    type_into(browser, "w-reason", "CHG-1234 weekly DB patching")
    browser.find_element(By.ID, "window-save").click()
    WebDriverWait(browser, 10).until(lambda b: "added" in b.page_source)
    row = _row(browser, "weekly patching")
    assert "FREQ=WEEKLY;BYDAY=SU" in row.text and "teams: DBA" in row.text
    occurrences = row.find_element(By.CLASS_NAME, "next-occurrences").text.splitlines()
    assert len(occurrences) == 5
    screenshot("maintenance-windows")

    ending = _row(browser, "core upgrade")
    ending.find_element(By.NAME, "reason").send_keys("upgrade finished early")
    ending.find_element(By.XPATH, ".//button[text()='End now']").click()
    WebDriverWait(browser, 10).until(lambda b: "ended now" in b.page_source)
    assert (
        "closed" in _row(browser, "core upgrade").find_element(By.CLASS_NAME, "window-state").text
    )

    with sessions() as session:
        audit = session.execute(
            select(ConfigAuditLog.operation, ConfigAuditLog.changed_by, ConfigAuditLog.reason)
            .where(ConfigAuditLog.table_name == "maintenance_windows")
            .order_by(ConfigAuditLog.id)
        ).all()
    assert [tuple(row) for row in audit] == [
        ("CREATE", "alice", "CHG-1234 weekly DB patching"),
        ("UPDATE", "alice", "upgrade finished early"),
    ]
