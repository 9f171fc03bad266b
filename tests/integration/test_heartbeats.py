"""Heartbeats against a real Redis and PostgreSQL: last seen, the quiet/clear state machine, and
exactly one alert and one clear per episode whatever runs twice or dies half-way.

Time is moved by writing last-seen times and heartbeat change times in the past (the check reads
Redis' clock), so a one-minute heartbeat is tested without waiting a minute.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from sqlalchemy import update

from mutt_app.classify.batch import classify_batch
from mutt_app.config import Settings
from mutt_app.db.models import DeviceTeam, Heartbeat
from mutt_app.holdback.base import Held
from mutt_app.ledger import Batch
from mutt_app.metrics import HEARTBEAT_ALERTS, HEARTBEAT_QUIET_HOSTS
from mutt_app.runtime import Runtime, runtime_of
from mutt_app.tasks.maintenance import check_heartbeats
from mutt_app.watch import dashboard, heartbeat_quiet, heartbeats
from tests.factories import wire_event


def _heartbeat(runtime: Runtime, *, age_minutes: float = 10, **fields: Any) -> int:
    """A heartbeat last changed ``age_minutes`` ago (so never-seen hosts are overdue)."""
    fields.setdefault("interval_minutes", 1)
    fields.setdefault("name", f"hb-{fields.get('host') or fields.get('team')}")
    with runtime.sessions.begin() as session:
        row = Heartbeat(**fields)
        session.add(row)
        session.flush()
        row_id = row.id
    _age(runtime, row_id, age_minutes)
    return row_id


def _age(runtime: Runtime, heartbeat_id: int, minutes: float) -> None:
    then = datetime.now(UTC) - timedelta(minutes=minutes)
    with runtime.sessions.begin() as session:
        session.execute(
            update(Heartbeat).where(Heartbeat.id == heartbeat_id).values(updated_at=then)
        )


def _seen(client: redis.Redis, host: str, minutes_ago: float) -> None:
    moment = (datetime.now(UTC) - timedelta(minutes=minutes_ago)).timestamp() * 1000
    client.zadd(heartbeats.LAST_SEEN_KEY, {host: moment})


def _start_watching_long_ago(client: redis.Redis) -> None:
    client.set(heartbeats.SINCE_KEY, int((time.time() - 3600) * 1000))


@pytest.fixture
def runtime(settings: Settings, redis_client: redis.Redis) -> Runtime:
    _start_watching_long_ago(redis_client)
    return Runtime(settings)


class Sent:
    """What the check published, in order."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []

    def __call__(self, alerts: list[dict]) -> None:
        self.alerts.extend(alerts)

    def kinds(self) -> list[tuple[str, str]]:
        return [(a["source"], a["custom_info"]["heartbeat"]) for a in self.alerts]


def test_classify_records_the_latest_receive_time_per_host_and_never_goes_back(
    settings: Settings, redis_client: redis.Redis
) -> None:
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    now = datetime.now(UTC)
    classify_batch(
        runtime,
        app,
        [
            wire_event("Core-SW-01", "still alive", severity=6, received_at=now),
            wire_event("core-sw-01", "still alive", severity=6, received_at=now - timedelta(1)),
        ],
    )
    stored = redis_client.zscore(heartbeats.LAST_SEEN_KEY, "core-sw-01")
    assert stored == pytest.approx(now.timestamp() * 1000, abs=1)
    # A replayed old batch (a dead letter, hours later) does not move a host's time back.
    classify_batch(
        runtime,
        app,
        [wire_event("core-sw-01", "still alive", severity=6, received_at=now - timedelta(hours=3))],
    )
    assert redis_client.zscore(heartbeats.LAST_SEEN_KEY, "core-sw-01") == stored
    assert redis_client.zcard(heartbeats.LAST_SEEN_KEY) == 1


def test_a_quiet_host_raises_once_and_clears_once_when_it_talks(
    runtime: Runtime, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mutt_app.watch.heartbeats")
    hb = _heartbeat(runtime, host="db-01", handling="Page_and_ticket", team_assignment="DBA")
    _seen(redis_client, "db-01", minutes_ago=0.5)
    sent = Sent()
    raised_before = HEARTBEAT_ALERTS.labels("raised")._value.get()
    assert heartbeats.check(runtime, sent).as_dict() == {"raised": 0, "cleared": 0, "quiet": 0}

    _seen(redis_client, "db-01", minutes_ago=2)  # one-minute heartbeat: now quiet
    assert heartbeats.check(runtime, sent).as_dict() == {"raised": 1, "cleared": 0, "quiet": 1}
    for _ in range(3):  # later runs: still quiet, nothing more
        assert heartbeats.check(runtime, sent).as_dict() == {"raised": 0, "cleared": 0, "quiet": 1}
    (alert,) = sent.alerts
    assert alert["signature"] == f"db-01::heartbeat::{hb}"
    assert (alert["class"], alert["severity"], alert["type"]) == ("DBA", 4, "mutt.heartbeat")
    assert alert["custom_info"]["handling"] == "Page_and_ticket"  # the page lane
    assert "no event for over 1 min" in alert["description"]
    assert HEARTBEAT_ALERTS.labels("raised")._value.get() == raised_before + 1
    assert HEARTBEAT_QUIET_HOSTS._value.get() == 1
    (quiet,) = heartbeat_quiet.quiet_hosts(redis_client)
    assert (quiet["host"], quiet["heartbeat_id"]) == ("db-01", hb)

    classify = Runtime(runtime.settings)
    classify_batch(
        classify, classify.celery, [wire_event("DB-01", "still alive", severity=6)]
    )  # it talks again
    assert heartbeats.check(runtime, sent).as_dict() == {"raised": 0, "cleared": 1, "quiet": 0}
    assert heartbeats.check(runtime, sent).as_dict() == {"raised": 0, "cleared": 0, "quiet": 0}
    assert sent.kinds() == [("db-01", "quiet"), ("db-01", "cleared")]
    lines = [r.getMessage() for r in caplog.records if r.name == "mutt_app.watch.heartbeats"]
    assert len(lines) == 2, lines  # one line per transition, none for the runs that changed nothing
    assert lines[0].startswith("heartbeat 'hb-db-01': db-01 quiet for over 1 min (last event 20")
    assert lines[1].startswith("heartbeat 'hb-db-01': db-01 talking again (event at 20")
    clear = sent.alerts[1]
    assert (clear["signature"], clear["severity"]) == (alert["signature"], 0)
    assert clear["external_id"] != alert["external_id"]
    assert heartbeat_quiet.quiet_hosts(redis_client) == []


class Holding(Sent):
    """Publishes, and answers that the pipeline held the raises of ``hosts``."""

    def __init__(self, hosts: set[str]) -> None:
        super().__init__()
        self.hosts = hosts

    def __call__(self, alerts: list[dict]) -> dict[str, Held]:
        super().__call__(alerts)
        return {
            a["external_id"]: Held("storm_budget")
            for a in alerts
            if a["source"] in self.hosts and a["custom_info"]["heartbeat"] == "quiet"
        }


def test_a_held_raise_closes_without_a_clear_and_a_forwarded_one_is_cleared(
    runtime: Runtime, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mutt_app.watch.heartbeats")
    _heartbeat(runtime, host="db-01")
    _heartbeat(runtime, host="db-02")
    _seen(redis_client, "db-01", minutes_ago=2)
    _seen(redis_client, "db-02", minutes_ago=2)
    sent = Holding({"db-02"})
    cleared_before = HEARTBEAT_ALERTS.labels("cleared")._value.get()
    assert heartbeats.check(runtime, sent).as_dict() == {"raised": 2, "cleared": 0, "quiet": 2}
    states = {s["host"]: s for s in map(orjson.loads, redis_client.hvals(heartbeats.QUIET_KEY))}
    assert (states["db-01"]["forwarded"], states["db-02"]["forwarded"]) == (True, False)

    _seen(redis_client, "db-01", minutes_ago=0)
    _seen(redis_client, "db-02", minutes_ago=0)
    assert heartbeats.check(runtime, sent).as_dict() == {"raised": 0, "cleared": 2, "quiet": 0}
    assert sorted(sent.kinds()) == [("db-01", "cleared"), ("db-01", "quiet"), ("db-02", "quiet")]
    assert HEARTBEAT_ALERTS.labels("cleared")._value.get() == cleared_before + 1
    assert any("closed without a clear" in r.getMessage() for r in caplog.records)


def test_a_state_from_an_older_release_counts_as_forwarded(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    hb = _heartbeat(runtime, host="db-01")
    _seen(redis_client, "db-01", minutes_ago=2)
    sent = Sent()
    assert heartbeats.check(runtime, sent).raised == [f"{hb}:db-01"]
    ((key, raw),) = redis_client.hgetall(heartbeats.QUIET_KEY).items()
    old = orjson.loads(raw)
    del old["forwarded"]  # what older releases wrote
    redis_client.hset(heartbeats.QUIET_KEY, key, orjson.dumps(old))

    _seen(redis_client, "db-01", minutes_ago=0)
    assert heartbeats.check(runtime, sent).cleared == [f"{hb}:db-01"]
    assert sent.kinds() == [("db-01", "quiet"), ("db-01", "cleared")]


def test_a_run_killed_after_publishing_publishes_the_same_ids_again(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    _heartbeat(runtime, host="db-01")
    _seen(redis_client, "db-01", minutes_ago=5)
    first = Sent()

    def die_after_publishing(alerts: list[dict]) -> None:
        first(alerts)
        raise ConnectionError("beat killed between the outbox and the state")

    with pytest.raises(ConnectionError):
        heartbeats.check(runtime, die_after_publishing)
    assert heartbeat_quiet.quiet_hosts(redis_client) == []
    again = Sent()
    assert heartbeats.check(runtime, again).raised == ["1:db-01"]
    # Same external_id: the forward task's idempotency key delivers it once.
    assert [a["external_id"] for a in again.alerts] == [a["external_id"] for a in first.alerts]

    _seen(redis_client, "db-01", minutes_ago=0)
    with pytest.raises(ConnectionError):
        heartbeats.check(runtime, die_after_publishing)
    cleared = Sent()
    assert heartbeats.check(runtime, cleared).cleared == ["1:db-01"]
    assert cleared.alerts[0]["external_id"] == first.alerts[1]["external_id"]


def test_two_checks_at_once_record_each_transition_once(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    _heartbeat(runtime, host="db-01")
    _seen(redis_client, "db-01", minutes_ago=5)
    second = Sent()
    outcomes = []

    def publish_while_another_run_checks(alerts: list[dict]) -> None:
        outcomes.append(heartbeats.check(runtime, second))  # runs in full meanwhile

    outcomes.append(heartbeats.check(runtime, publish_while_another_run_checks))
    assert sorted(len(o.raised) for o in outcomes) == [0, 1]
    assert len(second.alerts) == 1  # both published it, under one external_id


def test_a_host_that_talked_and_went_quiet_again_gets_a_new_episode(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    _heartbeat(runtime, host="db-01")
    _seen(redis_client, "db-01", minutes_ago=10)
    sent = Sent()
    heartbeats.check(runtime, sent)
    _seen(redis_client, "db-01", minutes_ago=3)  # talked, then quiet again, between two checks
    outcome = heartbeats.check(runtime, sent)
    assert (outcome.cleared, outcome.raised) == (["1:db-01"], ["1:db-01"])
    assert sent.kinds() == [("db-01", "quiet"), ("db-01", "cleared"), ("db-01", "quiet")]
    assert len({a["external_id"] for a in sent.alerts}) == 3


def test_a_named_host_never_heard_from_is_quiet_after_its_interval_from_the_change(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    hb = _heartbeat(runtime, host="new-box", age_minutes=0)
    sent = Sent()
    assert heartbeats.check(runtime, sent).raised == []
    _age(runtime, hb, 2)
    assert heartbeats.check(runtime, sent).raised == [f"{hb}:new-box"]
    assert sent.alerts[0]["custom_info"]["last_event"] is None
    assert "none since" in sent.alerts[0]["description"]


def test_after_redis_lost_its_data_hosts_get_their_interval_again(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    _heartbeat(runtime, host="db-01", age_minutes=60)
    redis_client.flushall()  # last-seen times and the watch start are gone
    assert heartbeats.check(runtime, Sent()).raised == []


def test_globs_cover_hosts_heard_from_and_teams_cover_their_hosts(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    glob = _heartbeat(runtime, host="DB-*", name="databases", interval_minutes=5)
    with runtime.sessions.begin() as session:
        session.add_all(
            [
                DeviceTeam(hostname="Edge-1", team_assignment="NETO"),
                DeviceTeam(hostname="edge-2", team_assignment="NETO"),
                DeviceTeam(hostname="web-1", team_assignment="WEB"),
            ]
        )
    team = _heartbeat(runtime, team="NETO", name="edges", interval_minutes=5)
    for host, minutes in (("db-01", 6), ("db-02", 2), ("dbx", 60), ("edge-1", 1), ("web-1", 60)):
        _seen(redis_client, host, minutes)
    sent = Sent()
    outcome = heartbeats.check(runtime, sent)
    # db-01 quiet; db-02 talked 2 min ago; dbx is no db-*; edge-2 never sent anything (and its
    # heartbeat changed 10 min ago); edge-1 talked; web-1 is another team's.
    assert sorted(outcome.raised) == [f"{glob}:db-01", f"{team}:edge-2"]
    by_host = {a["source"]: a for a in sent.alerts}
    assert by_host["edge-2"]["class"] == "NETO"  # the host's device team
    assert by_host["db-01"]["class"] == runtime.settings.unhandled_default_team


def test_a_heartbeat_deleted_deactivated_or_narrowed_clears_its_open_alerts(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    a = _heartbeat(runtime, host="db-01", name="a")
    b = _heartbeat(runtime, host="db-02", name="b")
    c = _heartbeat(runtime, host="db-*", name="c")
    for host in ("db-01", "db-02", "db-03"):
        _seen(redis_client, host, 30)
    assert heartbeats.check(runtime, Sent()).quiet == 3
    with runtime.sessions.begin() as session:
        session.delete(session.get(Heartbeat, a))
        session.get(Heartbeat, b).is_active = False
        session.get(Heartbeat, c).host = "db-03"
    sent = Sent()
    outcome = heartbeats.check(runtime, sent)
    assert sorted(outcome.cleared) == [f"{a}:db-01", f"{b}:db-02", f"{c}:db-01", f"{c}:db-02"]
    assert outcome.raised == [] and outcome.quiet == 1  # c:db-03 stays open
    assert {a["description"].split(": ", 1)[1] for a in sent.alerts} == {
        f"heartbeat '{n}' no longer watches this host" for n in "abc"
    }


def test_the_beat_task_publishes_through_the_outbox_in_the_alerts_lane(
    settings: Settings, redis_client: redis.Redis
) -> None:
    _start_watching_long_ago(redis_client)
    app = Runtime(settings).celery
    runtime = runtime_of(app)
    _heartbeat(runtime, host="core-1", handling="Page_and_ticket")
    _seen(redis_client, "core-1", 5)
    result = app.tasks[check_heartbeats.name].apply().get()
    assert result == {"raised": 1, "cleared": 0, "quiet": 1}
    entries = runtime.outbox.overdue(0, limit=10, now=time.time() + 3600)
    assert [e.events[0]["source"] for e in entries] == ["core-1"]
    assert redis_client.llen("mutt.forward.page") == 1


def test_the_dashboard_shows_the_hosts_quiet_now(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    hb = _heartbeat(runtime, host="db-*", name="databases", interval_minutes=5)
    _heartbeat(runtime, host="db-02", name="db-02 alone", interval_minutes=5)
    for host, minutes in (("db-01", 30), ("db-02", 10), ("db-03", 1)):
        _seen(redis_client, host, minutes)
    heartbeats.check(runtime, Sent())
    body = dashboard.collect(runtime.sessions, redis_client, runtime.settings)
    assert body["errors"] == []
    assert body["heartbeat_quiet_count"] == 2  # db-02 is quiet for two heartbeats: one host
    rows = [(q["host"], q["heartbeat"]) for q in body["heartbeat_quiet_hosts"]]
    assert rows[0] == ("db-01", "databases")  # quiet longest first
    assert sorted(rows[1:]) == [("db-02", "databases"), ("db-02", "db-02 alone")]
    assert body["heartbeat_quiet_hosts"][0]["heartbeat_id"] == hb


def test_a_classify_backlog_is_not_taken_for_quiet_hosts(
    runtime: Runtime, redis_client: redis.Redis
) -> None:
    _heartbeat(runtime, host="db-01")
    _seen(redis_client, "db-01", minutes_ago=5)  # quiet for a one-minute heartbeat...
    # ...unless its events are still waiting: a batch accepted 10 minutes ago is not classified.
    runtime.ledger.record(
        [Batch("waiting", [wire_event("db-01", "still alive", severity=6)])], now=time.time() - 600
    )
    assert heartbeats.check(runtime, Sent()).raised == []
    runtime.ledger.settle(["waiting"])  # classify caught up, and db-01 really sent nothing
    assert heartbeats.check(runtime, Sent()).raised == ["1:db-01"]
