"""Deduplication against a real Redis (and, end to end through classify_batch, PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import time
import uuid

import orjson
import pytest
import redis
from prometheus_client import REGISTRY
from sqlalchemy import select

from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import AlertRule, EventAuditLog
from mutt_app.holdback import dedup
from mutt_app.holdback.dedup import DedupWindows, Repeats
from mutt_app.runtime import Runtime, runtime_of
from tests.factories import wire_event

PREFIX = "mutt:dedup"


def _group(fp: str, n: int, window: int = 60, first: str | None = None) -> Repeats:
    first = first or str(uuid.uuid4())
    alert = {"external_id": first, "signature": f"{fp}-sig", "description": "link down"}
    return Repeats(
        fingerprint=fp,
        first_id=first,
        count=n,
        last_at_ms=int(time.time() * 1000),
        last_id=str(uuid.uuid4()),
        window_seconds=window,
        alert=orjson.dumps(alert),
    )


def _count(client: redis.Redis, fp: str) -> int:
    return int(client.hget(f"{PREFIX}:window:{fp}", "count") or 0)


def test_first_opens_a_window_and_repeats_are_counted(redis_client: redis.Redis) -> None:
    windows = DedupWindows(redis_client, PREFIX, 600)
    first = _group("fp1", 3)
    answer = windows.observe("batch-1", [first, _group("fp2", 1)])
    assert answer["fp1"] == (True, first.first_id)  # forward the first, hold 2
    assert answer["fp2"][0] is True
    assert _count(redis_client, "fp1") == 2
    # fp2 had no repeats: its window just expires when it closes.
    assert 0 < redis_client.pttl(f"{PREFIX}:window:fp2") <= 60_000
    assert redis_client.pttl(f"{PREFIX}:window:fp1") == -1  # kept until its update is sent

    later = windows.observe("batch-2", [_group("fp1", 5), _group("fp2", 1)])
    assert later["fp1"] == (False, first.first_id)  # all five repeat the open window
    assert later["fp2"][0] is False
    assert _count(redis_client, "fp1") == 7
    assert _count(redis_client, "fp2") == 1


def test_a_redelivered_batch_gets_the_same_answer_and_counts_nothing_twice(
    redis_client: redis.Redis,
) -> None:
    windows = DedupWindows(redis_client, PREFIX, 600)
    first = _group("fp", 4)
    assert windows.observe("batch-1", [first]) == {"fp": (True, first.first_id)}
    again = windows.observe("batch-1", [_group("fp", 4, first=first.first_id)])
    assert again == {"fp": (True, first.first_id)}
    assert _count(redis_client, "fp") == 3
    assert 0 < redis_client.ttl(f"{PREFIX}:memo:batch-1") <= 600


def test_a_closed_window_with_repeats_is_handed_to_the_flush_once(
    redis_client: redis.Redis,
) -> None:
    windows = DedupWindows(redis_client, PREFIX, 600)
    first = _group("fp", 3, window=1)
    windows.observe("b1", [first, _group("quiet", 1, window=1)])
    assert windows.close_due() == 0  # still open
    time.sleep(1.1)
    assert windows.close_due() == 1
    assert windows.close_due() == 0
    (closed,) = windows.closed()
    assert (closed.window_id, closed.count) == (first.first_id, 2)
    assert closed.alert["external_id"] == first.first_id
    assert closed.last_id == first.last_id
    windows.forget([closed.window_id])
    assert windows.closed() == []
    assert not redis_client.exists(f"{PREFIX}:window:quiet")  # expired, nothing to send


def test_the_next_event_after_a_closed_window_opens_a_new_one_and_keeps_the_count(
    redis_client: redis.Redis,
) -> None:
    windows = DedupWindows(redis_client, PREFIX, 600)
    first = _group("fp", 2, window=1)
    windows.observe("b1", [first])
    time.sleep(1.1)
    second = _group("fp", 1, window=1)
    assert windows.observe("b2", [second]) == {"fp": (True, second.first_id)}
    (closed,) = windows.closed()  # moved by the arrival, before any flush ran
    assert (closed.window_id, closed.count) == (first.first_id, 1)


def _observe_many(url: str, batches: int, results) -> None:  # type: ignore[no-untyped-def]
    windows = DedupWindows(redis.Redis.from_url(url), PREFIX, 600)
    opened = 0
    for _ in range(batches):
        answer = windows.observe(uuid.uuid4().hex, [_group("storm", 10)])
        opened += answer["storm"][0]
    results.put(opened)


def test_workers_racing_agree_on_one_first_and_the_exact_count(
    redis_url: str, redis_client: redis.Redis
) -> None:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_observe_many, args=(redis_url, 50, results)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sum(results.get(timeout=5) for _ in workers) == 1
    assert _count(redis_client, "storm") == 4 * 50 * 10 - 1


def test_classify_holds_repeats_audits_each_once_and_flush_sends_one_update(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    with runtime.sessions.begin() as session:
        rule = AlertRule(
            match_string="changed state to down",
            match_type="contains",
            prod_handling="Ticket_only",
            dev_handling="Log_only",
            team_assignment="NETO",
            dedup_window_seconds=1,
        )
        session.add(rule)
    batch = [
        wire_event("sw-1", f"Interface Gi0/1 changed state to down (flap {i})") for i in range(5)
    ]
    outcome = classify_batch(runtime, app, batch)
    assert outcome["audited"] == 5
    # Redelivered after a kill: nothing audited twice, nothing counted twice.
    assert classify_batch(runtime, app, batch)["audited"] == 0
    with runtime.sessions() as session:
        rows = session.execute(
            select(
                EventAuditLog.correlation_id,
                EventAuditLog.forwarded_to_moog,
                EventAuditLog.held_reason,
                EventAuditLog.duplicate_of,
            )
        ).all()
    first = uuid.UUID(batch[0]["correlation_id"])
    forwarded = [r for r in rows if r.forwarded_to_moog]
    assert [r.correlation_id for r in forwarded] == [first]
    assert forwarded[0].held_reason is None
    held = [r for r in rows if not r.forwarded_to_moog]
    assert len(held) == 4
    assert {(r.held_reason, r.duplicate_of) for r in held} == {("duplicate", first)}

    time.sleep(1.1)
    sent: list[dict] = []
    assert dedup.Dedup().flush(runtime, sent.extend) == 1
    assert dedup.Dedup().flush(runtime, sent.extend) == 0
    (update,) = sent
    assert update["signature"].startswith("sw-1::")
    assert update["custom_info"]["duplicate_count"] == 4
    assert update["custom_info"]["duplicate_of"] == str(first)
    assert update["custom_info"]["last_correlation_id"] == batch[-1]["correlation_id"]
    assert "repeated 4 more times" in update["description"]
    assert update["external_id"] != str(first)


def test_classify_forwards_each_incident_and_holds_only_true_repeats(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    with runtime.sessions.begin() as session:
        session.add_all(
            [
                AlertRule(
                    match_string="CRITICAL",
                    match_type="contains",
                    priority=900,
                    prod_handling="Page_and_ticket",
                    dev_handling="Log_only",
                    team_assignment="NETO",
                ),
                AlertRule(  # one incident per peer, whatever its state or severity
                    match_string=r"BGP peer (?P<peer>\S+) (down|up)",
                    match_type="regex",
                    priority=500,
                    prod_handling="Ticket_only",
                    dev_handling="Log_only",
                    team_assignment="NETO",
                    dedup_key="host, group:peer",
                ),
            ]
        )
    batch = [
        wire_event("rtr-1", "CRITICAL peer 10.0.0.1 down"),
        wire_event("rtr-1", "CRITICAL peer 10.0.0.2 down"),  # another peer
        wire_event("rtr-1", "CRITICAL power supply 1 failed"),
        wire_event("rtr-1", "CRITICAL power supply 2 failed"),  # another power supply
        wire_event("rtr-1", "CRITICAL power supply 2 failed", severity=2),  # escalated
        wire_event("rtr-1", "CRITICAL CPU at 93%"),
        wire_event("rtr-1", "CRITICAL CPU at 95%"),  # repeat: the value varies
        wire_event("rtr-1", "CRITICAL power supply 1 failed"),  # repeat
        wire_event("rtr-2", "BGP peer 10.9.0.1 down after 35ms"),
        wire_event("rtr-2", "BGP peer 10.9.0.1 up", severity=5),  # repeat: the rule's key
        wire_event("rtr-2", "BGP peer 10.9.0.2 down after 35ms"),  # another peer
    ]
    assert classify_batch(runtime, app, batch)["audited"] == len(batch)
    with runtime.sessions() as session:
        rows = {
            str(r.correlation_id): r
            for r in session.execute(
                select(
                    EventAuditLog.correlation_id,
                    EventAuditLog.forwarded_to_moog,
                    EventAuditLog.held_reason,
                    EventAuditLog.duplicate_of,
                )
            )
        }
    outcome = [
        (rows[e["correlation_id"]].held_reason, rows[e["correlation_id"]].duplicate_of)
        for e in batch
    ]
    first = [uuid.UUID(batch[i]["correlation_id"]) for i in (2, 5, 8)]
    assert outcome == [
        (None, None),
        (None, None),
        (None, None),
        (None, None),
        (None, None),
        (None, None),
        ("duplicate", first[1]),
        ("duplicate", first[0]),
        (None, None),
        ("duplicate", first[2]),
        (None, None),
    ]


def test_a_stored_key_workers_cannot_use_is_counted_logged_and_the_default_applies(
    settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    with runtime.sessions.begin() as session:
        # Only raw SQL can store this: the rule commands refuse a group the regex does not have.
        rule = AlertRule(
            match_string=r"BGP peer \S+ down",
            match_type="regex",
            prod_handling="Ticket_only",
            dev_handling="Log_only",
            team_assignment="NETO",
            dedup_key="host, group:peer",
        )
        session.add(rule)
    batch = [wire_event("rtr-1", f"BGP peer 10.0.0.{n} down") for n in (1, 2, 1)]
    classify_batch(runtime, app, batch)
    assert REGISTRY.get_sample_value("mutt_alerter_cache_dedup_keys_ignored_count") == 1
    assert f"rule {rule.id}: dedup_key 'host, group:peer' ignored" in caplog.text
    with runtime.sessions() as session:
        rows = session.execute(select(EventAuditLog.correlation_id, EventAuditLog.held_reason))
        held = {r.correlation_id: r.held_reason for r in rows}
    # The default key: two peers, two incidents; the third event repeats the first.
    assert [held[uuid.UUID(e["correlation_id"])] for e in batch] == [None, None, "duplicate"]
