"""The dashboard's figures on a real PostgreSQL and Redis, and the two routes that serve them."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import redis
from flask import Flask
from sqlalchemy import Engine, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, sessionmaker

from mutt_app.classify.audit import insert_audit_rows
from mutt_app.config import Settings
from mutt_app.db.engine import session_factory
from mutt_app.db.models import AlertRule, EventAuditLog, PoisonLetter
from mutt_app.db.partitions import ensure_partitions
from mutt_app.dynamic_config import PREFIX
from mutt_app.forwarding.deadletters import add_dead_letter
from mutt_app.holdback import flapping
from mutt_app.holdback.flapping import FlapDetector, Transition
from mutt_app.watch import dashboard
from tests.web import KEY, login

NOW = datetime(2026, 11, 20, 12, 30, 30, tzinfo=UTC)


def _row(
    moment: datetime, hostname: str = "r1", rule_id: int | None = None, held: str | None = None
) -> dict[str, Any]:
    return {
        "held_reason": held,
        "event_timestamp": moment,
        "received_at": moment,
        "hostname": hostname,
        "message": "m",
        "source": "syslog",
        "syslog_severity": 3,
        "trap_oid": None,
        "matched_rule_id": rule_id,
        "handling_decision": "Ticket_only" if rule_id else "unhandled",
        "team_assignment": "NETO",
        "is_dev": False,
        "forwarded_to_moog": False,
        "correlation_id": str(uuid.uuid4()),
        "raw": None,
    }


def _rule(session: Session, text_: str, priority: int = 100) -> int:
    rule = AlertRule(
        match_type="contains",
        match_string=text_,
        priority=priority,
        prod_handling="Ticket_only",
        dev_handling="Suppress",
        team_assignment="NETO",
    )
    session.add(rule)
    session.flush()
    return rule.id


def _audit(sessions: sessionmaker[Session], rows: list[dict[str, Any]]) -> None:
    with sessions.begin() as session:
        insert_audit_rows(session, rows)


def test_rates_count_only_events_inside_each_window(
    sessions: sessionmaker[Session], redis_client: redis.Redis, settings: Settings
) -> None:
    rows = (
        [_row(NOW - timedelta(seconds=s)) for s in (0, 10, 59)]  # last minute: 3
        + [_row(NOW - timedelta(minutes=m)) for m in (5, 30, 59)]  # last hour: 6
        + [_row(NOW - timedelta(hours=h)) for h in (2, 23)]  # last day: 8
        + [_row(NOW - timedelta(hours=25)), _row(NOW + timedelta(seconds=5))]  # outside all
    )
    _audit(sessions, rows)
    body = dashboard.collect(sessions, redis_client, settings, now=NOW)
    assert body["errors"] == []
    assert body["events_per_second"] == {
        "1m": round(3 / 60, 3),
        "1h": round(6 / 3600, 3),
        "24h": round(8 / 86_400, 3),
    }
    per_minute = body["events_per_minute"]
    assert len(per_minute) == 60 and sum(per_minute) == 6
    # Oldest first; the current minute last: 12:30 holds the events at :30:30, :30:20; 12:29:31 is
    # in 12:29.
    assert per_minute[-1] == 2 and per_minute[-2] == 1
    assert per_minute[-1 - 5] == 1 and per_minute[-1 - 30] == 1 and per_minute[-1 - 59] == 1
    assert body["events_per_minute_end"] == "2026-11-20T12:30:00+00:00"


def test_top_rules_and_unhandled_hosts_over_the_last_hour(
    sessions: sessionmaker[Session], redis_client: redis.Redis, settings: Settings
) -> None:
    with sessions.begin() as session:
        busy, quiet = _rule(session, "busy"), _rule(session, "quiet")
    recent = NOW - timedelta(minutes=10)
    rows = (
        [_row(recent, rule_id=busy) for _ in range(3)]
        + [_row(recent, rule_id=quiet)]
        + [_row(recent, hostname="noisy") for _ in range(4)]
        + [_row(recent, hostname="calm")]
        + [_row(NOW - timedelta(hours=3), hostname="old") for _ in range(9)]  # out of the hour
    )
    _audit(sessions, rows)
    body = dashboard.collect(sessions, redis_client, settings, now=NOW)
    assert [(r["rule_id"], r["events"], r["match_string"]) for r in body["top_rules"]] == [
        (busy, 3, "busy"),
        (quiet, 1, "quiet"),
    ]
    assert body["top_unhandled_hosts"] == [
        {"hostname": "noisy", "events": 4},
        {"hostname": "calm", "events": 1},
    ]


def test_held_back_by_reason_and_the_top_storming_devices_and_rules_over_the_last_hour(
    sessions: sessionmaker[Session], redis_client: redis.Redis, settings: Settings
) -> None:
    with sessions.begin() as session:
        loud, other = _rule(session, "loud"), _rule(session, "other")
    recent = NOW - timedelta(minutes=10)
    storm = "storm_budget"
    rows = (
        # One device whatever the case of its name, as the device budget counts it.
        [_row(recent, hostname="Core-SW-01", rule_id=loud, held=storm) for _ in range(3)]
        + [_row(recent, hostname="core-sw-01", rule_id=loud, held=storm)]
        + [_row(recent, hostname="edge-02", rule_id=other, held=storm) for _ in range(2)]
        # Held for other reasons: counted per reason, never as storming.
        + [_row(recent, hostname="dup-host", rule_id=other, held="duplicate") for _ in range(5)]
        + [_row(recent, hostname="flappy", rule_id=other, held="flapping")]
        + [_row(recent, hostname="fine", rule_id=other)]  # forwarded: not held
        + [_row(NOW - timedelta(hours=2), hostname="old", rule_id=other, held=storm)]  # too old
    )
    _audit(sessions, rows)
    body = dashboard.collect(sessions, redis_client, settings, now=NOW)
    assert body["errors"] == []
    assert body["held_by_reason"] == {
        "duplicate": 5,
        "storm_budget": 6,
        "flapping": 1,
        "maintenance": 0,
        "shed": 0,
    }
    assert body["top_storming_devices"] == [
        {"hostname": "core-sw-01", "held": 4},
        {"hostname": "edge-02", "held": 2},
    ]
    assert [(r["rule_id"], r["held"], r["match_string"]) for r in body["top_storming_rules"]] == [
        (loud, 4, "loud"),
        (other, 2, "other"),
    ]


def test_the_pairs_flapping_now_come_from_the_flap_detectors_state(
    sessions: sessionmaker[Session], redis_client: redis.Redis, settings: Settings
) -> None:
    with sessions.begin() as session:
        down, up = _rule(session, "LINK-DOWN"), _rule(session, "LINK-UP")
        session.get(AlertRule, up).clears_rule_id = down  # type: ignore[union-attr]
    state = FlapDetector(redis_client, flapping.PREFIX, 60)
    alert = b'{"custom_info": {}}'

    def flips(batch: str, pair: str, sides: str, quiet: int) -> None:
        events = [Transition(pair, side == "p") for side in sides]
        state.observe(
            batch, events, {pair: alert}, transitions=2, within_seconds=600, quiet_seconds=quiet
        )

    flips("b1", f"core-sw-01:{down}", "pcpcp", quiet=600)  # flapping: 4 transitions, 3 held
    flips("b2", f"edge-02:{down}", "pcp", quiet=600)  # flapping: 2 transitions, 1 held
    flips("b3", f"calm:{down}", "pc", quiet=600)  # one transition: not flapping
    flips("b4", f"quiet-now:{down}", "pcp", quiet=0)  # its quiet time is already over
    body = dashboard.collect(sessions, redis_client, settings, now=NOW)
    assert body["errors"] == []
    assert body["flapping_count"] == 2
    pairs = body["flapping_pairs"]
    assert [
        (p["hostname"], p["problem_rule_id"], p["clear_rule_ids"], p["transitions"], p["held"])
        for p in pairs
    ] == [("core-sw-01", down, [up], 4, 3), ("edge-02", down, [up], 2, 1)]
    assert all(p["started"] <= p["last_event"] for p in pairs)
    # Reading changes nothing the detector keeps.
    without_rules = [{k: v for k, v in p.items() if k != "clear_rule_ids"} for p in pairs]
    assert flapping.open_pairs(redis_client) == (2, without_rules)


def test_queues_dead_letters_poison_and_circuit(
    sessions: sessionmaker[Session], redis_client: redis.Redis, settings: Settings
) -> None:
    redis_client.rpush("mutt.classify", "a", "b", "c")
    redis_client.rpush("mutt.forward", "x")
    redis_client.rpush("mutt.forward.page", "p", "q")
    redis_client.set("mutt:circuit:moog:state", "OPEN")
    redis_client.set(f"{PREFIX}:moog_circuit_breaker_threshold", "9")
    with sessions.begin() as session:
        for _ in range(2):
            add_dead_letter(
                session,
                task_name="mutt.forward_to_moog",
                queue="mutt.forward",
                payload={"alert": {}},
                error="boom",
                backoff_base=60,
            )
        session.add(
            PoisonLetter(
                task_name="mutt.forward_to_moog",
                queue="mutt.forward",
                payload={},
                error_type="E",
                error_message="e",
                reason="gave up",
            )
        )
    body = dashboard.collect(sessions, redis_client, settings, now=NOW)
    assert body["queues"] == {"mutt.classify": 3, "mutt.forward.page": 2, "mutt.forward": 1}
    assert (body["dlq_depth"], body["poison_count"]) == (2, 1)
    assert body["circuit_breaker"] == {
        "state": "OPEN",
        "threshold": 9,
        "timeout_seconds": settings.moog_circuit_breaker_timeout,
    }


def test_window_counts_read_only_their_months_partitions_through_the_index(
    engine: Engine,
) -> None:
    # Eight monthly partitions; the 24-hour count must touch only its month's (plus at most the
    # default partition), read through the timestamp index rather than scanned.
    ensure_partitions(engine, date(2026, 6, 1), 7)
    query = select(func.count()).select_from(EventAuditLog)
    query = query.where(dashboard.in_window(NOW - timedelta(days=1), NOW))
    sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        # Empty tables make any plan cheap; forbid the sequential scan to see that an index serves.
        conn.execute(text("SET enable_seqscan = off"))
        plan = "\n".join(conn.execute(text(f"EXPLAIN {sql}")).scalars())
    scanned = [line for line in plan.splitlines() if " on event_audit_log" in line]
    assert 1 <= len(scanned) <= 2, plan
    assert any("event_audit_log_202611" in line for line in scanned), plan
    assert all("Index" in line for line in scanned), plan


def test_metrics_are_cached_for_metrics_cache_ttl(
    sessions: sessionmaker[Session], redis_client: redis.Redis, settings: Settings
) -> None:
    first = dashboard.cached_metrics(sessions, redis_client, settings)
    ttl = redis_client.ttl(dashboard.CACHE_KEY)
    assert 0 < ttl <= settings.metrics_cache_ttl
    redis_client.rpush("mutt.classify", "new")
    assert dashboard.cached_metrics(sessions, redis_client, settings) == first  # still cached
    redis_client.delete(dashboard.CACHE_KEY)
    assert (
        dashboard.cached_metrics(sessions, redis_client, settings)["queues"]["mutt.classify"] == 1
    )


def test_without_redis_the_database_figures_still_come_and_errors_say_what_is_missing(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    _audit(sessions, [_row(datetime.now(UTC) - timedelta(seconds=5))])
    body = dashboard.cached_metrics(sessions, down, settings)
    assert body["queues"] is None and body["circuit_breaker"] is None
    assert body["errors"] and body["errors"][0].startswith("redis:")
    assert body["events_per_second"]["1m"] == round(1 / 60, 3)
    assert body["dlq_depth"] == 0


def test_without_the_database_the_redis_figures_still_come(
    redis_client: redis.Redis, settings: Settings
) -> None:
    broken = settings.model_copy(update={"database_url": "postgresql://nobody@127.0.0.1:1/none"})
    from mutt_app.db.engine import make_engine

    engine = make_engine(broken)
    try:
        body = dashboard.cached_metrics(session_factory(engine), redis_client, broken)
    finally:
        engine.dispose()
    assert body["queues"] == {"mutt.classify": 0, "mutt.forward.page": 0, "mutt.forward": 0}
    assert body["events_per_second"] == {"1m": None, "1h": None, "24h": None}
    assert any(e.startswith("database") for e in body["errors"])
    assert redis_client.get(dashboard.CACHE_KEY) is None  # a partial answer is not cached


# --- the routes ----------------------------------------------------------------------------------


def test_api_metrics_needs_the_key_and_answers_the_dashboard_figures(
    admin_app: Flask, redis_client: redis.Redis
) -> None:
    client = admin_app.test_client()
    assert client.get("/api/v2/metrics").status_code == 401
    redis_client.rpush("mutt.forward", "x", "y")
    response = client.get("/api/v2/metrics", headers={"X-API-Key": KEY})
    assert response.status_code == 200 and response.headers["X-API-Version"] == "2"
    body = response.json
    assert body["queues"]["mutt.forward"] == 2 and body["errors"] == []
    assert set(body["events_per_second"]) == {"1m", "1h", "24h"}
    assert orjson.loads(redis_client.get(dashboard.CACHE_KEY))["queues"] == body["queues"]


def test_the_dashboard_page_and_its_json_need_a_session(admin_app: Flask) -> None:
    client = admin_app.test_client()
    assert client.get("/dashboard/metrics").status_code == 302  # to /login
    assert login(client, "victor") == 302  # a viewer
    page = client.get("/").get_data(as_text=True)
    assert "/static/vendor/chart.umd.js" in page and 'id="chart-events"' in page
    assert "cdn" not in page.lower()
    asset = client.get("/static/vendor/chart.umd.js")
    assert asset.status_code == 200 and b"Chart" in asset.data
    asset.close()
    body = client.get("/dashboard/metrics").json
    assert body["queues"] == {"mutt.classify": 0, "mutt.forward.page": 0, "mutt.forward": 0}


def test_the_embedded_sqlite_database_gives_the_same_figures(
    tmp_path, redis_client: redis.Redis
) -> None:  # type: ignore[no-untyped-def]
    from mutt_app.config import load_settings
    from mutt_app.db.engine import make_engine, upgrade

    settings = load_settings({"MUTT_DATA_DIR": str(tmp_path)})
    engine = make_engine(settings)
    assert engine.dialect.name == "sqlite"
    try:
        upgrade(engine)
        factory = session_factory(engine)
        with factory.begin() as session:
            rule = _rule(session, "x")
        _audit(
            factory,
            [_row(NOW - timedelta(seconds=20), rule_id=rule), _row(NOW - timedelta(minutes=3))],
        )
        body = dashboard.collect(factory, redis_client, settings, now=NOW)
    finally:
        engine.dispose()
    assert body["events_per_second"]["1m"] == round(1 / 60, 3)
    assert body["events_per_second"]["1h"] == round(2 / 3600, 3)
    assert body["events_per_minute"][-1] == 1 and body["events_per_minute"][-4] == 1
    assert [r["rule_id"] for r in body["top_rules"]] == [rule]
    assert body["top_unhandled_hosts"] == [{"hostname": "r1", "events": 1}]
