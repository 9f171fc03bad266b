"""PostgreSQL stopped hard while classify workers are busy, then started again: the batches caught by
the outage are retried (not dead-lettered), and every accepted event is audited exactly once."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import func, insert, select

from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine, upgrade
from mutt_app.db.models import AlertRule, DeadLetter
from tests.e2e.conftest import StackFactory
from tests.postgres import PostgresCluster
from tests.services import wait_for

OUTAGE_LINE = "database unavailable"


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL of this test's own: it is stopped and started mid-test. Commits are durable
    (synchronous_commit on): with it off, a commit acknowledged just before the crash is lost with
    the server's WAL buffers, as it would be in production."""
    cluster = PostgresCluster({"synchronous_commit": "on"}).start()
    try:
        cluster.create_database("mutt")
        engine = make_engine(load_settings({"DATABASE_URL": cluster.url("mutt")}))
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                insert(AlertRule).values(
                    match_string="link flap",
                    match_type="contains",
                    priority=500,
                    prod_handling="Ticket_only",
                    dev_handling="Log_only",
                    team_assignment="NETO",
                )
            )
        engine.dispose()
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.stop()


def _events(start: int, count: int) -> bytes:
    now = datetime.now(UTC).isoformat()
    return orjson.dumps(
        [
            {"timestamp": now, "hostname": f"h{i % 40}", "message": f"event {i} link flap"}
            for i in range(start, start + count)
        ]
    )


def test_classify_retries_through_a_database_outage(
    make_stack: StackFactory, own_cluster: PostgresCluster
) -> None:
    # One attempt allowed per batch: a retry counted as a worker loss would dead-letter the batch.
    stack = make_stack(DATABASE_URL=own_cluster.url("mutt"), ALERTER_MAX_RETRIES="1")
    with stack.together():
        stack.start_sink().start_ingest()
        worker = stack.start_worker(concurrency=2)

    total, size, sent = 4_000, 200, []

    def post(start: int) -> None:
        response = stack.post(_events(start, size), **{"Content-Type": "application/json"})
        # Ingest does not touch PostgreSQL: it answers 200 whether the database is up or not.
        assert response.status_code == 200, response.text
        sent.extend(response.json()["correlation_ids"])

    for start in range(0, 1_000, size):
        post(start)
    wait_for(lambda: stack.audited() > 0, 60, "the first audit rows")
    own_cluster.stop_hard()
    for start in range(1_000, total, size):
        post(start)
    wait_for(
        lambda: OUTAGE_LINE in worker.log_path.read_text(errors="replace"),
        30,
        "classify to report the database unavailable",
    )
    outage_audited = None
    with contextlib.suppress(Exception):
        outage_audited = stack.audited()
    assert outage_audited is None  # the database really is down
    time.sleep(5)  # long enough for retries to back off past the first delays

    own_cluster.launch()
    stack.wait_audited(total, timeout=120)
    stack.settle(2)

    ids = [str(row.correlation_id) for row in stack.audit_rows()]
    assert len(ids) == total, "an event was audited twice"
    assert set(ids) == set(sent)
    with stack.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one() == 0
    retries = stack.worker_metrics().get('mutt_alerter_outage_retries_total{cause="database"}', 0)
    assert retries > 0
    # A retried batch publishes its forwards again; their sent keys stop a second post. (Most of
    # these similar events are held back as duplicates of each other: dedup, by design.)
    forwarded = [alert["external_id"] for alert in stack.sink_events()]
    assert forwarded and len(forwarded) == len(set(forwarded))


def test_classify_retries_while_the_database_is_read_only(
    make_stack: StackFactory, own_cluster: PostgresCluster
) -> None:
    # As when the server MUTT's pooled connections point at turns into a standby (a switch-over):
    # every write fails with SQLSTATE 25006. That is an outage, not a bad batch: retried, never
    # dead-lettered, and the connections that met it are not used again.
    stack = make_stack(DATABASE_URL=own_cluster.url("mutt"), ALERTER_MAX_RETRIES="1")
    with stack.together():
        stack.start_sink().start_ingest()
        worker = stack.start_worker(concurrency=2)
    sent: list[str] = []

    def post(start: int) -> None:
        response = stack.post(_events(start, 200), **{"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        sent.extend(response.json()["correlation_ids"])

    post(0)
    stack.wait_audited(200)  # the workers' pools hold connections to the server now
    own_cluster.query("ALTER SYSTEM SET default_transaction_read_only = on")
    own_cluster.query("SELECT pg_reload_conf()")
    for start in range(200, 1_200, 200):
        post(start)
    wait_for(
        lambda: (
            "database unavailable (InternalError" in worker.log_path.read_text(errors="replace")
        ),
        30,
        "classify to report the read-only database unavailable",
    )
    assert stack.audited() == 200
    own_cluster.query("ALTER SYSTEM RESET default_transaction_read_only")
    own_cluster.query("SELECT pg_reload_conf()")

    stack.wait_audited(1_200, timeout=90)
    stack.settle(2)
    ids = [str(row.correlation_id) for row in stack.audit_rows()]
    assert len(ids) == 1_200 and set(ids) == set(sent)
    with stack.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one() == 0
