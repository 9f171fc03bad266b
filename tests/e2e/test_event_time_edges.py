"""Event time and exact JSON on real processes (gunicorn ingest, Celery worker, PostgreSQL audit).

No event time can break the audit: an event stamped outside EVENT_TIME_MAX_AGE_DAYS before or
EVENT_TIME_MAX_AHEAD_MINUTES after its arrival is audited once under its ``received_at`` (the
sender's time kept in ``raw``), so one body cannot make the partition job create a partition per
month of a decade, and a stamp of 9999-12-31 cannot make it fail. An item whose JSON orjson would
read changed (a repeated key, an integer beyond 64 bits) is refused with its reason.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from prometheus_client import REGISTRY
from sqlalchemy import text

from mutt_app.cli import main
from mutt_app.db.partitions import DEFAULT_PARTITION
from tests.e2e.conftest import StackFactory
from tests.factories import posted_event

JSON = {"Content-Type": "application/json"}
MONTHS_AHEAD = 3


def _mutt(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _stamp(moment: datetime) -> str:
    return moment.isoformat()


def test_events_across_a_decade_and_at_year_9999_are_audited_once_and_bound_the_partitions(
    make_stack: StackFactory,
) -> None:
    stack = make_stack(EVENT_TIME_MAX_AGE_DAYS="30", EVENT_TIME_MAX_AHEAD_MINUTES="60")
    with stack.together():
        stack.start_sink()
        stack.start_ingest()
        stack.start_worker()
    now = datetime.now(UTC)
    decade = [datetime(2015 + m // 12, m % 12 + 1, 15, tzinfo=UTC) for m in range(120)]
    # Within the configured range (kept), then just outside it on each side (adjusted).
    kept = [now - timedelta(days=20), now + timedelta(minutes=30)]
    adjusted = [now - timedelta(days=40), now + timedelta(hours=2)]
    stamps = [_stamp(t) for t in decade + kept + adjusted] + [
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+00:00",
    ]
    items = [posted_event(f"event {i}", timestamp=stamp) for i, stamp in enumerate(stamps)]
    body = orjson.dumps(items)[:-1]
    # An item with a 128-bit integer and one with a repeated key: refused with their reasons.
    head = b',{"timestamp":"' + _stamp(now).encode() + b'","hostname":"h",'
    body += head + b'"message":"big","counter":340282366920938463463374607431768211455}'
    body += head + b'"message":"dup","severity":3,"severity":1}'
    body += head + b'"message":"u64","counter":18446744073709551615}]'
    response = stack.post(body, **JSON)

    assert response.status_code == 200, response.text
    answer = response.json()
    refused = {r["index"]: r["error"] for r in answer["rejected"]}
    assert refused.keys() == {len(stamps), len(stamps) + 1}, refused
    assert "outside 64 bits" in refused[len(stamps)]
    assert "duplicate key 'severity'" in refused[len(stamps) + 1]
    accepted = len(stamps) + 1
    assert answer["accepted"] == accepted

    stack.wait_audited(accepted)
    stack.settle(1.0)
    rows = stack.audit_rows()
    assert len(rows) == accepted  # each accepted event audited once
    by_message = {row.message: row for row in rows}
    for i, stamp in enumerate(stamps):
        row = by_message[f"event {i}"]
        assert row.raw["timestamp"] == stamp  # the sender's time is kept
        if i in (120, 121):
            assert row.event_timestamp == datetime.fromisoformat(stamp)
        else:
            assert row.event_timestamp == row.received_at, (stamp, row.event_timestamp)
    assert by_message["u64"].raw["counter"] == 18446744073709551615  # kept exactly

    env = {"DATABASE_URL": stack.env["DATABASE_URL"]}
    out = _mutt(env, "db", "partitions", "--months-ahead", str(MONTHS_AHEAD))
    created = int(out.strip().splitlines()[-1].split(", ")[1].split()[0])
    assert created <= MONTHS_AHEAD + 2, out  # every row is within 30 days of now
    with stack.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar_one() == 0
    # And again: nothing stored makes a later run fail.
    assert "0 created" in _mutt(env, "db", "partitions", "--months-ahead", str(MONTHS_AHEAD))


def test_stored_extreme_times_never_make_the_partition_or_retention_jobs_fail(
    make_stack: StackFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stack = make_stack()
    env = {"DATABASE_URL": stack.env["DATABASE_URL"], "ARCHIVE_DIR": str(tmp_path / "archive")}
    extremes = [
        "9999-12-31 23:59:59+00",
        "10000-06-01 00:00:00+00",
        "294276-12-31 00:00:00+00",
        "0001-01-01 00:00:00+00",
        "0044-03-15 00:00:00+00 BC",
        "1969-12-31 23:59:59+00",
    ]
    with stack.engine.begin() as conn:
        for n, stamp in enumerate(extremes):
            conn.execute(
                text(
                    f"INSERT INTO {DEFAULT_PARTITION} (event_timestamp, received_at, hostname, "
                    "message, handling_decision, correlation_id, raw) VALUES "
                    "(CAST(:at AS timestamptz), now(), 'h', :message, 'Log_only', "
                    "gen_random_uuid(), '{}'::jsonb)"
                ),
                {"at": stamp, "message": f"stored {n}"},
            )

    with caplog.at_level(logging.WARNING, logger="mutt_app.db.partitions"):
        out = _mutt(env, "db", "partitions", "--months-ahead", "1")
    assert "2 partitions checked" in out, out
    assert REGISTRY.get_sample_value("mutt_audit_default_rows_outside_window") == len(extremes)
    assert f"{len(extremes)} audit rows in {DEFAULT_PARTITION} are stamped outside" in caplog.text
    _mutt(env, "retention", "run")  # a failed step would exit non-zero
    _mutt(env, "db", "partitions", "--months-ahead", "1")
    with stack.engine.connect() as conn:
        left = conn.execute(text(f"SELECT count(*) FROM {DEFAULT_PARTITION}")).scalar_one()
    assert left == len(extremes)  # left where they are, counted and logged, never lost
