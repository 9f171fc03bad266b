"""The PostgreSQL primary stopped hard mid-run and its standby promoted: nothing is lost.

MUTT runs on a multi-host DATABASE_URL naming both servers with target_session_attrs=read-write
(README, "PostgreSQL with a standby"). Four senders post 20,000 events; once the pipeline is steady
the primary is stopped with ``pg_ctl stop -m immediate`` (every backend dies at once, as in a crash)
and, after PROMOTION_DELAY (the time an operator or a failover manager takes to decide), the
standby is promoted. The harness checks every event answered 2xx is audited once, every forwardable
one reached Moog with at most 0.1 % duplicates, the senders saw only 2xx or 503, and measures how
long the flow stopped (tests/chaos/harness.py).

How it is survived:
- ingest does not touch PostgreSQL, so it keeps answering 2xx throughout;
- classify batches caught by the outage fail with "database unavailable" and are retried with
  backoff (not dead-lettered, not counted as worker losses); their audit rows were rolled back,
  or, if the commit reached the (synchronous) standby before the crash, the idempotent audit
  insert skips them on the retry;
- every connection pooled to the dead primary is thrown away (pre-ping, and the pool is
  invalidated on the first disconnect); new ones go to whichever server takes writes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from mutt_app.config import load_settings
from mutt_app.db.engine import make_engine, upgrade
from mutt_app.db.models import DeadLetter
from tests.chaos.conftest import ChaosStackFactory
from tests.chaos.harness import ChaosRun
from tests.postgres import PostgresStandbyPair

PROMOTION_DELAY = 2.0
DATABASE = "mutt"


@pytest.fixture
def pg_pair() -> Iterator[PostgresStandbyPair]:
    """A migrated primary with a synchronous streaming standby."""
    pair = PostgresStandbyPair().start()
    try:
        pair.primary.create_database(DATABASE)
        engine = make_engine(load_settings({"DATABASE_URL": pair.url(DATABASE)}))
        upgrade(engine)
        engine.dispose()
        yield pair
    finally:
        pair.stop()


@pytest.mark.slow
def test_postgres_primary_stopped_hard_and_standby_promoted(
    chaos_stack: ChaosStackFactory, pg_pair: PostgresStandbyPair
) -> None:
    stack = chaos_stack(DATABASE_URL=pg_pair.url(DATABASE))
    with ChaosRun(stack) as run:
        run.wait_progress(0.25)
        # Fail over on a steady pipeline if it gets there soon: on a busy machine it may not
        # before the load ends, and a failover after the load proves less.
        with contextlib.suppress(TimeoutError):
            run.wait_steady(timeout=8)
        before = run.load.accepted_count
        failure = run.failure("PostgreSQL primary stopped hard, standby promoted")
        pg_pair.stop_primary_hard()
        time.sleep(PROMOTION_DELAY)
        pg_pair.promote()
        run.wait_recovered(failure, timeout=60)
        assert before < run.load.total, "the failover came after the load had ended"
        figures = run.finish("PostgreSQL failover")
    assert figures.events >= 20_000
    # The outage really reached classify, which retried instead of dead-lettering.
    retries = stack.worker_metrics().get('mutt_alerter_outage_retries_total{cause="database"}', 0)
    assert retries > 0, stack.logs()
    with stack.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeadLetter)).scalar_one() == 0
        # Everything was audited on the promoted standby, the only server left.
        port = conn.execute(select(func.inet_server_port())).scalar_one()
    assert port == pg_pair.ports[1]
    print(f"classify outage retries: {retries:.0f}; recovery: {figures.recovery}")
