"""Maintenance windows on real PostgreSQL and Redis: the REST API and its audit, classify's
verdicts, and the summary after an occurrence ends (once, also when flushed twice)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete, select

from mutt_app import metrics
from mutt_app.classify.batch import classify_batch
from mutt_app.cli import main
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, EventAuditLog, MaintenanceWindow
from mutt_app.holdback import window_cache, window_counts
from mutt_app.holdback import windows as mw
from mutt_app.holdback.window_cache import WindowCache
from mutt_app.holdback.window_counts import Windowed
from mutt_app.rules.cache import VERSION_KEY, RuleCache, bump_rules_version
from mutt_app.runtime import Runtime, runtime_of
from tests.factories import CRITICAL, wire_event
from tests.records import audit_rows
from tests.web import call

WINDOWS = "/api/v2/maintenance-windows"


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _recurring(**over: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "name": "core upgrade",
        "starts_at": _iso(now - timedelta(minutes=10)),
        "rrule": "FREQ=DAILY",
        "duration_minutes": 60,
        "timezone": "Europe/Berlin",
        "hosts": ["core-sw-*"],
        "action": "suppress",
        **over,
    }


def test_create_read_list_active_update_end_and_delete_are_audited(
    api_client: FlaskClient,
    engine: Engine,
    redis_client: redis.Redis,
) -> None:
    created = call(api_client, "POST", WINDOWS, _recurring(), status=201)
    window_id = created["id"]
    window = created["maintenance_window"]
    assert window["active"] is True
    assert window["rrule"] == "FREQ=DAILY" and window["summary_alert"] is True
    assert len(window["next_occurrences"]) == 3
    assert created["changed"] is True and created["rules_version"] == 1  # workers reload
    later = datetime.now(UTC) + timedelta(days=2)
    call(
        api_client,
        "POST",
        WINDOWS,
        {
            "name": "db patching",
            "starts_at": _iso(later),
            "duration_minutes": 30,
            "teams": ["DBA"],
            "action": "downgrade",
        },
        status=201,
    )
    assert [
        w["name"] for w in call(api_client, "GET", f"{WINDOWS}?active=true")["maintenance_windows"]
    ] == ["core upgrade"]
    assert call(api_client, "GET", WINDOWS)["total"] == 2
    one = call(api_client, "GET", f"{WINDOWS}/{window_id}")["maintenance_window"]
    assert one["hosts"] == ["core-sw-*"]

    updated = call(api_client, "PUT", f"{WINDOWS}/{window_id}", {"hosts": ["core-sw-*", "edge-*"]})
    assert updated["maintenance_window"]["hosts"] == ["core-sw-*", "edge-*"]
    ended = call(api_client, "POST", f"{WINDOWS}/{window_id}/end", {}, status=200)
    assert ended["maintenance_window"]["active"] is False
    assert ended["maintenance_window"]["ended_at"] is not None
    again = call(api_client, "POST", f"{WINDOWS}/{window_id}/end", {}, status=409)
    assert "is not open now" in again["error"]
    call(api_client, "DELETE", f"{WINDOWS}/{window_id}", {}, status=200)
    call(api_client, "GET", f"{WINDOWS}/{window_id}", status=404)

    audit = audit_rows(engine, table_name="maintenance_windows", record_id=window_id)
    assert [row.operation for row in audit] == ["CREATE", "UPDATE", "UPDATE", "DELETE"]
    assert audit[1].old_values["hosts"] == ["core-sw-*"]
    assert audit[1].new_values["hosts"] == ["core-sw-*", "edge-*"]
    assert audit[2].old_values["ended_at"] is None and audit[2].new_values["ended_at"]
    assert {row.reason for row in audit} == {"test change"}
    assert int(redis_client.get(VERSION_KEY)) == 5  # one bump per change


def test_an_update_is_validated_on_the_merged_window(
    api_client: FlaskClient,
) -> None:
    start = datetime(2026, 12, 24, 22, tzinfo=UTC)
    body = {"name": "xmas", "starts_at": _iso(start), "duration_minutes": 60, "teams": ["DBA"],
            "action": "suppress"}  # fmt: skip
    created = call(api_client, "POST", WINDOWS, body, status=201)["maintenance_window"]
    assert created["ends_at"] == "2026-12-24T23:00:00+00:00" and created["duration_minutes"] is None
    path = f"{WINDOWS}/{created['id']}"
    longer = call(api_client, "PUT", path, {"duration_minutes": 120})["maintenance_window"]
    assert longer["ends_at"] == "2026-12-25T00:00:00+00:00"
    weekly = call(api_client, "PUT", path, {"rrule": "FREQ=WEEKLY", "duration_minutes": 30})
    assert weekly["maintenance_window"]["ends_at"] is None
    assert weekly["maintenance_window"]["rrule"] == "FREQ=WEEKLY"
    refused = call(api_client, "PUT", path, {"teams": []}, status=422)
    assert "scope: a window needs at least one" in refused["error"]
    refused = call(api_client, "PUT", path, {"timezone": "Moon/Base"}, status=422)
    assert refused["details"]["fields"] == {
        "timezone": "timezone: unknown IANA time zone 'Moon/Base'"
    }
    unchanged = call(api_client, "PUT", path, {"teams": ["DBA"]})
    assert unchanged["changed"] is False


def test_validation_errors_are_clear_422s_and_change_nothing(
    api_client: FlaskClient,
    engine: Engine,
) -> None:
    cases = [
        (_recurring(rrule="FREQ=FORTNIGHTLY"), "rrule: not a valid RFC 5545 RRULE"),
        (_recurring(timezone="Europe/Atlantis"), "unknown IANA time zone 'Europe/Atlantis'"),
        (
            _recurring(rrule=None, duration_minutes=None, ends_at="2020-01-01T00:00:00Z"),
            "ends_at: must be after starts_at",
        ),
        (_recurring(hosts=[]), "scope: a window needs at least one"),
        (
            _recurring(starts_at="2026-01-01T10:00:00"),
            "starts_at: an RFC 3339 date-time with an offset",
        ),
        (_recurring(hosts="core-sw-*"), "hosts expected array"),
        (_recurring(rule_ids=["7"]), "rule_ids item 0 expected integer"),
        (_recurring(action="mute"), "action must be one of suppress, downgrade"),
    ]
    for body, message in cases:
        answer = call(api_client, "POST", WINDOWS, body, status=422)
        assert message in answer["error"], (message, answer)
    call(api_client, "POST", WINDOWS, _recurring(), reason=None, status=422)  # no reason
    assert audit_rows(engine, table_name="maintenance_windows") == []


def test_classify_suppresses_and_downgrades_only_what_windows_scope_and_sums_up_once(
    settings: Settings, redis_client: redis.Redis
) -> None:
    celery = Runtime(settings).celery
    runtime = runtime_of(celery)
    runtime.dynamic_config.set("dedup_window_seconds", 0)
    now = datetime.now(UTC)
    with runtime.sessions.begin() as session:
        page = AlertRule(match_string="CRITICAL", match_type="contains", priority=900,
                         prod_handling="Page_and_ticket", dev_handling="Log_only",
                         team_assignment="NETO")  # fmt: skip
        ticket = AlertRule(match_string="changed state", match_type="contains",
                           prod_handling="Ticket_only", dev_handling="Log_only",
                           team_assignment="NETO")  # fmt: skip
        session.add_all([page, ticket])
        session.flush()
        # Written directly: the API allows whole minutes, this test wants an end 2 s away.
        session.add_all(
            [
                MaintenanceWindow(name="core upgrade", starts_at=now - timedelta(minutes=1),
                                  ends_at=now + timedelta(seconds=2), hosts=["core-sw-*"],
                                  teams=[], rule_ids=[], oid_prefixes=[], action="suppress",
                                  summary_alert=True),
                MaintenanceWindow(name="pager quiet", starts_at=now - timedelta(minutes=1),
                                  ends_at=now + timedelta(seconds=2), hosts=[], teams=[],
                                  rule_ids=[page.id], oid_prefixes=[], action="downgrade",
                                  summary_alert=False),
                MaintenanceWindow(name="tomorrow", starts_at=now + timedelta(days=1),
                                  ends_at=now + timedelta(days=1, hours=1), hosts=["*"],
                                  teams=[], rule_ids=[], oid_prefixes=[], action="suppress",
                                  summary_alert=True),
            ]
        )  # fmt: skip
    batch = [
        wire_event("core-sw-01", "Gi0/1 changed state to down"),  # suppressed
        wire_event(
            "CORE-SW-02", "CRITICAL fan failed"
        ),  # suppressed (suppress wins over downgrade)
        wire_event("edge-01", "CRITICAL fan failed"),  # downgraded to a ticket
        wire_event("edge-01", "Gi0/2 changed state to down"),  # a ticket already: untouched
        wire_event("core-sw-01", "nothing matches this"),  # unmatched: never forwarded, untouched
    ]
    assert classify_batch(runtime, celery, batch)["audited"] == 5
    assert classify_batch(runtime, celery, batch)["audited"] == 0  # redelivered: nothing twice
    with runtime.sessions() as session:
        rows = {
            str(r.correlation_id): r
            for r in session.execute(
                select(EventAuditLog.correlation_id, EventAuditLog.handling_decision,
                       EventAuditLog.forwarded_to_moog, EventAuditLog.held_reason)
            )
        }  # fmt: skip
    verdicts = [
        (rows[w["correlation_id"]].handling_decision, rows[w["correlation_id"]].forwarded_to_moog,
         rows[w["correlation_id"]].held_reason)
        for w in batch
    ]  # fmt: skip
    assert verdicts == [
        ("Ticket_only", False, "maintenance"),
        ("Page_and_ticket", False, "maintenance"),
        ("Ticket_only", True, None),
        ("Ticket_only", True, None),
        ("Log_only", False, "unmatched"),  # every event not forwarded says why
    ]
    remember = 2 * settings.ledger_reconcile_after
    sent: list[dict] = []
    assert mw.flush(redis_client, remember, sent.extend) == 0  # still open: nothing yet
    time.sleep(2.2)
    assert mw.flush(redis_client, remember, sent.extend) == 1
    assert mw.flush(redis_client, remember, sent.extend) == 0
    (summary,) = sent  # the downgrade window asked for none
    assert summary["description"] == "window 'core upgrade': 2 alerts held, 2 hosts"
    assert summary["custom_info"]["handling"] == "Ticket_only"
    assert summary["custom_info"]["maintenance_count"] == 2


def test_windows_reload_with_each_new_rules_snapshot_and_a_failed_read_keeps_the_old(
    settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_of(Runtime(settings).celery)
    rules, windows = runtime.component(RuleCache.of), runtime.component(WindowCache.of)
    first = rules.current()
    assert windows.current(first) == ()
    now = datetime.now(UTC)
    with runtime.sessions.begin() as session:
        session.add(MaintenanceWindow(name="core upgrade", starts_at=now,
                                      ends_at=now + timedelta(hours=1), hosts=["core-sw-*"],
                                      teams=[], rule_ids=[], oid_prefixes=[], action="suppress",
                                      summary_alert=True))  # fmt: skip
    assert windows.current(first) == ()  # same snapshot: no database read per task
    bump_rules_version(redis_client)
    second = rules.current()
    assert [w.name for w in windows.current(second)] == ["core upgrade"]

    def unreachable(session: object) -> None:
        raise OSError("database unreachable")

    monkeypatch.setattr(window_cache, "load_windows", unreachable)
    failures = metrics.RULE_RELOAD_FAILURES._value.get()
    bump_rules_version(redis_client)
    third = rules.current()
    assert [w.name for w in windows.current(third)] == ["core upgrade"]  # kept
    assert metrics.RULE_RELOAD_FAILURES._value.get() == failures + 1
    monkeypatch.undo()
    with runtime.sessions.begin() as session:
        session.execute(delete(MaintenanceWindow))
    assert windows.current(third) == ()  # tried again at the next task


def test_ending_a_window_early_sends_its_summary_at_the_next_flush(
    api_client: FlaskClient,
    settings: Settings,
    redis_client: redis.Redis,
) -> None:
    call(api_client, "POST", "/api/v2/rules", CRITICAL, status=201)
    window_id = call(api_client, "POST", WINDOWS, _recurring(), status=201)["id"]
    celery = Runtime(settings).celery
    runtime = runtime_of(celery)
    runtime.dynamic_config.set("dedup_window_seconds", 0)
    batch = [wire_event("core-sw-09", f"CRITICAL link {i} down") for i in range(3)]
    assert classify_batch(runtime, celery, batch)["audited"] == 3
    remember = 2 * settings.ledger_reconcile_after
    sent: list[dict] = []
    assert mw.flush(redis_client, remember, sent.extend) == 0  # open for another 50 minutes
    call(api_client, "POST", f"{WINDOWS}/{window_id}/end", {}, status=200)
    time.sleep(0.05)
    assert mw.flush(redis_client, remember, sent.extend) == 1
    assert mw.flush(redis_client, remember, sent.extend) == 0
    (summary,) = sent
    assert summary["description"] == "window 'core upgrade': 3 alerts held, 1 host"


def _mutt(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_cli_lists_adds_and_ends_windows_audited(
    settings: Settings, engine: Engine, redis_client: redis.Redis
) -> None:
    start = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    code, out = _mutt(
        settings, "windows", "add", "core upgrade", "--starts-at", start, "--duration", "60",
        "--rrule", "FREQ=DAILY", "--timezone", "Europe/Berlin", "--host", "core-sw-*",
        "--action", "suppress", "--reason", "change 4711",
    )  # fmt: skip
    assert code == 0, out
    assert "'core upgrade' added (open now" in out
    code, out = _mutt(
        settings, "windows", "add", "bad", "--starts-at", start, "--duration", "60",
        "--rrule", "FREQ=DAILY", "--timezone", "Nowhere/Land", "--host", "x",
        "--action", "suppress", "--reason", "x",
    )  # fmt: skip
    assert (code, out) == (1, "Error: timezone: unknown IANA time zone 'Nowhere/Land'\n")
    code, out = _mutt(
        settings, "windows", "add", "everything", "--starts-at", start, "--duration", "60",
        "--action", "suppress", "--reason", "x",
    )  # fmt: skip
    assert code == 1 and "scope: a window needs at least one" in out
    code, out = _mutt(settings, "windows", "list", "--active")
    assert code == 0 and "'core upgrade' suppress OPEN until" in out, out
    code, out = _mutt(settings, "windows", "end", "core upgrade", "--reason", "done early")
    assert code == 0 and "ended" in out, out
    code, out = _mutt(settings, "windows", "end", "core upgrade", "--reason", "again")
    assert (code, out) == (1, "Error: window 'core upgrade' is not open now\n")
    code, out = _mutt(settings, "windows", "list", "--active")
    assert (code, out) == (0, "no maintenance windows open now\n")
    code, out = _mutt(settings, "windows", "list")
    assert "closed" in out and "FREQ=DAILY for 60 min (Europe/Berlin); next " in out, out

    audit = audit_rows(engine, table_name="maintenance_windows")
    assert [(row.operation, row.reason) for row in audit] == [
        ("CREATE", "change 4711"),
        ("UPDATE", "done early"),
    ]
    assert all(row.changed_by.startswith("cli:") for row in audit)
    assert int(redis_client.get(VERSION_KEY)) == 2


def _windowed(correlation_id: str, closes_ms: int, host: str = "h1") -> Windowed:
    label = orjson.dumps(
        {"window_id": 7, "name": "w", "action": "suppress", "summary": True,
         "start": "2026-01-01T00:00:00+00:00", "end": "2026-01-01T01:00:00+00:00", "team": "NETO"}
    )  # fmt: skip
    return Windowed("7:1000", closes_ms, correlation_id, host, "suppress", label)


def test_redis_has_the_last_word_on_an_occurrence_that_has_ended(redis_client: redis.Redis) -> None:
    counts = mw.counts(redis_client, 60)
    seconds, _ = redis_client.time()
    past, future = (seconds - 1) * 1000, (seconds + 60) * 1000
    assert counts.observe("b1", [_windowed("a", past)]) == [""]  # ended: applies to nothing
    assert counts.observe("b2", [_windowed("b", future), _windowed("c", future, "h2")]) == [
        "suppress",
        "suppress",
    ]
    # The same batch again (a redelivery) gets its answers and counts nothing twice.
    assert counts.observe("b2", [_windowed("b", future), _windowed("c", future, "h2")]) == [
        "suppress",
        "suppress",
    ]
    assert redis_client.hget(counts.window_key("7:1000"), "count") == b"2"
    # "End now" moved the end: later alerts of the old snapshot apply nothing.
    assert counts.reschedule(counts.window_key("7:1000"), past) == 1
    assert counts.observe("b3", [_windowed("d", future)]) == [""]


def test_a_flush_that_dies_before_forgetting_publishes_the_same_external_id_again(
    redis_client: redis.Redis,
) -> None:
    counts = mw.counts(redis_client, 60)
    seconds, _ = redis_client.time()
    counts.observe("b1", [_windowed("a", (seconds + 1) * 1000)])
    time.sleep(1.1)
    published: list[dict] = []

    def dies_after_publishing(alerts: list[dict]) -> None:
        published.extend(alerts)
        raise ConnectionError("killed between the outbox and forget")

    with pytest.raises(ConnectionError):
        mw.flush(redis_client, 60, dies_after_publishing)
    assert mw.flush(redis_client, 60, published.extend) == 1
    assert mw.flush(redis_client, 60, published.extend) == 0
    first, again = published
    # Same external_id: the forward task's idempotency key delivers it once.
    assert first["external_id"] == again["external_id"]
    assert first["description"] == "window 'w': 1 alert held, 1 host"


def test_an_occurrence_counts_at_most_max_hosts_and_the_rest_as_other(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # A window over invented hosts: the occurrence keeps MAX_HOSTS hosts and counts the rest's
    # alerts, so its hash cannot grow with them; the summary says "N+ hosts".
    counts = mw.counts(redis_client, 60)
    seconds, _ = redis_client.time()
    closes = (seconds + 2) * 1000
    invented = window_counts.MAX_HOSTS + 25
    alerts = [_windowed(f"c{n}", closes, f"invented-{n}") for n in range(invented)]
    alerts.append(_windowed("again", closes, "invented-0"))  # a counted host still counts
    assert set(counts.observe("b1", alerts)) == {"suppress"}
    key = counts.window_key("7:1000")
    assert redis_client.hlen(key) < window_counts.MAX_HOSTS + 10
    assert redis_client.hmget(key, "count", "hosts", "other", "h:invented-0") == [
        str(invented + 1).encode(), str(window_counts.MAX_HOSTS).encode(), b"25", b"2",
    ]  # fmt: skip

    time.sleep(2.1)
    sent: list[dict] = []
    overflow = metrics.HELD_WINDOW_OVERFLOW.labels("maintenance")._value.get()
    with caplog.at_level(logging.WARNING, "mutt_app.holdback.windows"):
        assert mw.flush(redis_client, 60, sent.extend) == 1
    (summary,) = sent
    assert summary["description"] == f"window 'w': {invented + 1:,} alerts held, 10,000+ hosts"
    assert summary["custom_info"]["maintenance_uncounted_host_alerts"] == 25
    assert metrics.HELD_WINDOW_OVERFLOW.labels("maintenance")._value.get() == overflow + 25
    assert "25 alerts of hosts past the 10000 counted (MAX_HOSTS)" in caplog.text
