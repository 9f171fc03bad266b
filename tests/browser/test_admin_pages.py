"""The admin UI in headless Chromium: what a person does, page by page, on a real running web app."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.classify.audit import insert_audit_rows
from mutt_app.db.models import AlertRule, ConfigAuditLog, DeadLetter, EventAuditLog
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.holdback import flapping
from mutt_app.holdback.flapping import FlapDetector, Transition
from tests.browser.conftest import flashes, log_in, set_field, type_into, wait_for_element

Shoot = Callable[[str], Path]


def _rule(sessions: sessionmaker[Session], **fields: object) -> int:
    values = {
        "match_type": "contains",
        "priority": 100,
        "prod_handling": "Ticket_only",
        "dev_handling": "Suppress",
        "team_assignment": "NETO",
        **fields,
    }
    with sessions.begin() as session:
        rule = AlertRule(**values)
        session.add(rule)
        session.flush()
        return rule.id


def test_an_admin_creates_a_rule_with_a_reason_and_finds_it_in_the_list_and_the_audit(
    browser: WebDriver, base_url: str, sessions: sessionmaker[Session], screenshot: Shoot
) -> None:
    _rule(sessions, match_string="BGP-5-ADJCHANGE", priority=700, team_assignment="WAN")
    log_in(browser, base_url, "alice")
    browser.get(f"{base_url}/admin/rules/new/")
    set_field(browser, "match_type", "regex")
    type_into(browser, "match_string", r"LINK-3-UPDOWN.*down")
    type_into(browser, "priority", "850")
    set_field(browser, "prod_handling", "Page_and_ticket")
    set_field(browser, "dev_handling", "Email_only")
    type_into(browser, "team_assignment", "NETO")
    type_into(browser, "reason", "Interface flaps page the network team")
    screenshot("rule-edit")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit][value='Save']").click()
    WebDriverWait(browser, 10).until(lambda b: "/admin/rules/new" not in b.current_url)
    assert "successfully" in flashes(browser).lower(), flashes(browser)

    with sessions() as session:
        rule = session.scalars(select(AlertRule).where(AlertRule.priority == 850)).one()
    assert (rule.match_type, rule.match_string, rule.prod_handling) == (
        "regex",
        r"LINK-3-UPDOWN.*down",
        "Page_and_ticket",
    )
    browser.get(f"{base_url}/admin/rules/")
    table = browser.find_element(By.CSS_SELECTOR, "table.model-list").text
    assert r"LINK-3-UPDOWN.*down" in table and "BGP-5-ADJCHANGE" in table
    screenshot("rules-list")

    browser.get(f"{base_url}/admin/config-audit/")
    audit = browser.find_element(By.CSS_SELECTOR, "table.model-list").text
    assert "Interface flaps page the network team" in audit and "alice" in audit
    screenshot("config-audit")
    with sessions() as session:
        row = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.table_name == "alert_rules")
        ).one()
    assert (row.operation, row.record_id, row.changed_by) == ("CREATE", rule.id, "alice")


def test_a_refused_regex_shows_the_engines_message_and_saves_nothing(
    browser: WebDriver, base_url: str, sessions: sessionmaker[Session]
) -> None:
    log_in(browser, base_url, "alice")
    browser.get(f"{base_url}/admin/rules/new/")
    set_field(browser, "match_type", "regex")
    type_into(browser, "match_string", "(unclosed")
    type_into(browser, "team_assignment", "NETO")
    type_into(browser, "reason", "try")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit][value='Save']").click()
    wait_for_element(browser, ".alert-danger")
    assert "Not a valid rule" in flashes(browser)
    with sessions() as session:
        assert session.scalars(select(AlertRule)).all() == []


def test_the_rule_tester_names_the_winner_and_the_rules_it_shadows(
    browser: WebDriver, base_url: str, sessions: sessionmaker[Session], screenshot: Shoot
) -> None:
    high = _rule(
        sessions,
        match_string="LINK-3-UPDOWN",
        priority=900,
        prod_handling="Page_and_ticket",
        team_assignment="WAN",
    )
    low = _rule(sessions, match_type="regex", match_string="changed state to (up|down)")
    log_in(browser, base_url, "victor")
    browser.get(f"{base_url}/admin/rule-tester/")
    browser.find_element(By.CSS_SELECTOR, "#tester-form button[type=submit]").click()  # the sample
    winner = wait_for_element(browser, "#winning-rule").text
    assert f"#{high}" in winner
    assert browser.find_element(By.ID, "handling").text == "Page_and_ticket"
    assert browser.find_element(By.ID, "team").text == "WAN"
    assert f"#{low}" in browser.find_element(By.ID, "shadowed").text
    screenshot("rule-tester")


def test_an_operator_replays_a_dead_letter(
    browser: WebDriver,
    base_url: str,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    screenshot: Shoot,
) -> None:
    with sessions.begin() as session:
        letters = [
            add_dead_letter(
                session,
                task_name="mutt.forward_to_moog",
                queue="mutt.forward",
                payload={"alert": {"external_id": str(uuid.uuid4()), "signature": f"r{i}::x"}},
                error=f"Moog answered 400: rejected alert {i}",
                backoff_base=60,
                attempts=i + 1,
            )
            for i in range(3)
        ]
        session.flush()
        first = letters[0].id
    log_in(browser, base_url, "olga")
    browser.get(f"{base_url}/admin/dlq/")
    assert "rejected alert 2" in browser.find_element(By.ID, "dlq-items").text
    screenshot("dlq")
    browser.find_element(By.CSS_SELECTOR, f"tr[data-item-id='{first}'] a").click()
    assert '"signature": "r0::x"' in wait_for_element(browser, "#payload").text
    form = browser.find_element(By.ID, "replay-form")
    form.find_element(By.NAME, "reason").send_keys("Moog accepts these again")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: "replayed" in flashes(b))
    assert redis_client.llen("mutt.forward") == 1
    with sessions() as session:
        assert session.get(DeadLetter, first) is None
        row = session.scalars(
            select(ConfigAuditLog).where(ConfigAuditLog.table_name == "dead_letters")
        ).one()
    assert (row.changed_by, row.reason) == ("olga", "Moog accepts these again")


def test_an_operator_changes_the_dynamic_configuration(
    browser: WebDriver, base_url: str, redis_client: redis.Redis, screenshot: Shoot
) -> None:
    log_in(browser, base_url, "olga")
    browser.get(f"{base_url}/admin/dynamic-config/")
    field = browser.find_element(By.NAME, "moog_rate_limit")
    field.clear()
    field.send_keys("40")
    browser.find_element(By.CSS_SELECTOR, "#config-form input[name=reason]").send_keys(
        "Moog's new quota"
    )
    browser.find_element(By.CSS_SELECTOR, "#config-form button[type=submit]").click()
    WebDriverWait(browser, 10).until(lambda b: "Changed" in flashes(b))
    assert redis_client.get("mutt:config:moog_rate_limit") == b"40"
    assert "mutt.remediate_dlq" in browser.find_element(By.ID, "beat-table").text
    screenshot("dynamic-config")


def _traffic(sessions: sessionmaker[Session], rules: list[int]) -> None:
    # An hour of audited events: some minutes busier than others, most matching a rule.
    now = datetime.now(UTC)
    rows = []
    for minute in range(60):
        for i in range(5 + (minute * 7) % 23):
            rule = rules[i % len(rules)] if i % 6 else None
            # Some of the rules' events held back: the busiest minutes over the storm budget.
            held = None
            if rule is not None and i >= 14:
                held = "storm_budget"
            elif rule is not None and i % 5 == 1:
                held = "duplicate"
            moment = now - timedelta(minutes=minute, seconds=i % 50)
            rows.append(
                {
                    "event_timestamp": moment,
                    "received_at": moment,
                    "hostname": f"edge-{i % 4:02d}" if rule is None else f"core-{i % 9:02d}",
                    "message": "m",
                    "source": "syslog",
                    "syslog_severity": 3,
                    "trap_oid": None,
                    "matched_rule_id": rule,
                    "handling_decision": "Ticket_only" if rule else "unhandled",
                    "team_assignment": "NETO",
                    "is_dev": False,
                    "forwarded_to_moog": bool(rule) and held is None,
                    "held_reason": held,
                    "correlation_id": str(uuid.uuid4()),
                    "raw": None,
                }
            )
    with sessions.begin() as session:
        insert_audit_rows(session, rows)


CANVAS_INK = """
const canvas = document.getElementById(arguments[0]);
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let ink = 0;
for (let i = 3; i < data.length; i += 4) { if (data[i] > 0) ink++; }
return ink;
"""


def test_the_dashboard_draws_its_charts_from_live_figures(
    browser: WebDriver,
    base_url: str,
    sessions: sessionmaker[Session],
    redis_client: redis.Redis,
    screenshot: Shoot,
) -> None:
    rules = [
        _rule(sessions, match_string="LINK-3-UPDOWN", priority=900),
        _rule(sessions, match_string="BGP-5-ADJCHANGE", priority=800, team_assignment="WAN"),
        _rule(sessions, match_string="SYS-2-MALLOCFAIL", priority=700),
    ]
    _traffic(sessions, rules)
    # A link flapping now: LINK-UP clears LINK-3-UPDOWN, and core-01 went down and up six times.
    link_up = _rule(sessions, match_string="LINK-UP", priority=600, clears_rule_id=rules[0])
    pair = f"core-01:{rules[0]}"
    FlapDetector(redis_client, flapping.PREFIX, 60).observe(
        "browser-flaps",
        [Transition(pair, side == "p") for side in "pcpcpcpcpcpc"],
        {pair: b'{"custom_info": {}}'},
        transitions=5,
        within_seconds=600,
        quiet_seconds=600,
    )
    redis_client.rpush("mutt.classify", *[f"m{i}" for i in range(12)])
    redis_client.rpush("mutt.forward.page", "p1", "p2")
    log_in(browser, base_url, "victor")
    browser.get(f"{base_url}/")
    WebDriverWait(browser, 15).until(
        lambda b: b.execute_script("return window.muttDashboard && window.muttDashboard.polls")
    )
    charts = browser.execute_script(
        "const c = window.muttDashboard.charts;"
        " return {events: c.events.data.datasets[0].data.reduce((a, b) => a + b, 0),"
        " rules: c.rules.data.labels.length, chart: typeof Chart};"
    )
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(EventAuditLog))
    assert charts["chart"] == "function"  # Chart.js loaded from the app itself
    assert 0 < charts["events"] <= total
    assert charts["rules"] == 3
    for canvas in ("chart-events", "chart-queues", "chart-rules"):
        assert browser.execute_script(CANVAS_INK, canvas) > 500, f"{canvas} is blank"
    assert browser.find_element(By.ID, "queue-classify").text == "12"
    assert browser.find_element(By.ID, "queue-page").text == "2"  # the page lane
    assert browser.find_element(By.ID, "circuit-state").text == "CLOSED"
    assert float(browser.find_element(By.ID, "eps-1h").text) > 0
    assert "edge-" in browser.find_element(By.ID, "top-hosts").text
    # The storm panel: held back by reason, who storms, what flaps.
    held = browser.find_element(By.ID, "held-by-reason").text
    assert "storm_budget" in held and "duplicate" in held and "shed 0" in held
    assert "core-" in browser.find_element(By.ID, "storming-devices").text
    assert "LINK-3-UPDOWN" in browser.find_element(By.ID, "storming-rules").text
    assert browser.find_element(By.ID, "flapping-count").text == "1"
    flaps = browser.find_element(By.ID, "flapping-pairs").text
    assert "core-01" in flaps and f"#{rules[0]}" in flaps and f"#{link_up}" in flaps
    # The unhandled templates panel renders for a viewer, without the admin's "create a rule".
    templates = browser.find_element(By.ID, "unhandled-templates")
    assert "edge-" in templates.text
    assert templates.find_elements(By.CSS_SELECTOR, "a.create-rule") == []
    # It keeps polling: a second answer arrives without reloading the page.
    WebDriverWait(browser, 20).until(
        lambda b: b.execute_script("return window.muttDashboard.polls") >= 2
    )
    screenshot("dashboard")


def test_an_admin_creates_a_rule_from_an_unhandled_template_on_the_dashboard(
    browser: WebDriver, base_url: str, sessions: sessionmaker[Session], screenshot: Shoot
) -> None:
    now = datetime.now(UTC)
    messages = [
        "BGP neighbor 10.0.{n}.1 Down: hold time expired after {n}ms",
        "Port 00:11:22:33:44:{n:02x} moved from Gi0/1 to Gi0/2",
        "Login failed for user admin from 2001:db8::{n:x} port 4{n:04d}",
    ]
    rows = []
    for n in range(1, 31):
        kind = 0 if n <= 18 else 1 if n <= 26 else 2
        moment = now - timedelta(minutes=n)
        rows.append(
            {
                "event_timestamp": moment,
                "received_at": moment,
                "hostname": f"edge-{n % 4:02d}",
                "message": messages[kind].format(n=n),
                "source": "syslog",
                "syslog_severity": 4,
                "trap_oid": None,
                "matched_rule_id": None,
                "handling_decision": "Log_only",
                "team_assignment": "NETO",
                "is_dev": False,
                "forwarded_to_moog": False,
                "held_reason": "unmatched",
                "correlation_id": str(uuid.uuid4()),
                "raw": None,
            }
        )
    with sessions.begin() as session:
        insert_audit_rows(session, rows)
    log_in(browser, base_url, "alice")
    browser.get(f"{base_url}/")
    panel = wait_for_element(browser, "#unhandled-templates a.create-rule", timeout=15)
    table = browser.find_element(By.ID, "unhandled-templates").text
    assert "BGP neighbor <ip> Down: hold time expired after <n>" in table
    assert "Port <mac> moved from Gi0/1 to Gi0/2" in table
    assert "Login failed for user admin from <ip> port <n>" in table
    first_row = browser.find_element(By.CSS_SELECTOR, "#unhandled-templates tbody tr").text
    assert first_row.startswith("BGP neighbor <ip>") and " 18 4 " in f" {first_row} "
    screenshot("unhandled-templates")

    panel.click()  # the busiest template's link: the rule form, filled in
    WebDriverWait(browser, 10).until(lambda b: "/admin/rules/new" in b.current_url)
    pattern = browser.find_element(By.ID, "match_string").get_attribute("value")
    assert browser.find_element(By.ID, "match_type").get_attribute("value") == "regex"
    assert browser.find_element(By.ID, "team_assignment").get_attribute("value") == "NETO"
    type_into(browser, "reason", "BGP session drops were unhandled")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit][value='Save']").click()
    WebDriverWait(browser, 10).until(lambda b: "/admin/rules/new" not in b.current_url)
    assert "successfully" in flashes(browser).lower(), flashes(browser)
    with sessions() as session:
        rule = session.scalars(select(AlertRule)).one()
    assert (rule.match_type, rule.match_string) == ("regex", pattern)
    assert pattern.startswith("^") and "BGP\\s+neighbor" in pattern
