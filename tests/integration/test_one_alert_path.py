"""One path to Moog: heartbeat alerts, meta-alerts and the stages' summaries pass the same
hold-back stages and lanes as classify's alerts (real PostgreSQL, Redis and Celery)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import update

from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, Heartbeat, MaintenanceWindow
from mutt_app.events.schema import validate_item
from mutt_app.holdback.base import HEARTBEAT, Held
from mutt_app.holdback.pipeline import Passage, to_moog
from mutt_app.rules.cache import bump_rules_version
from mutt_app.runtime import Runtime, runtime_of
from mutt_app.tasks.maintenance import check_heartbeats, flush_held
from mutt_app.watch import heartbeats

TICKET = "mutt.forward"


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Any:
    # Watching began long ago: hosts never heard from are overdue at once.
    redis_client.set(heartbeats.SINCE_KEY, int((time.time() - 3600) * 1000))
    # The storm budgets on every heartbeat alert, shown over 10,000 quiet hosts: the per-heartbeat
    # cap (HEARTBEAT_MAX_QUIET_HOSTS, tests/integration/test_heartbeat_wide_globs.py) is above it.
    app = Runtime(settings.model_copy(update={"heartbeat_max_quiet_hosts": 10_000})).celery
    app.loader.import_default_modules()
    return app


def _heartbeat(runtime: Runtime, **fields: Any) -> int:
    with runtime.sessions.begin() as session:
        row = Heartbeat(interval_minutes=1, **fields)
        session.add(row)
        session.flush()
        session.execute(
            update(Heartbeat)
            .where(Heartbeat.id == row.id)
            .values(updated_at=datetime.now(UTC) - timedelta(minutes=10))
        )
        return row.id


def _quiet(client: redis.Redis, hosts: list[str], minutes_ago: float = 30) -> None:
    moment = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).timestamp() * 1000
    client.zadd(heartbeats.LAST_SEEN_KEY, dict.fromkeys(hosts, moment))


def _outbox(runtime: Runtime) -> list[dict]:
    """The alerts handed to the forward queue (one outbox entry each)."""
    entries = runtime.outbox.overdue(0, limit=100_000, now=time.time() + 3600)
    return [alert for entry in entries for alert in entry.events]


def _held(reason: str) -> float:
    return REGISTRY.get_sample_value("mutt_alerts_held_total", {"reason": reason}) or 0.0


def test_a_heartbeat_over_10000_quiet_hosts_reaches_moog_within_the_storm_budget(
    app: Any, redis_client: redis.Redis
) -> None:
    runtime = runtime_of(app)
    runtime.dynamic_config.set("storm_budget_per_rule", 500)
    runtime.dynamic_config.set("storm_budget_per_device", 100)
    runtime.dynamic_config.set("storm_window_seconds", 1)
    _heartbeat(runtime, name="edge", host="edge-*", handling="Ticket_only")
    _quiet(redis_client, [f"edge-{i:05d}" for i in range(10_000)])
    held_before = _held("storm_budget")

    result = app.tasks[check_heartbeats.name].apply().get()
    assert result == {"raised": 10_000, "cleared": 0, "quiet": 10_000}  # every episode recorded
    sent = _outbox(runtime)
    assert len(sent) == 500  # the heartbeat's budget, not 10,000 alerts
    assert {a["custom_info"]["heartbeat"] for a in sent} == {"quiet"}
    assert _held("storm_budget") - held_before == 9_500

    time.sleep(1.1)
    assert app.tasks[flush_held.name].apply().get()["storm"] == 1
    assert app.tasks[flush_held.name].apply().get()["storm"] == 0
    summaries = [a for a in _outbox(runtime) if a["type"] == "mutt.storm"]
    assert len(summaries) == 1  # the summary is not counted against the budget that made it
    assert summaries[0]["custom_info"]["storm_held"] == 9_500
    assert summaries[0]["custom_info"]["storm_scope"] == "source"
    assert len(_outbox(runtime)) == 501


def test_a_heartbeat_alert_inside_a_suppressing_window_is_held_for_maintenance(
    app: Any, redis_client: redis.Redis
) -> None:
    runtime = runtime_of(app)
    now = datetime.now(UTC)
    with runtime.sessions.begin() as session:
        session.add(
            MaintenanceWindow(name="db patching", starts_at=now - timedelta(minutes=5),
                              ends_at=now + timedelta(hours=1), hosts=["db-*"], teams=[],
                              rule_ids=[], oid_prefixes=[], action="suppress",
                              summary_alert=True)
        )  # fmt: skip
    bump_rules_version(redis_client)
    _heartbeat(runtime, name="db-01 alive", host="db-01")
    _heartbeat(runtime, name="web-01 alive", host="web-01")
    _quiet(redis_client, ["db-01", "web-01"])
    passages: list[Passage] = []

    def publish(alerts: list[dict]) -> dict[str, Held]:
        passages.append(to_moog(runtime, app, alerts, HEARTBEAT))
        return passages[-1].held

    outcome = heartbeats.check(runtime, publish)
    assert sorted(k.split(":")[1] for k in outcome.raised) == ["db-01", "web-01"]
    (passage,) = passages
    [(held_id, why)] = passage.held.items()
    assert why == Held("maintenance")
    assert [c.hostname for c in passage.forwards] == ["web-01"]
    assert [a["source"] for a in _outbox(runtime)] == ["web-01"]
    assert held_id not in {a["external_id"] for a in _outbox(runtime)}


def _kinds(alerts: list[dict]) -> dict[str, set[str]]:
    """The heartbeat alerts among ``alerts``: episode ids by kind (quiet, cleared)."""
    found: dict[str, set[str]] = {"quiet": set(), "cleared": set()}
    for alert in alerts:
        info = alert.get("custom_info") or {}
        if alert.get("type") == heartbeats.HEARTBEAT_TYPE:
            found[info["heartbeat"]].add(info["heartbeat_episode"])
    return found


def _held_total() -> float:
    return sum(_held(reason) for reason in ("maintenance", "storm_budget", "shed"))


def test_a_glob_past_its_budget_clears_exactly_the_raises_moog_got_and_no_clear_is_held(
    app: Any, redis_client: redis.Redis
) -> None:
    runtime = runtime_of(app)
    runtime.dynamic_config.set("storm_budget_per_rule", 5)
    runtime.dynamic_config.set("storm_budget_per_device", 100)
    runtime.dynamic_config.set("storm_window_seconds", 3600)  # still spent when they talk
    _heartbeat(runtime, name="edge", host="edge-*", handling="Ticket_only")
    hosts = [f"edge-{i:02d}" for i in range(12)]
    _quiet(redis_client, hosts)
    storm_before = _held("storm_budget")

    result = app.tasks[check_heartbeats.name].apply().get()
    assert result == {"raised": 12, "cleared": 0, "quiet": 12}
    raised = _kinds(_outbox(runtime))["quiet"]
    assert len(raised) == 5
    assert _held("storm_budget") - storm_before == 7
    states = [orjson.loads(v) for v in redis_client.hvals(heartbeats.QUIET_KEY)]
    assert {s["episode"] for s in states if s["forwarded"]} == raised
    assert sum(not s["forwarded"] for s in states) == 7

    _quiet(redis_client, hosts, minutes_ago=0)  # they all talk again
    held_before = _held_total()
    result = app.tasks[check_heartbeats.name].apply().get()
    assert result == {"raised": 0, "cleared": 12, "quiet": 0}  # every episode closed
    assert _kinds(_outbox(runtime))["cleared"] == raised  # a clear for each raise Moog got
    assert _held_total() == held_before  # the budget is spent, yet no clear was held
    assert redis_client.hlen(heartbeats.QUIET_KEY) == 0
    assert app.tasks[check_heartbeats.name].apply().get() == {"raised": 0, "cleared": 0, "quiet": 0}
    assert len(_kinds(_outbox(runtime))["cleared"]) == 5


def _suppress(runtime: Runtime, client: redis.Redis, hosts: list[str]) -> None:
    now = datetime.now(UTC)
    with runtime.sessions.begin() as session:
        session.add(
            MaintenanceWindow(name="patching", starts_at=now - timedelta(minutes=5),
                              ends_at=now + timedelta(hours=1), hosts=hosts, teams=[],
                              rule_ids=[], oid_prefixes=[], action="suppress",
                              summary_alert=True)
        )  # fmt: skip
    bump_rules_version(client)


def test_a_raise_held_by_a_suppressing_window_gets_no_clear(
    app: Any, redis_client: redis.Redis
) -> None:
    runtime = runtime_of(app)
    _suppress(runtime, redis_client, ["db-*"])
    _heartbeat(runtime, name="db-01 alive", host="db-01")
    _quiet(redis_client, ["db-01"])
    held_before = _held("maintenance")
    assert app.tasks[check_heartbeats.name].apply().get()["raised"] == 1
    assert _held("maintenance") - held_before == 1
    assert _kinds(_outbox(runtime)) == {"quiet": set(), "cleared": set()}

    _quiet(redis_client, ["db-01"], minutes_ago=0)
    result = app.tasks[check_heartbeats.name].apply().get()
    assert result == {"raised": 0, "cleared": 1, "quiet": 0}  # closed, silently
    assert _kinds(_outbox(runtime)) == {"quiet": set(), "cleared": set()}
    assert _held("maintenance") - held_before == 1  # no clear made, none held
    assert redis_client.hlen(heartbeats.QUIET_KEY) == 0


def test_a_raise_sent_before_a_window_opened_is_cleared_while_the_window_suppresses(
    app: Any, redis_client: redis.Redis
) -> None:
    runtime = runtime_of(app)
    _heartbeat(runtime, name="db-01 alive", host="db-01")
    _quiet(redis_client, ["db-01"])
    assert app.tasks[check_heartbeats.name].apply().get()["raised"] == 1
    (raised,) = _kinds(_outbox(runtime))["quiet"]

    _suppress(runtime, redis_client, ["db-*"])  # the window opens after Moog got the raise
    _quiet(redis_client, ["db-01"], minutes_ago=0)
    held_before = _held("maintenance")
    result = app.tasks[check_heartbeats.name].apply().get()
    assert result == {"raised": 0, "cleared": 1, "quiet": 0}
    assert _kinds(_outbox(runtime))["cleared"] == {raised}
    assert _held("maintenance") == held_before


def _wire(hostname: str, message: str) -> dict:
    event = validate_item(
        {"hostname": hostname, "message": message, "syslog_severity": 3},
        required_fields=("hostname",),
        received_at=datetime.now(UTC),
    )
    return event.to_wire()


def test_meta_alerts_pass_the_storm_budgets_and_the_lanes_as_classify_alerts_do(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings.model_copy(update={"unhandled_threshold": 1})).celery
    runtime = runtime_of(app)
    runtime.dynamic_config.set("storm_budget_per_rule", 2)
    runtime.dynamic_config.set("storm_budget_per_device", 0)
    runtime.dynamic_config.set("storm_window_seconds", 1)
    runtime.dynamic_config.set("dedup_window_seconds", 0)
    with runtime.sessions.begin() as session:
        session.add(
            AlertRule(match_string="changed state", match_type="contains",
                      prod_handling="Ticket_only", dev_handling="Log_only",
                      team_assignment="NETO")
        )  # fmt: skip
    # Four hosts each cross the unhandled threshold: four meta-alerts, in the meta-alerts' budget
    # of two; four tickets of one rule, in that rule's budget of two.
    batch = [_wire(f"sw-{i}", "no rule for this") for i in range(4)]
    batch += [_wire(f"sw-{i}", f"Gi0/{i} changed state to down") for i in range(4)]
    assert classify_batch(runtime, app, batch)["audited"] == 8
    sent = _outbox(runtime)
    metas = [a for a in sent if a["custom_info"]["handling"] == "meta_alert"]
    tickets = [a for a in sent if a["custom_info"]["handling"] == "Ticket_only"]
    assert len(metas) == 2 and len(tickets) == 2

    # Under shedding a meta-alert goes the same way as a classify alert (through the one path,
    # onto the ticket lane); being no Ticket_only alert, it is not shed (backpressure's rule).
    time.sleep(1.1)
    runtime.dynamic_config.set("alerter_queue_shed_threshold", 1)
    runtime.dynamic_config.set("alerter_queue_warn_threshold", 1)
    runtime.dynamic_config.set("alerter_shed_mode", "dlq")
    redis_client.rpush(TICKET, b"backlog")
    shed_before = _held("shed")
    before = {a["external_id"] for a in sent}
    more = [_wire("sw-9", "no rule again"), _wire("sw-9", "Gi0/9 changed state to down")]
    time.sleep(1.1)  # past the backpressure reading every process keeps for a second
    assert classify_batch(runtime, app, more)["audited"] == 2
    handlings = [
        a["custom_info"]["handling"] for a in _outbox(runtime) if a["external_id"] not in before
    ]
    assert handlings == ["meta_alert"]  # the ticket was shed to the dead-letter queue
    assert _held("shed") - shed_before == 1
