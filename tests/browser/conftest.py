"""Browser tests: headless Chromium (Debian's, through its chromedriver) against a real web app.

The web app is the real ``create_app`` served by werkzeug's HTTP server in a thread on a free port,
on the test's own PostgreSQL and Redis. Screenshots of the pages go to the test's tmp directory, or
to ``$MUTT_SCREENSHOTS`` when set (``make screenshots`` sets it to docs/screenshots).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from pydantic import SecretStr
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from mutt_app.config import Settings
from mutt_app.web import create_app
from tests.conftest import close_web_app
from tests.services import free_port
from tests.web import PASSWORD

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
API_KEY = "browser-test-key"
WIDTH = 1400

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(
        "chromium and chromium-driver are not installed (bash .ci/bootstrap installs them)",
        allow_module_level=True,
    )


@pytest.fixture
def web_app(settings: Settings, users: None) -> Iterator[Flask]:
    app = create_app(
        settings.model_copy(
            update={"webui_cookie_secure": False, "webui_api_key": SecretStr(API_KEY)}
        )
    )
    try:
        yield app
    finally:
        close_web_app(app)


@pytest.fixture
def base_url(web_app: Flask) -> Iterator[str]:
    """The web app served over real HTTP on 127.0.0.1."""
    port = free_port()
    server = make_server("127.0.0.1", port, web_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The console, where Chromium reports what the Content-Security-Policy refused.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", f"--window-size={WIDTH},900", "--lang=en-GB"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot(browser: WebDriver, tmp_path: Path) -> Callable[[str], Path]:
    """Save the whole page as ``<name>.png`` (to $MUTT_SCREENSHOTS or the test's tmp dir)."""
    directory = Path(os.environ.get("MUTT_SCREENSHOTS") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)

    def shoot(name: str) -> Path:
        # The whole page, not just the window: make the viewport as tall as the document.
        height = int(browser.execute_script("return document.documentElement.scrollHeight"))
        metrics = {"width": WIDTH, "height": min(max(height, 600), 3000), "deviceScaleFactor": 1,
                   "mobile": False}  # fmt: skip
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            path = directory / f"{name}.png"
            assert browser.save_screenshot(str(path)), f"screenshot {name} failed"
        finally:
            browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        return path

    return shoot


def wait_for_element(browser: WebDriver, css: str, timeout: float = 10):  # type: ignore[no-untyped-def]
    return WebDriverWait(browser, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def log_in(browser: WebDriver, base_url: str, username: str) -> None:
    """Log in through the /login form, as a person does."""
    browser.get(f"{base_url}/login")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: "/login" not in b.current_url)


def set_field(browser: WebDriver, field: str, value: str) -> None:
    """Set a form field's value, a select's too."""
    # Flask-Admin dresses selects with Select2 (the real <select> is hidden); set the value the
    # form submits and tell the widget.
    browser.execute_script(
        "const el = document.getElementById(arguments[0]); el.value = arguments[1];"
        " el.dispatchEvent(new Event('change', {bubbles: true}));",
        field,
        value,
    )


def type_into(browser: WebDriver, field: str, value: str) -> None:
    """Replace a text field's content by typing ``value``."""
    element = browser.find_element(By.ID, field)
    element.clear()
    element.send_keys(value)


def flashes(browser: WebDriver) -> str:
    """The text of the page's flashed messages."""
    return " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".alert"))


def csp_refusals(browser: WebDriver) -> list[str]:
    """What the Content-Security-Policy refused, from the browser's console."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if "Content Security Policy" in entry["message"] or "Refused to" in entry["message"]
    ]
