"""The event page in headless Chromium: from the event audit, a viewer follows a held event's
link to its story, from there the alert it repeats (sent, with Moog's answer), and a dead-lettered
event's page with Moog's refusal and its dead letter; the Content-Security-Policy refuses nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.config import Settings
from tests.browser.conftest import csp_refusals, log_in, wait_for_element
from tests.event_stories import REFUSED, make_stories, moog_sink

Shoot = Callable[[str], Path]


def _rows(browser: WebDriver, table: str) -> list[str]:
    return [row.text for row in browser.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")]


def test_the_event_page_tells_a_sent_a_held_and_a_dead_lettered_events_story(
    browser: WebDriver,
    base_url: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    screenshot: Shoot,
) -> None:
    with moog_sink() as url:
        stories = make_stories(settings, sessions, url)

    log_in(browser, base_url, "victor")
    browser.get(f"{base_url}/admin/event-audit/")
    link = wait_for_element(browser, f"a.event-link[href$='/event/{stories.held}/']")
    link.click()

    # Held: a duplicate of the sent alert, never posted.
    WebDriverWait(browser, 10).until(lambda b: stories.held in b.current_url)
    assert browser.find_element(By.ID, "event-outcome").text == "held: duplicate"
    assert "within a dedup window of 60 s" in browser.find_element(By.ID, "event-duplicate-of").text
    assert "rule 1" in browser.find_element(By.ID, "event-rule").text
    assert browser.find_element(By.ID, "event-rules-version").text == "1"
    assert browser.find_element(By.ID, "delivery-sent").text == "Not sent to Moog."
    assert "No trace id recorded" in browser.find_element(By.ID, "trace-id").text
    screenshot("event-held")

    # Sent: the alert it repeats, with Moog's answer.
    browser.find_element(By.CSS_SELECTOR, "#event-duplicate-of a").click()
    WebDriverWait(browser, 10).until(lambda b: stories.sent in b.current_url)
    assert browser.find_element(By.ID, "event-outcome").text == "sent to Moog"
    assert browser.find_element(By.ID, "delivery-sent").text.startswith("Sent to Moog at ")
    [attempt] = _rows(browser, "delivery-history")
    assert "delivered 200" in attempt, attempt
    assert not browser.find_elements(By.ID, "dead-letters")
    screenshot("event-sent")

    # Dead-lettered: Moog refused it; its dead letter, linked to the DLQ page.
    browser.get(f"{base_url}/admin/event-audit/event/{stories.dead_lettered}/")
    wait_for_element(browser, "#dead-letters")
    # Classify forwarded it (the audit's word); Moog never took it.
    assert browser.find_element(By.ID, "event-outcome").text == "forwarded"
    assert browser.find_element(By.ID, "event-dead-lettered").text == "dead-lettered"
    assert browser.find_element(By.ID, "delivery-sent").text == "Not sent to Moog."
    attempts = _rows(browser, "delivery-history")
    assert [a.split()[1:3] for a in attempts] == [["rejected", "400"], ["dead_lettered", "400"]]
    [letter] = _rows(browser, "dead-letters")
    assert "mutt.forward_to_moog" in letter and REFUSED in letter, letter
    screenshot("event-dead-lettered")
    browser.find_element(By.CSS_SELECTOR, "#dead-letters a").click()
    WebDriverWait(browser, 10).until(lambda b: "/admin/dlq/" in b.current_url)
    assert browser.find_element(By.ID, "event-link").text == stories.dead_lettered
    assert csp_refusals(browser) == []
