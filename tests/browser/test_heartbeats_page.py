"""The heartbeats page in headless Chromium: an admin adds a heartbeat with a reason; the hosts
quiet now are listed first, and the dashboard's panel shows them too."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from mutt_app.db.models import ConfigAuditLog, Heartbeat
from mutt_app.runtime import Runtime
from mutt_app.watch import heartbeats
from tests.browser.conftest import flashes, log_in, set_field, type_into, wait_for_element

Shoot = Callable[[str], Path]


def test_an_admin_adds_a_heartbeat_and_sees_the_quiet_hosts_first(
    browser: WebDriver,
    base_url: str,
    sessions: sessionmaker[Session],
    settings: Settings,
    redis_client: redis.Redis,
    screenshot: Shoot,
) -> None:
    with sessions.begin() as session:
        session.add(Heartbeat(name="core routers", host="core-rtr-*", interval_minutes=5))
        session.add(Heartbeat(name="payments db", host="pay-db-01", interval_minutes=15))
    now = time.time()
    redis_client.set(heartbeats.SINCE_KEY, int((now - 3600) * 1000))
    redis_client.zadd(
        heartbeats.LAST_SEEN_KEY,
        {"core-rtr-01": (now - 60) * 1000, "core-rtr-02": (now - 1900) * 1000},
    )
    redis_client.zadd(heartbeats.LAST_SEEN_KEY, {"pay-db-01": (now - 120) * 1000})

    log_in(browser, base_url, "alice")
    browser.get(f"{base_url}/admin/heartbeats/new/")
    type_into(browser, "name", "edge switches")
    type_into(browser, "host", "edge-sw-*")
    type_into(browser, "interval_minutes", "10")
    set_field(browser, "handling", "Page_and_ticket")
    type_into(browser, "reason", "edge switches go silent when their uplink dies")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit][value='Save']").click()
    WebDriverWait(browser, 10).until(lambda b: "/admin/heartbeats/new" not in b.current_url)
    assert "successfully" in flashes(browser).lower(), flashes(browser)
    with sessions() as session:
        audit = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.table_name == "heartbeats")
        ).one()
    assert (audit.operation, audit.changed_by) == ("CREATE", "alice")
    assert audit.reason == "edge switches go silent when their uplink dies"

    # The check beat runs: core-rtr-02 has been quiet for over half an hour.
    heartbeats.check(Runtime(settings), lambda alerts: None)
    browser.get(f"{base_url}/admin/heartbeats/")
    quiet = wait_for_element(browser, "#quiet-hosts").text
    assert "core-rtr-02" in quiet and "core routers" in quiet and "core-rtr-01" not in quiet
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "table.model-list td.col-name")]
    assert names == ["core routers", "edge switches", "payments db"], names
    screenshot("heartbeats")

    browser.get(f"{base_url}/")
    WebDriverWait(browser, 15).until(
        lambda b: "core-rtr-02" in b.find_element(By.ID, "heartbeat-quiet").text
    )
    assert browser.find_element(By.ID, "heartbeat-quiet-count").text == "1"
