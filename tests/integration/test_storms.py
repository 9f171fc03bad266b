"""Storm budgets against a real Redis (and, through classify_batch, PostgreSQL)."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import orjson
import pytest
import redis
from sqlalchemy import select

from mutt_app import metrics
from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, EventAuditLog
from mutt_app.holdback import storms
from mutt_app.holdback.storms import Budgeted, StormBudgets
from mutt_app.runtime import Runtime, runtime_of
from tests.factories import wire_event

PREFIX = "mutt:storm"
LABEL = orjson.dumps({"scope": "device", "name": "core-sw-01", "alert": {"source": "core-sw-01"}})


def _budgets(client: redis.Redis) -> StormBudgets:
    return StormBudgets(client, PREFIX, 600)


def _observe(
    shared: StormBudgets,
    batch: str,
    alerts: list[Budgeted],
    budgets: dict[str, int],
    window: int = 60,
) -> list[bool]:
    return shared.observe(batch, alerts, budgets, {s: LABEL for s in budgets}, window)


def _window(client: redis.Redis, scope: str) -> dict[str, str]:
    raw = client.hgetall(f"{PREFIX}:window:{scope}")
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_past_the_device_budget_alerts_are_held_and_counted_with_their_template(
    redis_client: redis.Redis,
) -> None:
    shared = _budgets(redis_client)
    alerts = [Budgeted("device:ticket:sw", None, "link down") for _ in range(5)]
    alerts.append(Budgeted("device:ticket:sw", None, "fan failed"))
    held = _observe(shared, "b1", alerts, {"device:ticket:sw": 3})
    assert held == [False, False, False, True, True, True]
    window = _window(redis_client, "device:ticket:sw")
    assert (window["sent"], window["count"]) == ("3", "3")
    assert (window["m:link down"], window["m:fan failed"]) == ("2", "1")
    # It held alerts: it stays until its summary is sent, and it is due when it closes.
    assert redis_client.pttl(f"{PREFIX}:window:device:ticket:sw") == -1
    assert redis_client.zscore(f"{PREFIX}:due", f"{PREFIX}:window:device:ticket:sw") == float(
        window["closes"]
    )
    # The next batch of the same window: everything is held.
    assert _observe(shared, "b2", alerts[:2], {"device:ticket:sw": 3}) == [True, True]
    assert _window(redis_client, "device:ticket:sw")["count"] == "5"


def test_a_window_that_held_nothing_just_expires(redis_client: redis.Redis) -> None:
    shared = _budgets(redis_client)
    assert _observe(
        shared, "b1", [Budgeted("device:ticket:sw", None, "x")], {"device:ticket:sw": 3}
    ) == [False]
    assert 0 < redis_client.pttl(f"{PREFIX}:window:device:ticket:sw") <= 60_000
    assert redis_client.zcard(f"{PREFIX}:due") == 0


def test_an_alert_passes_only_while_both_budgets_have_room_and_counts_in_both(
    redis_client: redis.Redis,
) -> None:
    shared = _budgets(redis_client)
    budgets = {"device:ticket:a": 10, "device:ticket:b": 10, "rule:ticket:7": 3}
    alerts = [
        Budgeted("device:ticket:a", "rule:ticket:7", "m"),
        Budgeted("device:ticket:b", "rule:ticket:7", "m"),
        Budgeted("device:ticket:a", "rule:ticket:7", "m"),
        Budgeted("device:ticket:b", "rule:ticket:7", "m"),  # the rule's budget is spent
        Budgeted("device:ticket:b", None, "m"),  # no rule budget: only the device's counts
    ]
    assert _observe(shared, "b1", alerts, budgets) == [False, False, False, True, False]
    assert _window(redis_client, "rule:ticket:7")["count"] == "1"  # held by the rule's budget
    assert _window(redis_client, "device:ticket:a")["sent"] == "2"
    assert _window(redis_client, "device:ticket:b")["sent"] == "2"
    assert _window(redis_client, "device:ticket:b")["count"] == "0"


def test_a_redelivered_batch_gets_the_same_answer_and_counts_nothing_twice(
    redis_client: redis.Redis,
) -> None:
    shared = _budgets(redis_client)
    alerts = [Budgeted("device:ticket:sw", None, "m") for _ in range(4)]
    first = _observe(shared, "b1", alerts, {"device:ticket:sw": 2})
    again = _observe(shared, "b1", alerts, {"device:ticket:sw": 2})
    assert first == again == [False, False, True, True]
    window = _window(redis_client, "device:ticket:sw")
    assert (window["sent"], window["count"]) == ("2", "2")
    assert 0 < redis_client.ttl(f"{PREFIX}:memo:b1") <= 600


def test_a_closed_window_gives_one_summary_and_the_next_alert_opens_a_new_window(
    redis_client: redis.Redis,
) -> None:
    shared = _budgets(redis_client)
    alerts = [Budgeted("device:ticket:sw", None, f"msg {i % 3}") for i in range(9)]
    _observe(shared, "b1", alerts, {"device:ticket:sw": 2}, window=1)
    assert shared.close_due() == 0  # still open
    time.sleep(1.1)
    # The next alert finds the window closed: it moves it to the closed set and opens a new one.
    assert _observe(shared, "b2", alerts[:1], {"device:ticket:sw": 2}, window=1) == [False]
    sent: list[dict] = []
    shared.flush(storms.summary, sent.extend)
    assert shared.flush(storms.summary, sent.extend) == []
    (summary,) = sent
    assert summary["custom_info"]["storm_held"] == 7
    assert summary["custom_info"]["storm_top_messages"] == [
        {"template": "msg 2", "count": 3},  # the first two (msg 0, msg 1) were sent
        {"template": "msg 0", "count": 2},
        {"template": "msg 1", "count": 2},
    ]
    assert summary["description"].startswith("core-sw-01: 7 alerts held in 1 s; top messages:")
    assert summary["signature"] == "core-sw-01::storm"
    assert _window(redis_client, "device:ticket:sw")["sent"] == "1"

    # The beat path: a window that closes with nobody arriving is moved by the flush itself.
    _observe(shared, "b3", alerts, {"device:ticket:sw": 2}, window=1)
    time.sleep(1.1)
    (again,) = shared.flush(storms.summary, lambda alerts: None)
    assert again["custom_info"]["storm_held"] == 8
    assert again["external_id"] != summary["external_id"]


def test_workers_racing_agree_on_the_exact_budget(redis_url: str) -> None:
    forwarded: list[int] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        client = redis.Redis.from_url(redis_url)
        shared = _budgets(client)
        for b in range(25):
            alerts = [Budgeted("device:ticket:sw", "rule:ticket:1", "m") for _ in range(8)]
            held = _observe(
                shared, f"w{n}-{b}", alerts, {"device:ticket:sw": 50, "rule:ticket:1": 1000}
            )
            with lock:
                forwarded.append(held.count(False))
        client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(forwarded) == 50
    client = redis.Redis.from_url(redis_url)
    raw = client.hget(f"{PREFIX}:window:device:ticket:sw", "count")
    client.close()
    assert int(raw or 0) == 4 * 25 * 8 - 50


def test_classify_holds_past_the_budget_audits_each_once_and_pages_keep_their_own_budget(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    runtime.dynamic_config.set("storm_budget_per_device", 3)
    runtime.dynamic_config.set("storm_budget_per_rule", 0)
    runtime.dynamic_config.set("storm_window_seconds", 1)
    runtime.dynamic_config.set("dedup_window_seconds", 0)
    with runtime.sessions.begin() as session:
        session.add_all(
            [
                AlertRule(match_string="changed state", match_type="contains",
                          prod_handling="Ticket_only", dev_handling="Log_only",
                          team_assignment="NETO"),
                AlertRule(match_string="CRITICAL", match_type="contains", priority=900,
                          prod_handling="Page_and_ticket", dev_handling="Log_only",
                          team_assignment="NETO"),
            ]
        )  # fmt: skip
    batch = [wire_event("core-sw-01", f"Gi0/{i} changed state to down") for i in range(6)]
    batch.append(wire_event("core-sw-01", "CRITICAL power supply failed"))
    assert classify_batch(runtime, app, batch)["audited"] == 7
    assert classify_batch(runtime, app, batch)["audited"] == 0  # redelivered: nothing twice
    with runtime.sessions() as session:
        rows = session.execute(
            select(EventAuditLog.correlation_id, EventAuditLog.forwarded_to_moog,
                   EventAuditLog.held_reason)
        ).all()  # fmt: skip
    by_id = {str(r.correlation_id): r for r in rows}
    verdicts = [
        (by_id[w["correlation_id"]].forwarded_to_moog, by_id[w["correlation_id"]].held_reason)
        for w in batch
    ]
    # Three tickets pass, three are held; the page from the same device is not held behind them.
    assert verdicts == [(True, None)] * 3 + [(False, "storm_budget")] * 3 + [(True, None)]

    time.sleep(1.1)
    sent: list[dict] = []
    assert storms.Storms().flush(runtime, sent.extend) == 1
    assert storms.Storms().flush(runtime, sent.extend) == 0
    (summary,) = sent
    assert summary["source"] == "core-sw-01"
    assert summary["custom_info"]["storm_held"] == 3
    assert summary["custom_info"]["storm_top_messages"] == [
        {"template": "Gi0/3 changed state to down", "count": 1},
        {"template": "Gi0/4 changed state to down", "count": 1},
        {"template": "Gi0/5 changed state to down", "count": 1},
    ]
    assert uuid.UUID(summary["external_id"])


def test_a_window_counts_at_most_max_templates_and_the_rest_as_other(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    # A sender inventing messages on one device past its budget: the window keeps MAX_TEMPLATES
    # templates for its summary and counts the rest, so it cannot grow with them.
    shared = _budgets(redis_client)
    invented = storms.MAX_TEMPLATES + 50
    alerts = [Budgeted("device:ticket:sw", None, "the budget's one")]
    alerts += [Budgeted("device:ticket:sw", None, f"invented {n}") for n in range(invented)]
    alerts += [Budgeted("device:ticket:sw", None, "invented 0")] * 3  # a kept one still counts
    held = _observe(shared, "b1", alerts, {"device:ticket:sw": 1}, window=1)
    assert held.count(True) == invented + 3
    window = _window(redis_client, "device:ticket:sw")
    assert sum(1 for field in window if field.startswith("m:")) == storms.MAX_TEMPLATES
    assert (window["templates"], window["other"]) == (str(storms.MAX_TEMPLATES), "50")
    assert window["m:invented 0"] == "4"

    time.sleep(1.1)
    runtime = Runtime(settings)
    sent: list[dict] = []
    overflow = metrics.HELD_WINDOW_OVERFLOW.labels("storm")._value.get()
    with caplog.at_level(logging.WARNING, "mutt_app.holdback.storms"):
        assert storms.Storms().flush(runtime, sent.extend) == 1
    runtime.close()
    (summary,) = sent
    assert summary["custom_info"]["storm_held"] == invented + 3
    assert summary["custom_info"]["storm_other_messages"] == 50
    assert summary["description"].endswith("; 50 of other messages")
    assert metrics.HELD_WINDOW_OVERFLOW.labels("storm")._value.get() == overflow + 50
    assert f"past the {storms.MAX_TEMPLATES} kept (MAX_TEMPLATES)" in caplog.text
